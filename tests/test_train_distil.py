#!/usr/bin/python3
"""tools/train.py --teacher and --marginal-budget on synthetic parts (issue
20: one network distilled from a package, fewer manual checks).

- A small segmentation package is trained, then taught to a student of the
  same input: with --distil 0 the student's vision module is byte for byte
  the one trained without a teacher (the teacher's targets ride along but
  weigh nothing), with --distil 0.5 it differs, and the log says so.
- A teacher of another input size is refused, naming both sizes.
- --marginal-budget 0 (no manual checks) puts reject on marginal, which
  the default rule never does (it keeps reject above every good held-out
  part); the package's held-out marginal share is 0 in its [metrics] and
  through vigil-eval (the C runtime), and the manifest states the
  false-reject rate to expect on unseen good parts with its 95 % bound,
  as vigil-eval computes it. The false-reject target is 20 %, so that even
  a one-epoch model flags parts for the budget to act on. (calibrate()'s
  budget on its own is tested in test_train_parts.py.)
- tools/recalibrate.py chooses that package's thresholds again without
  the budget: the modules and the int8 calibration are copied byte for
  byte (and int8 still loads the copy), reject moves above
  marginal, the manifest says where the thresholds came from and
  vigil-eval agrees with its [metrics]; an existing --out is refused.

usage: test_train_distil.py BUILD_DIR SOURCE_ROOT
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linetest import check_keeps_package, fail, generate_parts, read_manifest  # noqa: E402

build, root = sys.argv[1], sys.argv[2]
SIZE = 32
BUDGET = 0.0

with tempfile.TemporaryDirectory(prefix="vigil-train-distil-") as tmp:
    train_dir, held_dir = os.path.join(tmp, "train"), os.path.join(tmp, "held")
    generate_parts(build, train_dir, 80, 81, split="train")
    generate_parts(build, held_dir, 60, 82, split="test")
    base = ["/usr/bin/python3", os.path.join(root, "tools", "train.py"),
            "--manifest", os.path.join(train_dir, "parts.csv"),
            "--features-tool", os.path.join(build, "tools", "vigil-features"),
            "--seed", "1", "--arch", "seg", "--height", str(SIZE)]

    def train(name, *extra, width=SIZE, ok=True):
        out = os.path.join(tmp, name)
        run = subprocess.run(base + ["--out", out, "--width", str(width), "--version", name,
                                     *extra], capture_output=True, text=True)
        if ok and run.returncode != 0:
            print(run.stdout[-3000:], run.stderr[-2000:])
            fail(f"train.py {name} exited {run.returncode}")
        return out, run

    def vision_bytes(pkg):
        with open(os.path.join(pkg, "vision.onnx"), "rb") as f:
            return f.read()

    teacher, _ = train("teacher", "--epochs", "3")
    plain, _ = train("plain", "--epochs", "1")
    inert, _ = train("inert", "--epochs", "1", "--teacher", teacher, "--distil", "0")
    if vision_bytes(inert) != vision_bytes(plain):
        fail("--distil 0 changed the student: the teacher's targets must weigh nothing")

    held = ["--val-manifest", os.path.join(held_dir, "parts.csv"), "--frr-target", "0.2",
            "--marginal-rule", "tight", "--marginal-budget", str(BUDGET)]
    taught, run = train("taught", "--epochs", "1", "--teacher", teacher, "--distil", "0.5",
                        *held)
    if "distilling" not in run.stdout or f"teacher {teacher}" not in run.stdout:
        fail(f"the log does not say what is distilled: {run.stdout[-1500:]}")
    if vision_bytes(taught) == vision_bytes(plain):
        fail("--distil 0.5 left the student as trained without a teacher")

    _, run = train("wrong-size", "--epochs", "1", "--teacher", teacher, width=40, ok=False)
    if run.returncode == 0 or f"takes {SIZE}x{SIZE}" not in run.stderr or \
            f"this run 40x{SIZE}" not in run.stderr:
        fail(f"a teacher of another input size: exit {run.returncode}, {run.stderr[-500:]}")
    if os.path.exists(os.path.join(tmp, "wrong-size", "manifest.ini")):
        fail("a refused teacher still left a package")

    man = read_manifest(taught)
    if man["reject"] != man["marginal"]:
        fail(f"budget 0: reject {man['reject']}, marginal {man['marginal']}; want them equal")
    if float(man["heldout_marginal_rate"]) > BUDGET:
        fail(f"heldout_marginal_rate {man['heldout_marginal_rate']} over the {BUDGET} budget")
    with open(os.path.join(taught, "manifest.ini")) as f:
        text = f.read()
    if "Unseen good parts: false rejects" not in text or \
            "with 95 % confidence" not in text or "heldout_false_reject_upper95=" not in text:
        fail("the manifest does not state the false-reject rate to expect on unseen parts")
    js = os.path.join(tmp, "eval.json")
    subprocess.run([os.path.join(build, "tools", "vigil-eval"), "--manifest",
                    os.path.join(held_dir, "parts.csv"), "--model", taught, "--json", js],
                   check=True, capture_output=True)
    with open(js) as f:
        r = json.load(f)
    if r["marginal_rate"] > BUDGET:
        fail(f"vigil-eval's marginal_rate {r['marginal_rate']} over the {BUDGET} budget")
    if abs(r["false_reject_upper95"] - float(man["heldout_false_reject_upper95"])) > 1e-4:
        fail(f"false_reject_upper95: vigil-eval {r['false_reject_upper95']}, manifest "
             f"{man['heldout_false_reject_upper95']}")

    def recalibrate(out, *extra):
        return subprocess.run(["/usr/bin/python3", os.path.join(root, "tools", "recalibrate.py"),
                               "--model", taught, "--out", out, "--features-tool",
                               os.path.join(build, "tools", "vigil-features"), "--val-manifest",
                               os.path.join(held_dir, "parts.csv"), "--frr-target", "0.2",
                               *extra], capture_output=True, text=True)
    subprocess.run([os.path.join(build, "tools", "vigil-calibrate"), "--manifest",
                    os.path.join(train_dir, "parts.csv"), "--model", taught, "--parts", "20"],
                   check=True, capture_output=True)
    again = os.path.join(tmp, "again")
    run = recalibrate(again)
    if run.returncode != 0:
        fail(f"recalibrate.py exited {run.returncode}: {run.stderr[-1500:]}")
    for name in ("vision.onnx", "signal.onnx", "decision.onnx", "calibration-int8.ini"):
        with open(os.path.join(taught, name), "rb") as f1, open(os.path.join(again, name),
                                                                  "rb") as f2:
            if f1.read() != f2.read():
                fail(f"recalibrate.py changed {name}")
    int8 = subprocess.run([os.path.join(build, "tools", "vigil-eval"), "--manifest",
                           os.path.join(held_dir, "parts.csv"), "--model", again, "--json",
                           os.path.join(tmp, "int8.json"), "--backend", "reference",
                           "--precision", "int8"], capture_output=True, text=True)
    if int8.returncode != 0:
        fail(f"int8 refused the recalibrated package's calibration: {int8.stderr[-500:]}")
    man2 = read_manifest(again)
    if not float(man2["reject"]) > float(man2["marginal"]) or \
            man2["marginal"] != man["marginal"] or man2["version"] != man["version"]:
        fail(f"recalibrated: reject {man2['reject']} marginal {man2['marginal']} version "
             f"{man2['version']}; before: {man['marginal']} {man['version']}")
    with open(os.path.join(again, "manifest.ini")) as f:
        if "# Thresholds chosen again from taught's by tools/recalibrate.py" not in f.read():
            fail("the recalibrated manifest does not say where its thresholds came from")
    subprocess.run([os.path.join(build, "tools", "vigil-eval"), "--manifest",
                    os.path.join(held_dir, "parts.csv"), "--model", again, "--json", js],
                   check=True, capture_output=True)
    with open(js) as f:
        r2 = json.load(f)
    if abs(r2["marginal_rate"] - float(man2["heldout_marginal_rate"])) > 1e-4:
        fail(f"recalibrated: vigil-eval marginal_rate {r2['marginal_rate']}, manifest "
             f"{man2['heldout_marginal_rate']}")
    check_keeps_package("manifest.ini", again, lambda: recalibrate(again))
print(f"ok: distilled student, budget kept (marginal {r['marginal_rate']:.3f}, "
      f"false rejects {r['false_reject_rate']:.3f}, bound {r['false_reject_upper95']:.3f})")
