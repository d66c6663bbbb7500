#!/usr/bin/python3
"""vigild refuses a bad [plc] or [job.N] section before it touches the line,
naming the file, the line and the key (docs/plc.md, "Configuration").

Each case edits the embedded default configuration (vigild
--print-default-config): keys set in [plc] replace the default's or are
added after its header, sections are appended. The message must be
FILE:LINE: [GROUP] KEY: ..., LINE being where that key (or, for a missing
key or a bad section, the section header) stands.

usage: test_plc_config.py BUILD_DIR
"""
import os
import sys
import tempfile

from linetest import Vigild, fail

build = sys.argv[1]
default = Vigild.once(build, args=["--print-default-config"], check=True).stdout
plc_section = "\n" + default.split("\n[plc]\n", 1)[1].split("\n[", 1)[0]

# (label, [plc] keys to set (None: remove), text appended, group, key or None, message part)
CASES = [
    ("unknown role", {"mode": "master"}, "", "plc", "mode",
     "'master' is not one of: client, server"),
    ("unknown transport", {"transport": "usb"}, "", "plc", "transport",
     "'usb' is not one of: tcp, rtu"),
    ("client without a PLC address", {"host": None}, "", "plc", None,
     "missing required key 'host'"),
    ("host name instead of an address", {"host": "plc.local"}, "", "plc", "host",
     "not an IPv4 address"),
    ("port 0", {"port": "0"}, "", "plc", "port", "0 is out of range 1..65535"),
    ("port not a number", {"port": "502a"}, "", "plc", "port", "'502a' is not"),
    ("unit id past 247", {"unit_id": "248"}, "", "plc", "unit_id", "out of range 0..247"),
    ("timeout too short", {"timeout_ms": "5"}, "", "plc", "timeout_ms", "out of range 10..60000"),
    ("blocks overlap", {"status_base": "15"}, "", "plc", "status_base",
     "blocks overlap: trigger at 0..4, result at 10..19, status at 15..23"),
    # The line named is that of the base the file moved, not status_base's.
    ("trigger block onto the result block", {"trigger_base": "6"}, "", "plc", "trigger_base",
     "blocks overlap: trigger at 6..10, result at 10..19"),
    ("block past 65535", {"result_base": "65530"}, "", "plc", "result_base",
     "out of range 0..65526"),
    ("reconnect backoff upside down", {"reconnect_min_ms": "800", "reconnect_max_ms": "400"},
     "", "plc", "reconnect_max_ms", "out of range 800..600000"),
    ("unknown fault policy", {"fault_policy": "stop"}, "", "plc", "fault_policy",
     "'stop' is not one of: reject_all, stop_line"),
    ("misspelt key", {"pol_ms": "5"}, "", "plc", "pol_ms", "unknown key"),
    ("rtu without a device", {"transport": "rtu"}, "", "plc", None,
     "missing required key 'device'"),
    ("rtu parity", {"transport": "rtu", "device": "/dev/ttyS0", "parity": "X"}, "", "plc",
     "parity", "'X' is not one of: N, E, O"),
    ("rtu stop bits", {"transport": "rtu", "device": "/dev/ttyS0", "stop_bits": "3"}, "",
     "plc", "stop_bits", "out of range 1..2"),
    ("rtu broadcast unit", {"transport": "rtu", "device": "/dev/ttyS0", "unit_id": "0"}, "",
     "plc", "unit_id", "out of range 1..247"),
    ("default job without a section", {"job": "7"}, "", "plc", "job", "no [job.7] section"),
    ("job number 0", {}, "\n[job.0]\nreject = 0.5\n", "job.0", None,
     "a job number must be 1..64"),
    ("job number not a number", {}, "\n[job.two]\nreject = 0.5\n", "job.two", None,
     "a job number must be 1..64"),
    ("job threshold past 1", {}, "\n[job.1]\nreject = 1.5\n", "job.1", "reject",
     "1.5 is out of range 0..1"),
    ("job threshold not a number", {}, "\n[job.1]\nmarginal = nan\n", "job.1", "marginal",
     "'nan' is not a number"),
    ("misspelt job key", {}, "\n[job.1]\npakage = /x\n", "job.1", "pakage", "unknown key"),
]


def edit(plc_keys, appended):
    """The default configuration with [plc] edited and text appended."""
    out, group = [], None
    for line in default.splitlines():
        if line.startswith("["):
            group = line.strip()
            out.append(line)
            if group == "[plc]":
                out += [f"{k} = {v}" for k, v in plc_keys.items()
                        if v is not None and f"\n{k} = " not in plc_section]
            continue
        key = line.split("=", 1)[0].strip()
        if group == "[plc]" and "=" in line and key in plc_keys:
            if plc_keys[key] is not None:
                out.append(f"{key} = {plc_keys[key]}")
            continue
        out.append(line)
    return "\n".join(out) + "\n" + appended


def line_of(text, group, key):
    """1-based line of key in [group], or of the header when key is None."""
    in_group = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("["):
            in_group = line.strip() == f"[{group}]"
            if in_group and key is None:
                return n
        elif in_group and line.split("=", 1)[0].strip() == key:
            return n
    fail(f"no {key} in [{group}] of the test's own configuration")


failures = []
with tempfile.TemporaryDirectory(prefix="vigil-plc-conf-") as tmp:
    for label, keys, appended, group, key, what in CASES:
        text = edit(keys, appended)
        path = os.path.join(tmp, "vigild.conf")
        with open(path, "w") as f:
            f.write(text)
        p = Vigild.once(build, path)
        msg = p.stderr.strip()
        want = f"{path}:{line_of(text, group, key)}: [{group}]" + (f" {key}:" if key else ":")
        print(f"{label}: rc={p.returncode}: {msg}")
        if p.returncode == 0:
            failures.append(f"{label}: vigild accepted it")
        elif want not in msg or what not in msg:
            failures.append(f"{label}: {msg!r} lacks {want!r} or {what!r}")

if failures:
    fail("\n  " + "\n  ".join(failures))
print(f"PASS: {len(CASES)} bad configurations refused, each naming file, line and key")
