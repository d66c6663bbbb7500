#!/usr/bin/python3
"""The GPU kit (bench/gpu-kit.sh) and the GPU check that runs from it
(bench/gpu.sh), on this machine: the kit is made from this build with
simulated val parts, holds the binaries, their libraries with glibc's
loader, the parts, the opencv reference scores and the reference
executor's fp16 / bf16 predictions, each with its SHA-256;
its binaries start through the kit's loader with the libraries of an
emptied environment; and gpu.sh, run from the kit, finds the opencv
verdicts of the kit's parts equal to the reference, benchmarks opencv, and
reports the GPU steps as skipped or failed (no GPU here) with a failing
exit status. On a machine with a GPU the same run passes the GPU tests.

With "emulated" the kit is the rehearsal one (EMULATE=1 gpu-kit.sh: the
same programs on the CUDA emulation, tests/cuda-emu), and gpu.sh must run
through: both GPU tests pass, every val run is compared, every benchmark
runs, tables.md holds cuda's figures under the rehearsal warning, exit 0.

usage: test_gpu_kit.py BUILD_DIR SOURCE_ROOT [emulated]
"""
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from linetest import fail, generate_parts  # noqa: E402

build, root = sys.argv[1], sys.argv[2]
emulated = len(sys.argv) > 3 and sys.argv[3] == "emulated"
PARTS = 24

with tempfile.TemporaryDirectory(prefix="vigil-kit-") as tmp:
    data = os.path.join(tmp, "parts")
    generate_parts(build, data, PARTS, 53, split="val")
    kit_dir = os.path.join(tmp, "kit")
    env = dict(os.environ, BUILD=build, DATA=data, MANIFEST=os.path.join(data, "parts.csv"),
               TMPDIR=tmp, EMULATE="1" if emulated else "")
    p = subprocess.run(["sh", os.path.join(root, "bench", "gpu-kit.sh"), kit_dir], env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"gpu-kit.sh: exit {p.returncode}\n{p.stdout}{p.stderr}")
    if f"{PARTS} parts, verdicts differing 0" not in p.stderr:
        fail(f"gpu-kit.sh did not check the kit's parts against vigil-eval:\n{p.stderr}")
    kit = os.path.join(kit_dir, "kit.tar.xz")
    unpacked = os.path.join(tmp, "unpacked")
    with tarfile.open(kit) as t:
        t.extractall(unpacked)
    for path in ("bin/test-inference-cuda", "bin/test-cuda-preprocess", "bin/infer-bench",
                 "lib/ld-linux-x86-64.so.2", "lib/libc.so.6", "lib/libopencv_dnn.so.406",
                 "val/val.vgr", "val/val-opencv-fp32.csv", "val/val-reference-fp16.csv",
                 "val/val-reference-bf16.csv", "KIT_INFO"):
        if not os.path.isfile(os.path.join(unpacked, path)):
            fail(f"the kit has no {path}")
    libs = os.listdir(os.path.join(unpacked, "lib"))
    cuda_own = [n for n in libs if n.startswith(("libcudnn", "libcublas", "libcufft", "libcuda."))]
    if cuda_own:
        fail(f"the kit carries the GPU machine's own CUDA libraries: {cuda_own}")
    if any("imgcodecs" in n or "gdal" in n for n in libs):
        fail(f"the kit carries image codecs its binaries should not load: {sorted(libs)}")
    sums = 0
    with open(os.path.join(unpacked, "KIT_INFO")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and len(parts[0]) == 64:
                with open(os.path.join(unpacked, parts[1]), "rb") as g:
                    if hashlib.sha256(g.read()).hexdigest() != parts[0]:
                        fail(f"KIT_INFO's SHA-256 of {parts[1]} is wrong")
                sums += 1
    if sums != sum(len(fs) for _, _, fs in os.walk(unpacked)) - 1:
        fail(f"KIT_INFO lists {sums} files; the kit holds more")
    with open(os.path.join(unpacked, "KIT_INFO")) as f:
        if ("\nemulated CUDA" in f.read()) != emulated:
            fail("KIT_INFO must say emulated exactly when the kit is the rehearsal one")

    # gpu.sh from the kit: 10 parts a benchmark, batches up to 2 on cuda.
    # The rehearsal runs every step on the CPU emulation, as slow as the
    # machine is busy: the device tool's time limits are lifted for it, so
    # that it runs through on any machine (the test's own timeout bounds it).
    out = os.path.join(tmp, "out")
    env = dict(os.environ, OUT=out, KIT=kit, TMPDIR=tmp, BUDGET_S="0")
    if emulated:
        env.update(DEADLINE_S="100000", STEP_SCALE="100")
    p = subprocess.run(["sh", os.path.join(root, "bench", "gpu.sh"), "10", "2"], env=env,
                       capture_output=True, text=True, timeout=2400 if emulated else 600)
    with open(os.path.join(out, "summary.txt")) as f:
        summary = f.read()
    print(summary)
    gpu = "test-inference-cuda ok" in summary
    if not gpu and p.returncode == 0:
        fail("gpu.sh passed without a GPU")
    if emulated:
        if p.returncode != 0 or not gpu or "test-cuda-preprocess ok" not in summary:
            fail(f"the rehearsal did not run through (exit {p.returncode})")
        for run in ("cuda-fp32", "cuda-fp32-raw", "cuda-fp16", "cuda-bf16-raw", "cuda-int8",
                    "cuda-int8-raw"):
            if f"val-{run} vs opencv fp32 here: {PARTS} parts, verdicts differing" not in summary:
                fail(f"the rehearsal did not compare val-{run}")
        if "REHEARSAL" not in summary:
            fail("gpu.sh did not say that the kit is emulated")
    for want in ("== kit: commit", "val-opencv-fp32 vs opencv fp32 here: "
                 f"{PARTS} parts, verdicts differing 0", "backend=opencv precision=fp32 package=real",
                 "logs in " + out):
        if want not in summary:
            fail(f"no '{want}' in gpu.sh's summary")
    if not gpu and ("test-inference-cuda SKIPPED" not in summary
                    or "val-cuda-fp32 failed" not in summary):
        fail("without a GPU the GPU test must show as skipped and cuda's val run as failed")
    # The tables for docs/performance.md: opencv's figures, cuda's runs
    # said to be missing (never blank cells that read as figures).
    with open(os.path.join(out, "tables.md")) as f:
        tables = f.read()
    if tables.startswith("**Rehearsal") != emulated:
        fail(f"tables.md must carry the rehearsal warning exactly when emulated:\n{tables[:200]}")
    if emulated and not re.search(r"\| real-v5 \| cuda int8 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|",
                                  tables):
        fail(f"the rehearsal's tables lack cuda's figures:\n{tables}")
    for want in ("| real-v5 | opencv fp32 | ", "| synthetic-v1 | opencv fp32 | ",
                 f"| opencv-fp32 | opencv fp32 | {PARTS} | 0 | 0 |",
                 "| cuda fp32 | not run" if not gpu else "| real-v5 | cuda fp32 | "):
        if want not in tables:
            fail(f"no '{want}' in tables.md:\n{tables}")
    if not re.search(r"\| real-v5 \| opencv fp32 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| "
                                 r"[0-9]+ \| [0-9.]+ \|", tables):
        fail(f"tables.md lacks opencv's figures:\n{tables}")
    with tarfile.open(os.path.join(out, "logs.tar.gz")) as t:
        names = t.getnames()
    for want in ("./val-opencv-fp32.csv", "./bench-real-v5.txt", "./test-inference-cuda.log"):
        if want not in names:
            fail(f"logs.tar.gz has no {want}: {names}")
print("gpu kit: ok")
