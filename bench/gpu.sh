#!/bin/sh
# The GPU check in one go, for a session lent an NVIDIA GPU
# (docs/performance.md): the GPU parity test and the GPU preprocessing test
# must pass, not skip; the val parts are judged on cuda in every precision
# against opencv's verdicts (fp16 and bf16 also against the reference
# executor's CPU rounding of them); then every backend is benchmarked on the
# shipped packages at batch 1, 2, 4, ... MAX_BATCH.
#
#   OUT=/some/dir [KIT=.gpukit/kit.tar.xz] bench/gpu.sh [PARTS] [MAX_BATCH]
#
# The programs come from a kit (bench/gpu-kit.sh, made on a Debian machine
# with the project's packages): the lent device machine has CUDA, cuDNN,
# cuBLAS and cuFFT but none of Debian's packages, and nothing to install
# them from. KIT defaults to .gpukit/kit.tar.xz when it exists; without
# one, gpu.sh makes it first with bench/gpu-kit.sh (BUILD, DATA as there),
# which needs the Debian packages ('make deps') on this machine.
#
# What lands in $OUT: summary.txt (every figure and verdict count, written
# as it goes), logs.tar.gz (each step's log, the scores, the bench
# output; repacked after every step, so a run cut short still returns
# what it did) and tables.md (docs/performance.md's GPU tables from those
# logs, bench/gpu-tables.py). Exit status 0 when both GPU tests passed, fp32 and fp16
# gave opencv's verdict on every val part, and every benchmark ran.
#
# About 4 minutes on an H200 with 16 cores (a guess: not yet run there),
# memcheck last, only while the run is younger than BUDGET_S (300 s); every
# step is cut to end by DEADLINE_S (500 s), and one with under 15 s left
# is skipped, said and counted as a failure.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/out}
KIT=${KIT:-}
PARTS=${1:-2000}
MAX_BATCH=${2:-256}
REAL=real-v5
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vigil-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
T0=$(date +%s)
# Every step ends by DEADLINE_S seconds into the run (the device tool
# allows 600 s a command); memcheck only starts before BUDGET_S.
DEADLINE_S=${DEADLINE_S:-500}
BUDGET_S=${BUDGET_S:-300}
LOGS=$WORK/logs
mkdir -p "$LOGS"
status=0

say() { echo "== $*" | tee -a "$OUT/summary.txt"; }
# The logs so far, replacing the last pack whole (never a half archive).
pack() {
	tar -C "$LOGS" -czf "$OUT/logs.tar.gz.part" . 2>/dev/null &&
		mv "$OUT/logs.tar.gz.part" "$OUT/logs.tar.gz"
}
trap 'say "stopped by a signal"; pack; exit 1' TERM INT
# The seconds a step may run: $1 times STEP_SCALE, or what is left before
# DEADLINE_S; fails with under 15 s left (the caller skips the step and
# says so). STEP_SCALE (default 1) is for the rehearsal on the CUDA
# emulation, whose steps take what the CPU gives them: the limits are the
# device tool's, not the rehearsal's.
STEP_SCALE=${STEP_SCALE:-1}
limit() {
	left=$(( DEADLINE_S - ($(date +%s) - T0) ))
	[ $left -ge 15 ] || return 1
	want=$(( $1 * STEP_SCALE ))
	echo $(( left < want ? left : want ))
}

# Why a step failed (STATUS LIMIT [LOG]): its exit status, a cut at its
# limit said as such, and the last line of its log when given.
why() {
	case $1 in
	124|137) echo "cut at its limit of $2 s (exit $1)" ;;
	*) echo "exit $1${3:+: $(tail -1 "$3" 2>/dev/null)}" ;;
	esac
}

: > "$OUT/summary.txt"
say "$(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo no-git)"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  { nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version 2>&1; } | tail -1
  echo "cores $(nproc)"; ldd --version 2>&1 | head -1; } > "$LOGS/machine.txt"
cat "$LOGS/machine.txt" >> "$OUT/summary.txt"

# The kit: given, beside the checkout, or made here.
if [ -z "$KIT" ] && [ -f .gpukit/kit.tar.xz ]; then
	KIT=.gpukit/kit.tar.xz
fi
if [ -z "$KIT" ]; then
	if ! sh bench/gpu-kit.sh "$WORK/made" > "$LOGS/gpu-kit.log" 2>&1; then
		say "no kit, and bench/gpu-kit.sh could not make one (tail of gpu-kit.log):"
		tail -20 "$LOGS/gpu-kit.log" | tee -a "$OUT/summary.txt"
		pack
		exit 1
	fi
	KIT=$WORK/made/kit.tar.xz
fi
K=$WORK/kit
mkdir -p "$K"
tar -C "$K" -xJf "$KIT" 2>/dev/null ||
	python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$KIT" "$K" ||
	{ say "cannot unpack $KIT"; exit 1; }
say "kit: $(grep -E '^(commit|made|gpu_arch|data) ' "$K/KIT_INFO" | tr '\n' ';')"
# A rehearsal kit (EMULATE=1 bench/gpu-kit.sh) runs on the CPU through
# tests/cuda-emu: the whole check runs through, its figures are the CPU's.
EMULATED=
if grep -q "^emulated" "$K/KIT_INFO"; then
	EMULATED=1
	say "REHEARSAL: an emulated kit (tests/cuda-emu); no GPU runs and no figure here is a GPU's"
fi

# The GPU machine's own CUDA libraries and driver, wherever its image has
# them: ldconfig's, then LD_LIBRARY_PATH's, then the driver's folder, then
# a search that skips CUDA's compat/ driver (it fails against the machine's
# driver, error 803) and the link-time stubs/. Every candidate is logged.
find_lib() {
	{ ldconfig -p 2>/dev/null | awk -v l="$1" '$1 == l && /x86-64/ { print $NF }'
	  echo "${LD_LIBRARY_PATH:-}" | tr ':' '\n' | while read -r d; do
		[ -n "$d" ] && [ -e "$d/$1" ] && echo "$d/$1"; done
	  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
		[ -e "$d/$1" ] && echo "$d/$1"; done
	  find /usr/local/cuda/ /usr/local/cuda-*/ /usr/lib/x86_64-linux-gnu/ /usr/lib64/ \
		/usr/local/lib/ /opt/ -name "$1" ! -path '*/compat/*' ! -path '*/stubs/*' 2>/dev/null
	} > "$LOGS/candidates-$1.txt"
	p=$(head -1 "$LOGS/candidates-$1.txt")
	[ -n "$p" ] && echo "$p"
}
# NVRTC is optional: cuDNN's runtime-compiled engines load it when present.
dirs=
libs="libcuda.so.1 libcudnn.so.9 libcublas.so.13 libcublasLt.so.13 libcufft.so.12 libnvrtc.so.13"
[ -z "$EMULATED" ] || libs=
for lib in $libs; do
	if ! p=$(find_lib $lib); then
		say "missing $lib on this machine"
		[ $lib = libnvrtc.so.13 ] || status=1
		continue
	fi
	say "uses $(readlink -f "$p")"
	case ":$dirs:" in *":$(dirname "$p"):"*) ;; *) dirs=$dirs:$(dirname "$p") ;; esac
done
LIBS=$K/lib$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
RUN="$K/lib/ld-linux-x86-64.so.2 --library-path $LIBS"
$RUN --list "$K/bin/test-inference-cuda" > "$LOGS/libraries.txt" 2>&1
if grep -q "not found" "$LOGS/libraries.txt"; then
	say "libraries not found:"; grep "not found" "$LOGS/libraries.txt" | tee -a "$OUT/summary.txt"
	pack
	exit 1
fi

# Tests: both GPU tests must run; a skip here is a failure.
for t in test-inference-cuda test-cuda-preprocess; do
	start=$(date +%s) rc=0
	lim=$(limit 240) || { say "$t not run: out of time"; status=1; continue; }
	VIGIL_SOURCE_ROOT=$PWD timeout -k 5 $lim $RUN "$K/bin/$t" --verbose > "$LOGS/$t.log" 2>&1 || rc=$?
	case $rc in
	0) say "$t ok in $(( $(date +%s) - start )) s" ;;
	77) say "$t SKIPPED: $(tail -1 "$LOGS/$t.log")"; status=1 ;;
	*) say "$t FAILED ($(why $rc $lim)), tail of its log:"
	   tail -25 "$LOGS/$t.log" | tee -a "$OUT/summary.txt"; status=1 ;;
	esac
	grep -E "worst|verdicts agree|gpu vs|preprocess per part" "$LOGS/$t.log" | tee -a "$OUT/summary.txt"
	# A failed parity test again without CUDA graphs: tells a capture
	# problem from an arithmetic one in the same run.
	if [ $t = test-inference-cuda ] && [ $rc != 0 ] && [ $rc != 77 ] && lim=$(limit 120); then
		rc=0
		VIGIL_CUDA_NO_GRAPH=1 VIGIL_SOURCE_ROOT=$PWD timeout -k 5 $lim $RUN "$K/bin/$t" --verbose \
			> "$LOGS/$t-no-graph.log" 2>&1 || rc=$?
		say "$t without CUDA graphs (VIGIL_CUDA_NO_GRAPH=1): exit $rc"
		[ $rc = 0 ] || tail -10 "$LOGS/$t-no-graph.log" | tee -a "$OUT/summary.txt"
	fi
	pack
done

# Parity on real parts: each val verdict against opencv's (vigil-eval's,
# made with the kit), the parts prepared on the CPU and raw (preprocessing
# and features on the GPU, as vigild runs a GPU backend).
if [ -f "$K/val/val.vgr" ]; then
	for run in opencv:fp32: cuda:fp32: cuda:fp32:raw cuda:fp16: cuda:fp16:raw \
		cuda:bf16: cuda:bf16:raw cuda:int8: cuda:int8:raw; do
		be=${run%%:*} rest=${run#*:} prec=${rest%%:*} raw=${rest#*:}
		name=val-$be-$prec${raw:+-raw}
		lim=$(limit 120) || { say "$name not run: out of time"; status=1; continue; }
		rc=0
		timeout -k 5 $lim $RUN "$K/bin/infer-bench" "models/$REAL" $be 10 --batch 1 \
			--precision $prec ${raw:+--raw} --parts "$K/val/val.vgr" \
			--scores "$LOGS/$name.csv" > "$LOGS/$name.txt" 2>&1 || rc=$?
		if [ $rc != 0 ]; then
			say "$name failed: $(why $rc $lim "$LOGS/$name.txt")"; status=1; continue
		fi
		# fp32 and fp16 keep every verdict; fp32 from the same inputs also
		# every score within the parity test's bound. A non-finite score
		# fails any run (compare-scores.py).
		case $prec:$raw in
		fp32:) strict="--same-verdicts --max-diff 1e-3" ;;
		fp32:raw|fp16:*) strict=--same-verdicts ;;
		*) strict= ;;
		esac
		python3 bench/compare-scores.py "$K/val/val-opencv-fp32.csv" "$LOGS/$name.csv" \
			--name "$REAL $name vs opencv fp32 here" $strict > "$LOGS/$name.cmp" 2>&1 || status=1
		tee -a "$OUT/summary.txt" < "$LOGS/$name.cmp"
		# Half precision also against the CPU's prediction of it (the
		# reference executor's rounding, made with the kit): far more
		# apart than from opencv means arithmetic the rounding misses.
		if [ -f "$K/val/val-reference-$prec.csv" ]; then
			python3 bench/compare-scores.py "$K/val/val-reference-$prec.csv" "$LOGS/$name.csv" \
				--name "$REAL $name vs reference $prec here" > "$LOGS/$name-ref.cmp" 2>&1 || true
			tee -a "$OUT/summary.txt" < "$LOGS/$name-ref.cmp"
		fi
		pack
	done
else
	say "the kit has no val parts (made without DATA): val parity not run"
	status=1
fi
pack

# Benchmark: latency p50/p99 and parts/s at batch 1 and the best batch,
# every precision against the CPU backend on the same machine. int8 uses
# the calibration the packages ship (calibration-int8.ini).
cpu_parts=$(( PARTS < 500 ? PARTS : 500 ))
for pkg in $REAL synthetic-v1; do
	for run in opencv:fp32 cuda:fp32 cuda:fp16 cuda:bf16 cuda:int8; do
		be=${run%%:*} prec=${run#*:}
		if [ $be = opencv ]; then n=$cpu_parts max=16; else n=$PARTS max=$MAX_BATCH; fi
		lim=$(limit 120) || { say "bench $pkg $be $prec not run: out of time"; status=1; continue; }
		rc=0
		timeout -k 5 $lim $RUN "$K/bin/infer-bench" "models/$pkg" $be $n $max --precision $prec \
			>> "$LOGS/bench-$pkg.txt" 2>> "$LOGS/bench-errors.txt" || rc=$?
		[ $rc = 0 ] || { say "bench $pkg $be $prec failed: $(why $rc $lim "$LOGS/bench-errors.txt")"; status=1; }
		pack
	done
	# Whole parts from raw frames and windows: preprocessing and features
	# on the GPU for cuda, with fusion/ on the CPU for opencv; batches 1, 8
	# and 16, none above MAX_BATCH (a rehearsal's small one keeps the
	# emulated runs short).
	raw_batches=1
	for b in 8 16; do [ $b -le $MAX_BATCH ] && raw_batches=$raw_batches,$b; done
	[ $MAX_BATCH -gt 1 ] && [ $MAX_BATCH -lt 8 ] && raw_batches=1,$MAX_BATCH
	for be in opencv cuda; do
		if [ $be = opencv ]; then n=$cpu_parts; else n=$PARTS; fi
		lim=$(limit 120) || { say "bench $pkg $be --raw not run: out of time"; status=1; continue; }
		rc=0
		timeout -k 5 $lim $RUN "$K/bin/infer-bench" "models/$pkg" $be $n --batch $raw_batches --raw \
			>> "$LOGS/bench-$pkg.txt" 2>> "$LOGS/bench-errors.txt" || rc=$?
		[ $rc = 0 ] || { say "bench $pkg $be --raw failed: $(why $rc $lim "$LOGS/bench-errors.txt")"; status=1; }
	done
	say "bench $pkg:"
	grep -E "batch=(1|8) |best_batch" "$LOGS/bench-$pkg.txt" | tee -a "$OUT/summary.txt"
	pack
done
# Last, with what time is left: compute-sanitizer's memcheck (it worked on
# this workplace's Firecracker GPU machines) over whole raw parts, a padded
# batch (3 of 4) among them, in fp32 and int8. Errors fail the run.
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$san" ] && [ -f "$K/val/val.vgr" ]; then
	for prec in fp32 int8; do
		if [ $(( $(date +%s) - T0 )) -ge $BUDGET_S ] || ! lim=$(limit 120); then
			say "memcheck $prec skipped: $(( $(date +%s) - T0 )) s into the run"; continue
		fi
		rc=0
		timeout -k 5 $lim "$san" --tool memcheck --error-exitcode 9 $RUN "$K/bin/infer-bench" \
			"models/$REAL" cuda 10 --batch 1,3 --raw --precision $prec \
			--parts "$K/val/val.vgr" > "$LOGS/memcheck-$prec.txt" 2>&1 || rc=$?
		# gVisor machines refuse the sanitizer ("Device not supported"):
		# that says nothing of our code.
		if grep -q "Device not supported" "$LOGS/memcheck-$prec.txt"; then
			say "memcheck unavailable on this machine: $(grep -m1 'Device not supported' "$LOGS/memcheck-$prec.txt")"
			break
		fi
		say "memcheck $REAL cuda $prec raw: exit $rc ($(grep -c '^========= Invalid' "$LOGS/memcheck-$prec.txt") invalid accesses)"
		case $rc in 0) ;; 124) say "memcheck ran out of time" ;; *) tail -8 "$LOGS/memcheck-$prec.txt" | tee -a "$OUT/summary.txt"; status=1 ;; esac
		pack
	done
else
	say "no compute-sanitizer here: memcheck not run"
fi
# A module whose capture failed ran eagerly: its figures are not a graph's.
grep -h "no CUDA graph" "$LOGS"/*.txt "$LOGS"/*.log 2>/dev/null | sort -u | tee -a "$OUT/summary.txt"
# docs/performance.md's tables, filled from this run's logs.
{ [ -z "$EMULATED" ] || printf '**Rehearsal on the CUDA emulation (tests/cuda-emu): no figure here is a GPU'"'"'s.**\n\n'
  python3 bench/gpu-tables.py "$LOGS"; } > "$OUT/tables.md" 2> "$LOGS/gpu-tables.err" ||
	{ say "gpu-tables.py failed: $(tail -1 "$LOGS/gpu-tables.err")"; status=1; }
say "done in $(( $(date +%s) - T0 )) s, status $status; logs in $OUT/logs.tar.gz, tables in $OUT/tables.md"
pack
exit $status
