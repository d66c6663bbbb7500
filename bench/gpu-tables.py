#!/usr/bin/env python3
"""docs/performance.md's GPU tables from one bench/gpu.sh run.

    bench/gpu-tables.py LOGS_DIR > tables.md

LOGS_DIR is gpu.sh's log folder (what $OUT/logs.tar.gz unpacks to; gpu.sh
writes $OUT/tables.md itself at the end). Prints markdown: the machine,
the benchmark per package and run (batch 1 p50 / p99 / parts/s and the
best batch), whole parts from raw frames (--raw), the val verdict check
per run, and the GPU preprocessing timing. A run gpu.sh did not finish is
a row that says so, never a gap that reads as a figure. Plain Python: the
GPU machine has no packages of ours.
"""
import os
import re
import sys

PACKAGES = ("real-v5", "synthetic-v1")
RUNS = (("opencv", "fp32"), ("cuda", "fp32"), ("cuda", "fp16"), ("cuda", "bf16"),
        ("cuda", "int8"))
VAL_RUNS = ["opencv-fp32"] + [f"cuda-{p}{r}" for p in ("fp32", "fp16", "bf16", "int8")
                              for r in ("", "-raw")]


def text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def bench_lines(path):
    """infer-bench's lines as dicts of their key=value words."""
    rows = []
    for line in text(path).splitlines():
        kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if "backend" in kv and "parts_per_s" in kv:
            rows.append(kv)
    return rows


def pick(rows, backend, prec, raw, **want):
    for r in rows:
        if (r.get("backend") == backend and r.get("precision") == prec
                and (r.get("raw") == "1") == raw
                and all(r.get(k) == v for k, v in want.items())):
            return r
    return None


def best_of(rows, backend, prec, raw):
    """infer-bench's best_batch line of a run."""
    return next((r for r in rows if r.get("backend") == backend and r.get("precision") == prec
                 and (r.get("raw") == "1") == raw and "best_batch" in r), None)


def model_table(pkg, rows):
    out = [f"{pkg}, model only (inputs prepared before timing):", "",
           "| package | backend | batch 1 p50 ms | batch 1 p99 ms | batch 1 parts/s "
           "| best batch | parts/s at best |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for be, prec in RUNS:
        one = pick(rows, be, prec, False, batch="1")
        best = best_of(rows, be, prec, False)
        if not one:
            out.append(f"| {pkg} | {be} {prec} | not run (see summary.txt) | | | | |")
            continue
        out.append(f"| {pkg} | {be} {prec} | {one['p50_ms']} | {one['p99_ms']} "
                   f"| {one['parts_per_s']} | {best['best_batch'] if best else '?'} "
                   f"| {best['parts_per_s'] if best else '?'} |")
    return out


def raw_table(pkg, rows):
    out = [f"{pkg}, whole parts from raw 640 x 480 frames and windows (--raw; "
           "parts/s):", "",
           "| package | backend | batch 1 p50 ms | batch 1 | batch 8 | batch 16 | best batch |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for be in ("opencv", "cuda"):
        one = pick(rows, be, "fp32", True, batch="1")
        if not one:
            out.append(f"| {pkg} | {be} fp32 | not run (see summary.txt) | | | | |")
            continue
        cells = [(pick(rows, be, "fp32", True, batch=b) or {}).get("parts_per_s", "?")
                 for b in ("1", "8", "16")]
        best = best_of(rows, be, "fp32", True) or {}
        out.append(f"| {pkg} | {be} fp32 | {one['p50_ms']} | " + " | ".join(cells)
                   + f" | {best.get('best_batch', '?')} |")
    return out


CMP = re.compile(r"^(?P<name>.*?): (?P<n>\d+) parts, verdicts differing (?P<d>\d+)"
                 r"(?: \((?P<ids>[^)]*)\))?; max \|diff\| score (?P<score>\S+), "
                 r"vision_score (?P<vision>\S+), signal_score (?P<signal>[^;\s]+)"
                 r"(?P<rest>.*)$")


def val_table(logs):
    out = ["Val parts (real-v5), each run against opencv fp32 on the development machine; "
           "half precision also against the reference executor's rounding of it:", "",
           "| run | against | parts | verdicts differing | max \\|d score\\| "
           "| max \\|d vision\\| | fused AUROC |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in VAL_RUNS:
        for suffix, against in ((".cmp", "opencv fp32"), ("-ref.cmp", "reference")):
            path = os.path.join(logs, f"val-{run}{suffix}")
            if suffix == "-ref.cmp" and not os.path.exists(path):
                continue
            m = CMP.match(text(path).strip().splitlines()[-1] if text(path).strip() else "")
            if not m:
                why = text(os.path.join(logs, f"val-{run}.txt")).strip().splitlines()
                out.append(f"| {run} | {against} | not run | "
                           f"{why[-1][:80] if why else 'see summary.txt'} | | | |")
                continue
            auroc = re.search(r"fused AUROC (\S+ -> \S+)", m["rest"])
            broken = " (NOT FINITE scores)" if "NOT FINITE" in m["rest"] else ""
            differ = m["d"] + (f" ({m['ids']})" if m["ids"] else "") + broken
            out.append(f"| {run} | {against} | {m['n']} | {differ} | {m['score']} "
                       f"| {m['vision']} | {auroc[1] if auroc else ''} |")
    return out


def prep_table(logs):
    m = re.search(r"preprocess per part[^:]*: gpu (\S+) ms, cpu (\S+) ms",
                  text(os.path.join(logs, "test-cuda-preprocess.log")))
    gpu, cpu = (m[1], m[2]) if m else ("not measured (see summary.txt)",) * 2
    return ["GPU preprocessing, per part (tests/test-cuda-preprocess.c):", "",
            "| path | ms per part |", "| --- | --- |",
            f"| GPU (upload, resize, normalise, cuFFT features) | {gpu} |",
            f"| CPU (fusion/, on the GPU machine) | {cpu} |"]


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        print("usage: gpu-tables.py LOGS_DIR (bench/gpu.sh's logs)", file=sys.stderr)
        return 2
    logs = sys.argv[1]
    machine = [l for l in text(os.path.join(logs, "machine.txt")).splitlines() if l.strip()]
    lines = ["Machine: " + ("; ".join(machine) if machine else "unknown"), ""]
    for pkg in PACKAGES:
        rows = bench_lines(os.path.join(logs, f"bench-{pkg}.txt"))
        lines += model_table(pkg, rows) + [""] + raw_table(pkg, rows) + [""]
    lines += val_table(logs) + [""] + prep_table(logs)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
