#!/bin/sh
# The GPU check in one go, for a session lent an NVIDIA GPU (docs/performance.md):
# build with the cuda backend, run the inference tests (the GPU parity test
# and the GPU preprocessing test must pass, not skip), then benchmark every
# backend on the shipped packages at batch 1, 2, 4, ... MAX_BATCH.
# Everything lands under $OUT (default build-gpu/out): build.log, tests.log,
# bench-<package>.txt, summary.txt. Exit status: 0 when the build and tests
# passed and every benchmark ran.
#
#   OUT=/some/dir [DATA=../shared/data] bench/gpu.sh [PARTS] [MAX_BATCH]
#
# With DATA (a folder holding line-dev.csv, default ../shared/data or
# shared/data when present) it also judges the val parts with the shipped
# real package on opencv fp32 and on cuda in every precision, and counts the
# verdicts that differ from opencv's (val-<backend>-<precision>.csv/json).
#
# Takes about 5 minutes on an H200 with 16 cores (most of it the build).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
OUT=${OUT:-$BUILD/out}
PARTS=${1:-2000}
MAX_BATCH=${2:-256}
mkdir -p "$OUT"
status=0

say() { echo "== $*" | tee -a "$OUT/summary.txt"; }

: > "$OUT/summary.txt"
say "$(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo no-git)"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  /usr/local/cuda/bin/nvcc --version 2>&1 | tail -1
  nproc; } > "$OUT/machine.txt"
cat "$OUT/machine.txt" >> "$OUT/summary.txt"

for tool in meson ninja pkg-config protoc-c; do
	command -v $tool >/dev/null || { say "missing $tool: run 'make deps' (Makefile DEBIAN_PACKAGES) first"; exit 1; }
done

# Build: with CUDA, warnings fatal, as CI does; time what nvcc adds.
start=$(date +%s)
if ! { [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" -Dcuda=enabled -Dwerror=true; } \
	> "$OUT/build.log" 2>&1 || ! ninja -C "$BUILD" >> "$OUT/build.log" 2>&1; then
	say "build FAILED (tail of $OUT/build.log):"; tail -30 "$OUT/build.log" | tee -a "$OUT/summary.txt"
	exit 1
fi
say "build ok in $(( $(date +%s) - start )) s"
touch inference/infer-cuda-kernels.cu
start=$(date +%s)
ninja -C "$BUILD" inference/infer-cuda-kernels.o >> "$OUT/build.log" 2>&1
say "nvcc alone (the kernels): $(( $(date +%s) - start )) s"

# Tests: the inference suite; the cuda test must run, a skip here is a failure.
meson test -C "$BUILD" --suite inference --print-errorlogs -v > "$OUT/tests.log" 2>&1
rc=$?
cp "$BUILD/meson-logs/testlog.txt" "$OUT/testlog.txt" 2>/dev/null
grep -E "^ *[0-9]+/[0-9]+ " "$OUT/tests.log" | grep -v RUNNING | tee -a "$OUT/summary.txt"
grep -E "worst|verdicts agree|gpu vs|preprocess per part" "$OUT/tests.log" | tee -a "$OUT/summary.txt"
if [ $rc -ne 0 ]; then say "tests FAILED"; status=1; fi
for t in inference-cuda cuda-preprocess; do
	if grep -q "$t .*SKIP" "$OUT/tests.log"; then say "the $t test SKIPPED: no device?"; status=1; fi
done

# Parity on real parts: every val verdict of cuda against opencv's.
REAL=real-v5
DATA=${DATA:-}
for d in ../shared/data shared/data; do
	[ -z "$DATA" ] && [ -f "$d/line-dev.csv" ] && DATA=$d
done
if [ -n "$DATA" ] && [ -f "$DATA/line-dev.csv" ]; then
	for run in opencv:fp32 cuda:fp32 cuda:fp16 cuda:bf16 cuda:int8; do
		be=${run%%:*} prec=${run#*:}
		timeout 300 "$BUILD/tools/vigil-eval" --manifest "$DATA/line-dev.csv" --data-root "$DATA" 			--split val --model "models/$REAL" --backend $be --precision $prec 			--json "$OUT/val-$be-$prec.json" --scores "$OUT/val-$be-$prec.csv" 			2>> "$OUT/val-errors.txt" || { say "val $be $prec failed"; status=1; continue; }
		[ $be = opencv ] && continue
		# verdict is the last column; rows are in manifest order in both
		differ=$(paste -d, "$OUT/val-opencv-fp32.csv" "$OUT/val-$be-$prec.csv" | awk -F, \
			'NR > 1 { n++; if ($8 != $16) d++ } END { printf "%d of %d", d, n }')
		auroc=$(grep -o '"auroc": *[0-9.]*' "$OUT/val-$be-$prec.json" | head -1)
		say "val $REAL $be $prec: verdicts differing from opencv fp32: $differ; fused $auroc"
		case $prec in fp32|fp16) case $differ in 0\ of*) ;; *) status=1 ;; esac ;; esac
	done
else
	say "no DATA (line-dev.csv): val parity not run; set DATA=/path/to/data"
fi

# Benchmark: latency p50/p99 and parts/s at batch 1 and the best batch,
# every precision against the CPU backend on the same machine. int8 uses
# the calibration the packages ship (calibration-int8.ini).
for pkg in $REAL synthetic-v1; do
	for run in opencv:fp32 cuda:fp32 cuda:fp16 cuda:bf16 cuda:int8; do
		be=${run%%:*} prec=${run#*:}
		timeout 180 "$BUILD/bench/infer-bench" "models/$pkg" $be "$PARTS" \
			"$([ $be = opencv ] && echo 16 || echo "$MAX_BATCH")" --precision $prec \
			>> "$OUT/bench-$pkg.txt" 2>> "$OUT/bench-errors.txt" || { say "bench $pkg $be $prec failed"; status=1; }
	done
	# Whole parts from raw frames and windows: preprocessing and features
	# on the GPU for cuda, with fusion/ on the CPU for opencv.
	for be in opencv cuda; do
		timeout 180 "$BUILD/bench/infer-bench" "models/$pkg" $be "$PARTS" --batch 1,8,16 --raw \
			>> "$OUT/bench-$pkg.txt" 2>> "$OUT/bench-errors.txt" || { say "bench $pkg $be --raw failed"; status=1; }
	done
	say "bench $pkg:"
	grep -E "batch=(1|8) |best_batch" "$OUT/bench-$pkg.txt" | tee -a "$OUT/summary.txt"
done
say "done, status $status; logs in $OUT"
exit $status
