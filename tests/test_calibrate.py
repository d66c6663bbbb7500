#!/usr/bin/python3
"""vigil-calibrate on synthetic parts: a copy of models/synthetic-v1 is
calibrated on a train split of vigil-sim parts, then judged by vigil-eval
on another split with the reference executor in fp32 and in int8. The
bound int8 is held to (docs/inference-engine.md): the AUROC moves by at
most 0.01, at least 99 % of the verdicts agree, and a verdict may differ
only on a part whose fp32 score lies within 0.15 of a threshold (measured:
none differ with this calibration; one or two borderline parts do with
others). int8 on OpenCV and int8 without a calibration are refused with
the reason.

usage: test_calibrate.py BUILD_DIR SOURCE_ROOT
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

build, root = sys.argv[1], sys.argv[2]
sim = os.path.join(build, "tools", "vigil-sim")
calibrate = os.path.join(build, "tools", "vigil-calibrate")
evaluate = os.path.join(build, "tools", "vigil-eval")
failures = []


def judge(pkg, data, precision, tmp):
    out = os.path.join(tmp, f"{precision}.json")
    scores = os.path.join(tmp, f"{precision}.csv")
    subprocess.run([evaluate, "--manifest", os.path.join(data, "parts.csv"), "--split", "test",
                    "--model", pkg, "--backend", "reference", "--precision", precision,
                    "--json", out, "--scores", scores], check=True)
    with open(out) as f:
        figures = json.load(f)
    with open(scores) as f:
        return figures, list(csv.DictReader(f))


with tempfile.TemporaryDirectory(prefix="vigil-calibrate-") as tmp:
    train, held = os.path.join(tmp, "train"), os.path.join(tmp, "held")
    subprocess.run([sim, "generate", "--out", train, "--parts", "80", "--seed", "41",
                    "--split", "train"], check=True, capture_output=True)
    subprocess.run([sim, "generate", "--out", held, "--parts", "200", "--seed", "42",
                    "--split", "test"], check=True, capture_output=True)
    pkg = os.path.join(tmp, "pkg")
    shutil.copytree(os.path.join(root, "models", "synthetic-v1"), pkg)
    calib = os.path.join(pkg, "calibration-int8.ini")
    if os.path.exists(calib):
        os.unlink(calib)

    # No calibration yet: int8 is refused and says how to make one.
    p = subprocess.run([evaluate, "--manifest", os.path.join(held, "parts.csv"), "--model", pkg,
                        "--backend", "reference", "--precision", "int8",
                        "--json", os.path.join(tmp, "x.json")], capture_output=True, text=True)
    if p.returncode == 0 or "vigil-calibrate" not in p.stderr:
        failures.append(f"int8 without calibration: rc {p.returncode}, {p.stderr!r}")

    p = subprocess.run([calibrate, "--manifest", os.path.join(train, "parts.csv"), "--split",
                        "train", "--model", pkg, "--range", "sometimes"],
                       capture_output=True, text=True)
    if p.returncode == 0 or "'sometimes' is not max or percentile" not in p.stderr:
        failures.append(f"bad --range: rc {p.returncode}, {p.stderr!r}")

    subprocess.run([calibrate, "--manifest", os.path.join(train, "parts.csv"), "--split", "train",
                    "--model", pkg, "--parts", "0"], check=True)
    with open(calib) as f:
        text = f.read()
    for want in ("format=1", "parts=80", "activation_range=max", "[vision]", "[signal]",
                 "[decision]", "weight_scales=", "input_range=", "checksum="):
        if want not in text:
            failures.append(f"calibration file lacks {want!r}")

    # A percentile range clips: never above the max, below it somewhere.
    pct = os.path.join(tmp, "pct")
    shutil.copytree(pkg, pct)
    subprocess.run([calibrate, "--manifest", os.path.join(train, "parts.csv"), "--split", "train",
                    "--model", pct, "--parts", "0", "--range", "percentile",
                    "--percentile", "99.9"], check=True)
    with open(os.path.join(pct, "calibration-int8.ini")) as f:
        ptext = f.read()

    def ranges(t):
        return [float(l.split("=", 1)[1]) for l in t.splitlines() if l.startswith("input_range=")]
    if "activation_range=percentile 99.9" not in ptext:
        failures.append("percentile calibration does not say so")
    rmax, rpct = ranges(text), ranges(ptext)
    if len(rmax) != len(rpct) or not rmax:
        failures.append(f"{len(rmax)} ranges with max, {len(rpct)} with a percentile")
    elif any(p > m for p, m in zip(rpct, rmax)) or not any(p < m for p, m in zip(rpct, rmax)):
        failures.append(f"percentile ranges {rpct} against max ranges {rmax}")

    f32, s32 = judge(pkg, held, "fp32", tmp)
    i8, s8 = judge(pkg, held, "int8", tmp)
    if i8.get("precision") != "int8" or f32.get("precision") != "fp32":
        failures.append(f"JSON precision {f32.get('precision')} / {i8.get('precision')}")
    if len(s32) != 200 or len(s8) != 200:
        failures.append(f"{len(s32)} / {len(s8)} parts judged, expected 200")
    differ = [a for a, b in zip(s32, s8) if a["verdict"] != b["verdict"]]
    moved = sum(a["score"] != b["score"] for a, b in zip(s32, s8))
    worst = max(abs(float(a["score"]) - float(b["score"])) for a, b in zip(s32, s8))
    print(f"fp32 AUROC {f32['auroc']:.4f}, int8 {i8['auroc']:.4f}; {len(differ)} verdicts "
          f"differ; {moved} scores moved, worst |dp| {worst:.4g}")
    if len(differ) > len(s32) // 100:
        failures.append(f"int8 verdicts differ from fp32 on {[a['part_id'] for a in differ]}")
    for a in differ:
        near = min(abs(float(a["score"]) - f32[t]) for t in ("reject", "marginal"))
        if near > 0.15:
            failures.append(f"{a['part_id']}: verdict differs at fp32 score {a['score']}, "
                            f"{near:.3f} from a threshold")
    if abs(f32["auroc"] - i8["auroc"]) > 0.01:
        failures.append(f"AUROC {f32['auroc']} in fp32, {i8['auroc']} in int8")
    if moved == 0:
        failures.append("int8 scores equal fp32's everywhere: int8 did not run")

    # An edited calibration is refused.
    with open(calib, "w") as f:
        f.write(text.replace("input_range=", "input_range=1", 1))
    p = subprocess.run([evaluate, "--manifest", os.path.join(held, "parts.csv"), "--model", pkg,
                        "--backend", "reference", "--precision", "int8",
                        "--json", os.path.join(tmp, "x.json")], capture_output=True, text=True)
    if p.returncode == 0 or "checksum does not match" not in p.stderr:
        failures.append(f"edited calibration: rc {p.returncode}, {p.stderr!r}")

    # OpenCV runs fp32 only.
    p = subprocess.run([evaluate, "--manifest", os.path.join(held, "parts.csv"), "--model", pkg,
                        "--precision", "int8", "--json", os.path.join(tmp, "x.json")],
                       capture_output=True, text=True)
    if p.returncode == 0 or "opencv backend does not run int8" not in p.stderr:
        failures.append(f"opencv int8: rc {p.returncode}, {p.stderr!r}")

if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("ok")
