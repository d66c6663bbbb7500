#!/usr/bin/python3
"""Parts files and score comparison, the GPU check's way of judging real
parts on a machine without image codecs (bench/gpu-kit.sh): vigil-features
--raw-out writes simulated parts, infer-bench --parts --scores judges them,
and bench/compare-scores.py finds them equal to vigil-eval's scores of the
same parts, prepared on the CPU and raw, on opencv and on the reference
executor. Bad parts files and mismatched score files are refused.

usage: test_parts_replay.py BUILD_DIR SOURCE_ROOT
"""
import csv
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from linetest import fail, generate_parts, read_manifest  # noqa: E402

build, root = sys.argv[1], sys.argv[2]
features = os.path.join(build, "tools", "vigil-features")
evaluate = os.path.join(build, "tools", "vigil-eval")
bench = os.path.join(build, "bench", "infer-bench")
compare = os.path.join(root, "bench", "compare-scores.py")
PARTS = 90


def run(cmd, want_rc=0):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != want_rc:
        fail(f"{' '.join(cmd)}: exit {p.returncode}, wanted {want_rc}\n{p.stdout}{p.stderr}")
    return p.stdout + p.stderr


def judged(pkg, backend, parts_file, out, *extra):
    run([bench, pkg, backend, "10", "--parts", parts_file, "--scores", out, *extra])
    with open(out) as f:
        rows = list(csv.DictReader(f))
    if len(rows) != PARTS or [r["part"] for r in rows] != [str(i) for i in range(PARTS)]:
        fail(f"{out}: {len(rows)} rows, wanted parts 0..{PARTS - 1} in order")
    return out


with tempfile.TemporaryDirectory(prefix="vigil-replay-") as tmp:
    data = os.path.join(tmp, "parts")
    generate_parts(build, data, PARTS, 47, split="test")
    manifest = os.path.join(data, "parts.csv")
    raw = os.path.join(tmp, "parts.vgr")
    m = read_manifest(os.path.join(root, "models", "synthetic-v2"))
    run([features, "--manifest", manifest, "--width", m["input_width"],
         "--height", m["input_height"], "--out", os.path.join(tmp, "f.vgf"), "--raw-out", raw])

    for pkg_name in ("synthetic-v2", "real-v4"):
        pkg = os.path.join(root, "models", pkg_name)
        ref = os.path.join(tmp, f"{pkg_name}-eval.csv")
        run([evaluate, "--manifest", manifest, "--model", pkg, "--json",
             os.path.join(tmp, "e.json"), "--scores", ref])
        # The same fusion/ and OpenCV arithmetic: equal to the last digit
        # printed, prepared by infer-bench or inside infer_model_run_raw.
        for mode, extra in (("prepared", ["--batch", "1"]), ("raw", ["--raw", "--batch", "4"])):
            out = judged(pkg, "opencv", raw, os.path.join(tmp, f"{pkg_name}-{mode}.csv"), *extra)
            line = run([sys.executable, compare, ref, out, "--name", f"{pkg_name} {mode}",
                        "--same-verdicts", "--max-diff", "1e-6"])
            print(line.strip())
            if "AUROC" not in line:
                fail(f"no AUROC from vigil-eval's defect column: {line}")
        # The reference executor, batched: float32 of its own order.
        out = judged(pkg, "reference", raw, os.path.join(tmp, f"{pkg_name}-ref.csv"),
                     "--batch", "8")
        print(run([sys.executable, compare, ref, out, "--name", f"{pkg_name} reference",
                   "--same-verdicts", "--max-diff", "1e-4"]).strip())

    # compare-scores must see a changed verdict and a changed score.
    ref = os.path.join(tmp, "synthetic-v2-eval.csv")
    with open(ref) as f:
        rows = list(csv.DictReader(f))
    flipped = os.path.join(tmp, "flipped.csv")
    rows[3]["verdict"] = "reject" if rows[3]["verdict"] != "reject" else "accept"
    rows[5]["score"] = str(float(rows[5]["score"]) + 0.01)
    with open(flipped, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    line = run([sys.executable, compare, ref, flipped, "--same-verdicts"], want_rc=1)
    if "verdicts differing 1 (" + rows[3]["part_id"] not in line:
        fail(f"the flipped verdict of {rows[3]['part_id']} went unnoticed: {line}")
    line = run([sys.executable, compare, ref, flipped, "--max-diff", "1e-3"], want_rc=1)
    if "score 0.01" not in line:
        fail(f"the changed score went unnoticed: {line}")
    rows[7]["vision_score"] = "nan"
    with open(flipped, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    line = run([sys.executable, compare, ref, flipped], want_rc=1)
    if "NOT FINITE in 1 parts (" + rows[7]["part_id"] not in line:
        fail(f"a NaN score went unnoticed: {line}")
    with open(flipped, "w") as f:
        f.write("part,score,vision_score,signal_score,verdict\n0,0.5,0.5,0.5,accept\n")
    run([sys.executable, compare, ref, flipped], want_rc=2)

    # Bad parts files: cut short, and windows the package does not take.
    pkg = os.path.join(root, "models", "synthetic-v2")
    with open(raw, "rb") as f:
        blob = f.read()
    cut = os.path.join(tmp, "cut.vgr")
    with open(cut, "wb") as f:
        f.write(blob[:len(blob) // 2])
    msg = run([bench, pkg, "opencv", "10", "--parts", cut, "--scores", os.path.join(tmp, "x.csv")],
              want_rc=1)
    if "ends inside a part" not in msg or os.path.exists(os.path.join(tmp, "x.csv")):
        fail(f"a truncated parts file: {msg}")
    other = os.path.join(tmp, "other.vgr")
    with open(other, "wb") as f:
        f.write(b"VGR1" + struct.pack("<4I", 1, 1024, 4, 4) + bytes(16)
                + struct.pack("<1024f", *([0.0] * 1024)))
    msg = run([bench, pkg, "opencv", "10", "--parts", other], want_rc=1)
    if "windows of 1024 samples" not in msg or "takes 2048" not in msg:
        fail(f"a parts file of other windows: {msg}")
    with open(other, "wb") as f:  # a header promising more than the file holds
        f.write(b"VGR1" + struct.pack("<2I", 1000000, 1 << 24))
    msg = run([bench, pkg, "opencv", "10", "--parts", other], want_rc=1)
    if "do not fit" not in msg:
        fail(f"a parts file whose header overstates it: {msg}")
    msg = run([bench, pkg, "opencv", "10", "--parts", manifest], want_rc=1)
    if "not a parts file" not in msg:
        fail(f"a CSV as parts file: {msg}")
print("parts replay: ok")
