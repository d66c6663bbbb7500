#!/usr/bin/python3
"""tools/leave_one_out.py on synthetic parts (issue 21, novel defects):
two surface classes left out in turn, each run short.

- Each class's training manifest lacks exactly that class's rows and
  keeps every other row.
- The table and leave-one-out.json hold one row per class with its
  held-out defective count, and the escapes it reports are vigil-eval's
  for that class on the supervised, the good-only and the fused package.
- The fused package of each run is tools/fuse.py's (score=fused).
- A second run with the same --work trains nothing again (the logs stay
  as they were) and prints the same table.
- A recipe that sets --out is refused.

usage: test_leave_one_out.py BUILD_DIR SOURCE_ROOT
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linetest import fail, generate_parts, read_manifest  # noqa: E402

build, root = sys.argv[1], sys.argv[2]
SIZE = 32
CLASSES = ("stain", "pit")
features = os.path.join(build, "tools", "vigil-features")
eval_tool = os.path.join(build, "tools", "vigil-eval")

with tempfile.TemporaryDirectory(prefix="vigil-loo-") as tmp:
    train_dir, held_dir = os.path.join(tmp, "train"), os.path.join(tmp, "held")
    generate_parts(build, train_dir, 160, 15, split="train")
    generate_parts(build, held_dir, 100, 16, split="test")
    train_csv, held_csv = (os.path.join(d, "parts.csv") for d in (train_dir, held_dir))
    recipe = ["--seed", "1", "--arch", "seg", "--width", str(SIZE), "--height", str(SIZE),
              "--epochs", "3", "--marginal-rule", "tight"]
    anomaly = os.path.join(tmp, "anomaly")
    subprocess.run(["/usr/bin/python3", os.path.join(root, "tools", "train.py"), "--manifest",
                    train_csv, "--features-tool", features, "--out", anomaly, "--good-only",
                    "--val-manifest", held_csv, "--frr-target", "0.05", *recipe],
                   check=True, capture_output=True)
    work = os.path.join(tmp, "work")
    cmd = ["/usr/bin/python3", os.path.join(root, "tools", "leave_one_out.py"),
           "--manifest", train_csv, "--val-manifest", held_csv, "--anomaly", anomaly,
           "--features-tool", features, "--eval-tool", eval_tool, "--work", work,
           "--frr-target", "0.05", "--classes", ",".join(CLASSES), "--", *recipe]
    first = subprocess.run(cmd, capture_output=True, text=True)
    if first.returncode != 0:
        fail(f"leave_one_out.py exited {first.returncode}: {first.stderr[-1500:]}")

    with open(train_csv) as f:
        rows = list(csv.DictReader(f))
    with open(held_csv) as f:
        held = list(csv.DictReader(f))
    with open(os.path.join(work, "leave-one-out.json")) as f:
        table = json.load(f)
    if [r["class"] for r in table] != list(CLASSES):
        fail(f"leave-one-out.json classes {[r['class'] for r in table]}, want {CLASSES}")
    for r in table:
        name = r["class"]
        with open(os.path.join(work, name, "train.csv")) as f:
            kept = list(csv.DictReader(f))
        want = [x for x in rows if x["image_class"] != name]
        if kept != want or len(kept) == len(rows):
            fail(f"{name}: the training manifest has {len(kept)} rows, want the "
                 f"{len(want)} of {len(rows)} without {name}")
        n = sum(x["image_class"] == name for x in held)
        for kind, pkg in (("supervised", os.path.join(work, name, "supervised")),
                          ("anomaly", anomaly), ("fused", os.path.join(work, name, "fused"))):
            js = os.path.join(tmp, f"{name}-{kind}.json")
            subprocess.run([eval_tool, "--manifest", held_csv, "--model", pkg, "--json", js],
                           check=True, capture_output=True)
            with open(js) as f:
                rep = json.load(f)
            esc = [c["escapes"] for c in rep["escapes_by_class"]["image_class"]
                   if c["class"] == name]
            if r[kind]["defective"] != n or [r[kind]["escapes"]] != esc:
                fail(f"{name} {kind}: table says {r[kind]['escapes']} of "
                     f"{r[kind]['defective']}, vigil-eval {esc} of {n}")
        if read_manifest(os.path.join(work, name, "fused")).get("score") != "fused":
            fail(f"{name}: the fused package is not tools/fuse.py's")
        if f"| {name} | " not in first.stdout:
            fail(f"the table has no row for {name}: {first.stdout}")

    logs = {name: os.stat(os.path.join(work, name, "supervised.log")).st_mtime_ns
            for name in CLASSES}
    again = subprocess.run(cmd, capture_output=True, text=True)
    if again.returncode != 0 or again.stdout != first.stdout:
        fail(f"the second run: exit {again.returncode}, table {again.stdout!r}")
    for name in CLASSES:
        if os.stat(os.path.join(work, name, "supervised.log")).st_mtime_ns != logs[name]:
            fail(f"the second run trained {name} again")

    bad = subprocess.run(cmd + ["--out", tmp], capture_output=True, text=True)
    if bad.returncode == 0 or "must not give --out" not in bad.stderr:
        fail(f"a recipe with --out: exit {bad.returncode}, {bad.stderr[-300:]}")
print("ok: leave-one-out\n" + first.stdout)
