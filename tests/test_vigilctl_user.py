#!/usr/bin/python3
"""vigilctl user add/list/remove on a real users file: add prints a token
of 64 hex digits once and stores only its SHA-256 (owner-only file); a name
given twice, a bad role or name is refused; list shows names and roles;
remove drops that user and keeps every other line, comments included; a
broken file is refused naming its line.

usage: test_vigilctl_user.py BUILD_DIR
"""
import hashlib
import os
import re
import stat
import subprocess
import sys
import tempfile

ctl = os.path.join(sys.argv[1], "tools", "vigilctl")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def run(*args, ok=True):
    p = subprocess.run([ctl, "user", *args], capture_output=True, text=True, timeout=30)
    if ok:
        check(p.returncode == 0, f"user {args}: rc {p.returncode}: {p.stderr}")
    else:
        check(p.returncode != 0, f"user {args}: accepted, want refused")
    return p


with tempfile.TemporaryDirectory(prefix="vigil-users-") as tmp:
    users = os.path.join(tmp, "users")
    a = run("add", "alice", "--role", "reviewer", "--users", users)
    token = a.stdout.strip()
    check(re.fullmatch(r"[0-9a-f]{64}", token), f"token {token!r} is not 64 hex digits")
    check("once" in a.stderr, f"add does not say the token is shown once: {a.stderr}")
    check(stat.S_IMODE(os.stat(users).st_mode) == 0o600,
          f"a new users file is {oct(os.stat(users).st_mode)}, want 0600")
    with open(users) as f:
        text = f.read()
    check(text == f"alice reviewer {hashlib.sha256(token.encode()).hexdigest()}\n",
          f"users file: {text!r}")
    check(token not in text, "the token itself is in the file")
    with open(users, "a") as f:
        f.write("# the night shift\n")
    b = run("add", "bob", "--role", "admin", "--users", users).stdout.strip()
    check(b != token, "two adds gave the same token")
    run("add", "carol", "--role", "viewer", "--users", users)
    p = run("add", "alice", "--role", "admin", "--users", users, ok=False)
    check("already" in p.stderr, f"a second alice: {p.stderr}")
    p = run("add", "dave", "--role", "boss", "--users", users, ok=False)
    check("viewer, reviewer or admin" in p.stderr, f"role boss: {p.stderr}")
    p = run("add", "da ve", "--role", "viewer", "--users", users, ok=False)
    p = run("add", "dave", "--users", users, ok=False)
    lst = run("list", "--users", users).stdout.split("\n")
    got = [tuple(line.split()) for line in lst[1:] if line.strip()]
    check(got == [("alice", "reviewer"), ("bob", "admin"), ("carol", "viewer")],
          f"list: {lst}")
    check(token not in "".join(lst), "list shows a token")
    run("remove", "bob", "--users", users)
    with open(users) as f:
        text = f.read()
    check("bob" not in text and "# the night shift" in text and text.startswith("alice ")
          and "carol viewer" in text, f"after remove bob: {text!r}")
    check(stat.S_IMODE(os.stat(users).st_mode) == 0o600, "remove changed the file's mode")
    p = run("remove", "bob", "--users", users, ok=False)
    check("no user bob" in p.stderr, f"removing bob twice: {p.stderr}")
    with open(users, "a") as f:
        f.write("eve root " + "0" * 64 + "\n")
    p = run("list", "--users", users, ok=False)
    check(f"{users}:4:" in p.stderr and "root" in p.stderr, f"bad line 4: {p.stderr}")
    p = run("add", "frank", "--role", "viewer", "--users", users, ok=False)
    check(f"{users}:4:" in p.stderr, f"add to a broken file: {p.stderr}")
    # A bad value is a usage error (2) naming it, whatever the file: read
    # before the file is.
    for args, said in ((["add", "frank", "--role", "boss"], "--role is viewer, reviewer or admin, "
                        "not 'boss'"),
                       (["add", "fr ank", "--role", "viewer"], "name 'fr ank' is not"),
                       (["remove", "carol", "--role", "viewer"], "--role is for add"),
                       (["list", "--role", "viewer"], "--role is for add")):
        p = run(*args, "--users", users, ok=False)
        check(p.returncode == 2 and said in p.stderr and not p.stdout,
              f"user {args}: rc {p.returncode}, {p.stderr!r}; want 2 saying {said!r}")

if failures:
    for f in failures:
        print("FAIL:", f)
    sys.exit(1)
print("OK")
