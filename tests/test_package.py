#!/usr/bin/python3
"""The Debian package (make package, pkg/make-deb.sh) built from this build
folder, checked, installed into a throw-away root and purged.

1. pkg/make-deb.sh builds vigil_VERSION_ARCH.deb (VERSION meson's).
2. Its control fields, conffiles and maintainer scripts, and its contents:
   the six programs, every committed model package file, the training
   tools, the docs, the unit, the sysusers.d file and the conffile; nothing
   else in /usr/bin, nothing under /usr/local.
3. dpkg --root=DIR --force-script-chrootless installs it into an empty
   root (the maintainer scripts honour DPKG_ROOT; a chroot would need a
   whole Debian in it, and debootstrap needs the network): the user vigil
   is made, /var/lib/vigil belongs to it with the simulated parts, the unit
   is enabled (deb-systemd-helper's links) and nothing was started.
4. systemd-analyze verify passes on the installed unit (a copy whose
   ExecStart names the installed vigild), without a single warning.
5. The installed vigild, as a plain user, on the installed
   /etc/vigil/vigild.conf with /var/lib/vigil and the models folder
   substituted (and free ports), gets ready, inspects every simulated part
   vigil-sim plays and writes its log under that state folder.
6. dpkg --remove keeps the edited conffile and the state; dpkg --purge then
   leaves none of the package's files, /etc/vigil nor /var/lib/vigil, and
   no unit link. The user vigil stays, as Debian leaves system users.
7. lintian: no error, and no warning but the documented ones
   (docs/operations.md, "Installing the package").

Needs root (dpkg's chown to the vigil user); skipped otherwise, saying so.

usage: test_package.py BUILD_DIR SOURCE_ROOT
"""
import csv
import json
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import sys

from linetest import Checks, Vigild, fail, free_port, skip, workdir

build, root = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])

PROGRAMS = ["vigild", "vigilctl", "vigil-sim", "vigil-eval", "vigil-calibrate", "vigil-features"]
CONFFILE = "/etc/vigil/vigild.conf"
SIM_PARTS = 200                 # what postinst generates
# lintian warnings that stay, each with its reason in docs/operations.md.
LINTIAN_WARNINGS_KEPT = {"no-manual-page"}
PLAIN_USER = "nobody"

if os.geteuid() != 0:
    skip("installing the package into a throw-away root needs root (dpkg chowns to the vigil user)")
for tool, package in [("dpkg-deb", "dpkg"), ("dpkg-shlibdeps", "dpkg-dev"),
                      ("systemd-analyze", "systemd"), ("systemd-sysusers", "systemd"),
                      ("deb-systemd-helper", "init-system-helpers"), ("lintian", "lintian")]:
    if not shutil.which(tool):
        fail(f"{tool} not found: install the Debian package {package}")


def run(cmd, **kw):
    """A command's completed process; fails the test, with its output,
    when it exits non-zero."""
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        fail(f"{' '.join(cmd)} exited with {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def dpkg_root(r, *args):
    """dpkg on the throw-away root r, its maintainer scripts run on this
    system with DPKG_ROOT=r."""
    return run(["dpkg", f"--root={r}", "--force-script-chrootless", "--force-depends", *args],
               env=dict(os.environ, DPKG_ROOT=r))


def passwd_entry(r, name):
    path = os.path.join(r, "etc", "passwd")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == name:
                return fields
    return None


c = Checks()
with workdir("vigil-pkg-") as tmp:
    # The installed vigild runs as a plain user and postinst runs vigil-sim
    # as vigil: both must reach into this folder.
    os.chmod(tmp, 0o755)

    # 1. The build.
    out = os.path.join(tmp, "out")
    p = run([os.path.join(root, "pkg", "make-deb.sh"), build, out])
    deb = p.stdout.strip().splitlines()[-1]
    info = json.loads(run(["meson", "introspect", "--projectinfo", build]).stdout)
    version = info["version"]
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    c.check(os.path.basename(deb) == f"vigil_{version}_{arch}.deb" and os.path.isfile(deb),
            f"make-deb.sh made {deb}, want {out}/vigil_{version}_{arch}.deb")

    # 2. Control fields and contents.
    def field(name):
        return run(["dpkg-deb", "-f", deb, name]).stdout.strip()
    c.check(field("Package") == "vigil", f"Package: {field('Package')}")
    c.check(field("Version") == version, f"Version: {field('Version')}, want {version}")
    c.check(field("Architecture") == arch, f"Architecture: {field('Architecture')}")
    depends = field("Depends")
    for dep in ["libglib2.0-0", "libmodbus5", "libsqlite3-0", "libgstreamer1.0-0",
                "libsoup-3.0-0", "gstreamer1.0-plugins-good", "python3", "systemd"]:
        c.check(re.search(rf"(^|[ ,|]){re.escape(dep)}([ ,(]|$)", depends),
                f"Depends lacks {dep}: {depends}")
    c.check(field("Maintainer") and field("Description"), "Maintainer or Description empty")
    ctrl = os.path.join(tmp, "control")
    run(["dpkg-deb", "-e", deb, ctrl])
    with open(os.path.join(ctrl, "conffiles")) as f:
        c.check(f.read().split() == [CONFFILE], f"conffiles: want only {CONFFILE}")
    for script in ["postinst", "prerm", "postrm"]:
        path = os.path.join(ctrl, script)
        c.check(os.path.isfile(path) and os.access(path, os.X_OK), f"no executable {script}")
    with open(os.path.join(ctrl, "md5sums")) as f:
        md5_paths = {line.split(None, 1)[1].strip() for line in f}

    listing = {}                # path without "./" -> (mode, owner)
    for line in run(["dpkg-deb", "-c", deb]).stdout.splitlines():
        cols = line.split(None, 5)
        listing[cols[5].split(" -> ")[0].removeprefix("./").rstrip("/")] = (cols[0], cols[1])
    files = sorted(p for p, (mode, _) in listing.items() if mode.startswith("-"))
    c.check(md5_paths == set(files), "md5sums does not list exactly the package's files")
    for p in PROGRAMS:
        mode, owner = listing.get(f"usr/bin/{p}", ("", ""))
        c.check(mode == "-rwxr-xr-x" and owner == "root/root",
                f"usr/bin/{p}: {mode or 'missing'} {owner}")
    extra = [p for p in files if p.startswith("usr/bin/") and p[8:] not in PROGRAMS]
    c.check(not extra, f"unexpected programs: {extra}")
    c.check(not [p for p in listing if p.startswith("usr/local")], "files under usr/local")
    units = [p for p in files if re.fullmatch(r"(usr/)?lib/systemd/system/vigild\.service", p)]
    c.check(len(units) == 1, f"the unit vigild.service: {units}")
    unit_path = units[0] if units else "lib/systemd/system/vigild.service"
    wanted = [CONFFILE[1:], "usr/lib/sysusers.d/vigil.conf",
              "usr/share/doc/vigil/copyright", "usr/share/doc/vigil/changelog.gz",
              "usr/share/doc/vigil/README.md", "usr/share/doc/vigil/operations.md",
              "usr/share/doc/vigil/examples/example.conf",
              "usr/share/vigil/tools/train.py", "usr/share/vigil/tools/ensemble.py",
              "usr/share/vigil/tools/train_data.py"]
    for name in os.listdir(os.path.join(root, "docs")):
        if name.endswith(".md"):
            wanted.append(f"usr/share/doc/vigil/{name}")
    models = os.path.join(root, "models")
    for dirpath, _, names in os.walk(models):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), models)
            wanted.append(f"usr/share/vigil/models/{rel}")
    c.check(any(p.startswith("usr/share/vigil/models/synthetic-v2/") for p in wanted),
            "models/synthetic-v2 missing from the source tree")
    for p in wanted:
        c.check(p in listing, f"{p} is not in the package")
    c.check(listing.get("usr/share/vigil/tools/train.py", ("",))[0] == "-rwxr-xr-x",
            "train.py is not executable")

    # 3. Install into a throw-away root.
    r = os.path.join(tmp, "root")
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"]:
        os.makedirs(os.path.join(r, d))
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"]:
        open(os.path.join(r, f), "w").close()
    dpkg_root(r, "-i", deb)
    status = run(["dpkg", f"--root={r}", "-s", "vigil"]).stdout
    c.check("Status: install ok installed" in status, f"dpkg status:\n{status}")
    c.check(re.search(rf"^ {re.escape(CONFFILE)} [0-9a-f]{{32}}$", status, re.M),
            f"{CONFFILE} is not a conffile in dpkg's status")
    for p in files:
        c.check(os.path.lexists(os.path.join(r, p)), f"{p} not installed")
    user = passwd_entry(r, "vigil")
    c.check(user and user[5] == "/var/lib/vigil" and "nologin" in user[6],
            f"user vigil in the root's /etc/passwd: {user}")
    uid, gid = (int(user[2]), int(user[3])) if user else (-1, -1)
    c.check(passwd_entry(r, "vigil") and 0 < uid < 1000, f"vigil is not a system user: uid {uid}")
    with open(os.path.join(r, "etc", "group")) as f:
        c.check(any(line.startswith(f"vigil:x:{gid}:") for line in f), "no group vigil")
    state = os.path.join(r, "var", "lib", "vigil")
    st = os.stat(state)
    c.check((st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, 0o750),
            f"/var/lib/vigil: uid {st.st_uid} gid {st.st_gid} mode {oct(st.st_mode & 0o7777)}")
    sim = os.path.join(state, "sim")
    with open(os.path.join(sim, "parts.csv")) as f:
        sim_rows = list(csv.DictReader(f))
    c.check(len(sim_rows) == SIM_PARTS, f"{len(sim_rows)} simulated parts, want {SIM_PARTS}")
    c.check(os.stat(os.path.join(sim, "vibration.wav")).st_uid == uid,
            "the simulated parts do not belong to vigil")
    wants = os.path.join(r, "etc/systemd/system/multi-user.target.wants/vigild.service")
    c.check(os.path.islink(wants), "vigild.service is not enabled (no multi-user.target.wants link)")
    with open(os.path.join(r, unit_path)) as f:
        unit = f.read()
    for setting in ["Type=notify", "NotifyAccess=main",
                    f"ExecStart=/usr/bin/vigild --config {CONFFILE}", "WatchdogSec=30",
                    "Restart=on-failure", "User=vigil", "Group=vigil",
                    "SupplementaryGroups=video dialout plugdev", "StateDirectory=vigil",
                    "WorkingDirectory=/var/lib/vigil", "ProtectSystem=strict",
                    "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes"]:
        c.check(re.search(rf"^{re.escape(setting)}$", unit, re.M), f"the unit lacks {setting}")
    m = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)
    c.check(m and int(m.group(1)) > 5, "TimeoutStopSec not above vigild's 5 s grace")
    c.check(not re.search(r"^(ProtectClock|PrivateDevices|DeviceAllow)=", unit, re.M),
            "the unit closes the device policy (cameras and serial lines would vanish)")

    # 4. systemd-analyze verify, ExecStart pointing at the installed vigild.
    vdir = os.path.join(tmp, "verify")
    os.mkdir(vdir)
    with open(os.path.join(vdir, "vigild.service"), "w") as f:
        f.write(unit.replace("ExecStart=/usr/bin/vigild", f"ExecStart={r}/usr/bin/vigild"))
    p = subprocess.run(["systemd-analyze", "verify", os.path.join(vdir, "vigild.service")],
                       capture_output=True, text=True)
    c.check(p.returncode == 0 and not (p.stdout + p.stderr).strip(),
            f"systemd-analyze verify: rc {p.returncode}\n{p.stdout}{p.stderr}")

    # 5. The installed vigild on the installed configuration, as a plain
    # user, its state folder and models substituted.
    run_state = os.path.join(tmp, "state")
    shutil.copytree(sim, os.path.join(run_state, "sim"))
    plain = pwd.getpwnam(PLAIN_USER)
    for dirpath, dirnames, names in os.walk(run_state):
        for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + names]:
            os.chown(n, plain.pw_uid, plain.pw_gid)
    plc_port = free_port()
    with open(os.path.join(r, CONFFILE[1:])) as f:
        conf_text = f.read()
    subs = [("/var/lib/vigil/", run_state + "/"),
            ("/usr/share/vigil/models/", f"{r}/usr/share/vigil/models/"),
            ("\nport = 1502\n", f"\nport = {plc_port}\n"),
            ("\nport = 8080\n", "\nport = 0\n")]
    for old, new in subs:
        if old not in conf_text:
            fail(f"the installed {CONFFILE} has no {old.strip()!r} to substitute")
        conf_text = conf_text.replace(old, new)
    conf = os.path.join(tmp, "vigild.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    sim_proc = subprocess.Popen(
        [os.path.join(r, "usr/bin/vigil-sim"), "run", "--parts-dir", os.path.join(run_state, "sim"),
         "--port", str(plc_port), "--rate", "1200",
         "--results", os.path.join(tmp, "results.csv"),
         "--summary", os.path.join(tmp, "summary.json"),
         "--db", os.path.join(run_state, "vigil.db"), "--ready-timeout-s", "60"],
        stdout=subprocess.DEVNULL)
    try:
        vigild = Vigild(build, conf, os.path.join(tmp, "vigild.log"), cwd=run_state,
                        exe=os.path.join(r, "usr/bin/vigild"), user=PLAIN_USER)
        c.check(vigild.wait_log(r"line ready") is not None,
                "the installed vigild on the shipped configuration never got ready")
        c.check(vigild.wait_log(r"review: serving http://127\.0\.0\.1:\d+/") is not None,
                "no review page on the shipped configuration")
        try:
            sim_rc = sim_proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            fail("vigil-sim did not finish the simulated parts within 240 s")
        vigild_rc = vigild.stop()
    finally:
        if sim_proc.poll() is None:
            sim_proc.kill()
            sim_proc.wait()
    c.check(sim_rc == 0, f"vigil-sim exited with {sim_rc} (lost, duplicated or mislogged parts)")
    c.check(vigild_rc == 0, f"vigild exited with {vigild_rc}")
    db = os.path.join(run_state, "vigil.db")
    c.check(os.path.exists(db) and os.stat(db).st_uid == plain.pw_uid,
            f"no log {db} written by {PLAIN_USER}")
    if os.path.exists(db):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = con.execute("select count(distinct part_id) from inspections").fetchone()[0]
        c.check(rows == SIM_PARTS, f"{rows} parts in the log, want {SIM_PARTS}")

    # 6. Remove keeps the conffile (edited, as an integrator would) and the
    # state; purge takes everything.
    with open(os.path.join(r, CONFFILE[1:]), "a") as f:
        f.write("# edited on the station\n")
    dpkg_root(r, "--remove", "vigil")
    c.check(os.path.exists(os.path.join(r, CONFFILE[1:])), "remove took the conffile")
    c.check(os.path.isdir(state), "remove took /var/lib/vigil")
    c.check(not os.path.exists(os.path.join(r, "usr/bin/vigild")), "remove left usr/bin/vigild")
    dpkg_root(r, "--purge", "vigil")
    left = [p for p in listing if p and os.path.lexists(os.path.join(r, p))
            and not os.path.isdir(os.path.join(r, p))]
    c.check(not left, f"purge left the package's files: {left[:10]}")
    for p in ["etc/vigil", "var/lib/vigil", "usr/share/vigil", "usr/share/doc/vigil",
              "etc/systemd/system/multi-user.target.wants/vigild.service",
              "var/lib/systemd/deb-systemd-helper-enabled/vigild.service.dsh-also"]:
        c.check(not os.path.lexists(os.path.join(r, p)), f"purge left {p}")
    p = subprocess.run(["dpkg", f"--root={r}", "-s", "vigil"], capture_output=True, text=True)
    c.check(p.returncode != 0 or "Status: install ok installed" not in p.stdout,
            "dpkg still lists vigil as installed after purge")
    c.check(passwd_entry(r, "vigil"), "purge removed the user vigil (Debian keeps system users)")

    # 7. lintian.
    p = subprocess.run(["lintian", "--no-cfg", deb], capture_output=True, text=True)
    tags = re.findall(r"^([EW]): vigil[^:]*: (\S+)", p.stdout, re.M)
    errors = sorted({t for level, t in tags if level == "E"})
    warnings = sorted({t for level, t in tags if level == "W"} - LINTIAN_WARNINGS_KEPT)
    c.check(not errors and not warnings,
            f"lintian: errors {errors}, warnings {warnings}:\n{p.stdout}")

    c.finish()
print(f"ok: {os.path.basename(deb)} built, checked, installed, run and purged")
