#!/usr/bin/python3
"""The run-time check: a model trained by tools/train.py (segmentation
vision module, a short run on synthetic parts) gives the same scores under
PyTorch as under the C runtime (vigil-eval: fusion/ features, inference/
modules through OpenCV DNN) on the same held-out parts.

usage: test_eval_torch.py BUILD_DIR SOURCE_ROOT
"""
import csv
import os
import subprocess
import sys
import tempfile

build, root = sys.argv[1], sys.argv[2]
sim = os.path.join(build, "tools", "vigil-sim")
TOLERANCE = 1e-4   # probabilities; float32 through two runtimes


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def read_scores(path):
    with open(path) as f:
        return {r["part_id"]: r for r in csv.DictReader(f)}


with tempfile.TemporaryDirectory(prefix="vigil-eval-torch-") as tmp:
    train, held = os.path.join(tmp, "train"), os.path.join(tmp, "held")
    subprocess.run([sim, "generate", "--out", train, "--parts", "200", "--seed", "41"],
                   check=True)
    subprocess.run([sim, "generate", "--out", held, "--parts", "60", "--seed", "42",
                    "--split", "test"], check=True)
    pkg = os.path.join(tmp, "pkg")
    torch_scores = os.path.join(tmp, "torch.csv")
    subprocess.run(["/usr/bin/python3", os.path.join(root, "tools", "train.py"),
                    "--manifest", os.path.join(train, "parts.csv"),
                    "--features-tool", os.path.join(build, "tools", "vigil-features"),
                    "--out", pkg, "--seed", "3", "--arch", "seg", "--width", "64",
                    "--height", "64", "--epochs", "2", "--frr-target", "0.01",
                    "--val-manifest", os.path.join(held, "parts.csv"), "--val-split", "test",
                    "--scores-out", torch_scores, "--name", "check", "--version", "check-1"],
                   check=True)
    c_scores = os.path.join(tmp, "c.csv")
    subprocess.run([os.path.join(build, "tools", "vigil-eval"),
                    "--manifest", os.path.join(held, "parts.csv"), "--split", "test",
                    "--model", pkg, "--json", os.path.join(tmp, "eval.json"),
                    "--scores", c_scores], check=True)
    t, c = read_scores(torch_scores), read_scores(c_scores)
    if set(t) != set(c) or len(t) != 60:
        fail(f"torch scored {len(t)} parts, the C runtime {len(c)}")
    worst = max(abs(float(t[p][k]) - float(c[p][k]))
                for p in t for k in ("score", "vision_score", "signal_score"))
    if worst > TOLERANCE:
        fail(f"C runtime and PyTorch differ by {worst:.3g} (tolerance {TOLERANCE})")
print(f"ok: C runtime and PyTorch agree on 60 parts, max score difference {worst:.2e}")
