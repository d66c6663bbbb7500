#!/usr/bin/python3
"""tools/train.py on several manifests, each with its own data root (issue
23: the original training set plus the line's export, without merging them
by hand): two sets of synthetic parts whose manifests sit apart from their
files, so only the paired --data-root finds them; the package's log counts
the parts of both, its [metrics] the held-out parts of both held-out
manifests, and the held-out scores carry each part id prefixed with its
manifest's place. Mismatched counts of manifests and roots are refused.

usage: test_train_manifests.py BUILD_DIR SOURCE_ROOT
"""
import csv
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linetest import fail, generate_parts, read_manifest  # noqa: E402

build, root = sys.argv[1], sys.argv[2]
TRAIN = {"a": 40, "b": 24}      # parts of each training set
HELD = {"a": 12, "b": 8}        # of each held-out set
SIZE = 32                       # model input: small, the run is about the data


def moved_manifest(src_dir, dst):
    """The set's parts.csv copied away from its files: its relative paths
    now resolve only against --data-root src_dir."""
    shutil.copy(os.path.join(src_dir, "parts.csv"), dst)
    return dst


with tempfile.TemporaryDirectory(prefix="vigil-train-manifests-") as tmp:
    manifests = os.path.join(tmp, "manifests")
    os.makedirs(manifests)
    train, held = [], []
    for i, name in enumerate(TRAIN):
        d = os.path.join(tmp, f"train-{name}")
        generate_parts(build, d, TRAIN[name], 60 + i, split="train")
        train += ["--manifest", moved_manifest(d, os.path.join(manifests, f"train-{name}.csv")),
                  "--data-root", d]
        h = os.path.join(tmp, f"held-{name}")
        generate_parts(build, h, HELD[name], 70 + i, split="test")
        held += ["--val-manifest", moved_manifest(h, os.path.join(manifests, f"held-{name}.csv")),
                 "--val-root", h]
    pkg, scores = os.path.join(tmp, "pkg"), os.path.join(tmp, "scores.csv")
    cmd = ["/usr/bin/python3", os.path.join(root, "tools", "train.py"),
           "--features-tool", os.path.join(build, "tools", "vigil-features"),
           "--out", pkg, "--seed", "1", "--width", str(SIZE), "--height", str(SIZE),
           "--epochs", "1", "--version", "two-sets-1"]

    # One --data-root for two --manifest: refused before any work.
    bad = subprocess.run(cmd + train[:4] + ["--manifest", train[5]],
                         capture_output=True, text=True)
    print(bad.stderr[-500:])
    if bad.returncode != 2 or "2 --manifest but 1 --data-root" not in bad.stderr:
        fail(f"mismatched --manifest/--data-root: exit {bad.returncode}, {bad.stderr[-300:]}")
    bad = subprocess.run(cmd + train + held[:4] + ["--val-root", held[3]],
                         capture_output=True, text=True)
    if bad.returncode != 2 or "1 --val-manifest but 2 --val-root" not in bad.stderr:
        fail(f"mismatched --val-manifest/--val-root: exit {bad.returncode}, "
             f"{bad.stderr[-300:]}")

    run = subprocess.run(cmd + train + held + ["--scores-out", scores],
                         capture_output=True, text=True)
    print(run.stdout[-3000:], run.stderr[-2000:])
    if run.returncode != 0:
        fail(f"train.py on two manifests exited {run.returncode}")
    want = sum(TRAIN.values())
    if f"train: {want} training parts:" not in run.stdout:
        fail(f"train.py's log does not count {want} training parts")
    for name in TRAIN:
        if f"train-{name}.csv (data root {tmp}/train-{name}): {TRAIN[name]} parts" \
                not in run.stdout:
            fail(f"no count of set {name}'s {TRAIN[name]} parts in the log")
    man = read_manifest(pkg)
    if man.get("heldout_parts") != str(sum(HELD.values())):
        fail(f"heldout_parts={man.get('heldout_parts')}, want {sum(HELD.values())}")
    with open(scores) as f:
        ids = [r["part_id"] for r in csv.DictReader(f)]
    prefixes = [i.split(":", 1)[0] for i in ids]
    if prefixes != ["1"] * HELD["a"] + ["2"] * HELD["b"] or len(set(ids)) != len(ids):
        fail(f"held-out part ids {ids}: want {HELD['a']} '1:' then {HELD['b']} '2:', unique")
print("PASS")
