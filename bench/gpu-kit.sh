#!/bin/sh
# The GPU kit: what bench/gpu.sh needs on a GPU machine that has none of
# Debian's packages and nothing to install them from (the lent device
# machine has CUDA, cuDNN, cuBLAS, cuFFT and a python3; no OpenCV, GLib,
# protobuf-c or meson build of ours). Run here, on the Debian machine:
#
#   [DATA=../shared/data] [MANIFEST=DATA/line-dev.csv] [BUILD=build-kit] \
#       bench/gpu-kit.sh [KIT_DIR]
#
# Builds with the cuda backend (-Dcuda=enabled, warnings fatal) and writes
# KIT_DIR (default .gpukit, git-ignored)/kit.tar.xz holding
#   bin/  test-inference-cuda, test-cuda-preprocess, infer-bench
#   lib/  every shared library they load except the CUDA libraries and the
#         driver (cudnn, cublas, cublasLt, cufft, libcuda: the GPU machine's
#         own), with glibc and its loader, so they run there as here
#         whatever that machine's glibc (gpu.sh starts them through
#         lib/ld-linux-x86-64.so.2)
#   val/  with DATA: the val parts of MANIFEST (default DATA/line-dev.csv;
#         paths in it relative to DATA) as a parts file
#         (vigil-features --raw-out) and vigil-eval's opencv fp32 scores of
#         them with models/real-v5, the reference for the cuda verdicts,
#         and the reference executor's fp16 and bf16 scores (its rounding
#         as the cuda backend stores: what those runs should come near)
#   KIT_INFO  the commit, the build and each file's SHA-256
# The kit is checked here before it is written: every binary starts
# through the carried loader with only lib/ and the CUDA toolkit's
# libraries, and infer-bench judges the val parts on opencv from the kit
# exactly as vigil-eval did.
#
# EMULATE=1 makes a rehearsal kit instead: the same programs built on the
# CUDA emulation (tests/cuda-emu, BUILD default build), so that gpu.sh
# runs through here, without a GPU, before a lent machine's minutes are
# spent on it. Its figures are the CPU's and mean nothing.
set -eu
cd "$(dirname "$0")/.."
EMULATE=${EMULATE:-}
if [ -n "$EMULATE" ]; then BUILD=${BUILD:-build}; else BUILD=${BUILD:-build-kit}; fi
KIT=${1:-.gpukit}
REAL=real-v5
CUDA_LIB=${CUDA_LIB:-/usr/local/cuda/lib64}
DATA=${DATA:-}
for d in ../shared/data shared/data; do
	[ -z "$DATA" ] && [ -f "$d/line-dev.csv" ] && DATA=$d
done
MANIFEST=${MANIFEST:-$DATA/line-dev.csv}

say() { echo "gpu-kit: $*" >&2; }

bins="tests/test-inference-cuda tests/test-cuda-preprocess bench/infer-bench"
[ -z "$EMULATE" ] || bins="tests/test-inference-cuda-emu tests/test-cuda-preprocess-emu tests/infer-bench-emu"
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" -Dcuda=enabled -Dwerror=true >/dev/null
ninja -C "$BUILD" $bins tools/vigil-features tools/vigil-eval >/dev/null
grep -q "VIGIL_HAVE_CUDA" "$BUILD/build.ninja" || { say "$BUILD has no cuda backend"; exit 1; }

stage=$(mktemp -d "${TMPDIR:-/tmp}/vigil-kit.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/val"
for b in $bins; do
	cp "$BUILD/$b" "$stage/bin/$(basename "$b" -emu)"
done

# Every library the binaries load, but the GPU machine's own CUDA ones.
for b in $bins; do
	ldd "$BUILD/$b"
done | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }' | sort -u |
while read -r lib; do
	case $(basename "$lib") in
	libcudnn*|libcublas*|libcufft*|libcuda.so*|libnvidia*) continue ;;
	esac
	cp -L "$lib" "$stage/lib/$(basename "$lib")"
done
[ -f "$stage/lib/ld-linux-x86-64.so.2" ] || { say "no ld-linux-x86-64.so.2 among the libraries"; exit 1; }

# Each binary must start from the kit alone (plus the CUDA libraries): a
# GPU test that finds no device exits 77, one that finds one (or the
# emulation) lists its cases; infer-bench prints its usage.
for b in $bins; do
	b=$(basename "$b" -emu) rc=0
	case $b in test-*) list=-l ;; *) list= ;; esac
	env -i VIGIL_SOURCE_ROOT="$PWD" "$stage/lib/ld-linux-x86-64.so.2" \
		--library-path "$stage/lib:$CUDA_LIB" "$stage/bin/$b" $list \
		> "$stage/start.log" 2>&1 || rc=$?
	case $b:$rc in
	infer-bench:2|test-*:77|test-*:0) ;;
	*) say "$b does not start from the kit (exit $rc):"; cat "$stage/start.log" >&2; exit 1 ;;
	esac
done
rm -f "$stage/start.log"

if [ -n "$DATA" ] && [ -f "$MANIFEST" ]; then
	geom=$(awk -F= '$1 == "input_width" { w = $2 } $1 == "input_height" { h = $2 }
		END { print w, h }' "models/$REAL/manifest.ini")
	set -- $geom
	"$BUILD/tools/vigil-features" --manifest "$MANIFEST" --data-root "$DATA" \
		--split val --width "$1" --height "$2" --out "$stage/val.vgf" \
		--raw-out "$stage/val/val.vgr" 2> "$stage/val.log" ||
		{ say "vigil-features failed:"; cat "$stage/val.log" >&2; exit 1; }
	rm -f "$stage/val.vgf"
	"$BUILD/tools/vigil-eval" --manifest "$MANIFEST" --data-root "$DATA" --split val \
		--model "models/$REAL" --json "$stage/val/val-opencv-fp32.json" \
		--scores "$stage/val/val-opencv-fp32.csv" 2> "$stage/val.log" ||
		{ say "vigil-eval failed:"; cat "$stage/val.log" >&2; exit 1; }
	# What the GPU's half precision should do to the same parts: the
	# reference executor rounding as the cuda backend stores (fp16, bf16),
	# one on each core.
	pids=
	for prec in fp16 bf16; do
		"$BUILD/tools/vigil-eval" --manifest "$MANIFEST" --data-root "$DATA" --split val \
			--model "models/$REAL" --backend reference --precision $prec \
			--json "$stage/val/val-reference-$prec.json" \
			--scores "$stage/val/val-reference-$prec.csv" 2> "$stage/val-$prec.log" &
		pids="$pids $!"
	done
	set -- $pids
	for prec in fp16 bf16; do
		wait "$1" || { say "vigil-eval reference $prec failed:"; cat "$stage/val-$prec.log" >&2; exit 1; }
		rm -f "$stage/val-$prec.log"
		shift
	done
	rm -f "$stage/val.log"
	env -i "$stage/lib/ld-linux-x86-64.so.2" --library-path "$stage/lib:$CUDA_LIB" \
		"$stage/bin/infer-bench" "models/$REAL" opencv 10 --batch 1 \
		--parts "$stage/val/val.vgr" --scores "$stage/kit-check.csv" > /dev/null
	python3 bench/compare-scores.py "$stage/val/val-opencv-fp32.csv" "$stage/kit-check.csv" \
		--name "kit check: $REAL val, infer-bench from the kit vs vigil-eval" \
		--same-verdicts --max-diff 0 >&2
	rm -f "$stage/kit-check.csv"
else
	say "no DATA (line-dev.csv): the kit has no val parts; gpu.sh will skip the val check"
fi

{
	echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
	echo "made $(date -u +%FT%TZ) on $(uname -m), $(ldd --version | head -1)"
	[ -z "$EMULATE" ] || echo "emulated CUDA (tests/cuda-emu): a rehearsal kit, no GPU code in it"
	echo "nvcc $("$CUDA_LIB/../bin/nvcc" --version | tail -1)"
	echo "gpu_arch $(meson introspect --buildoptions "$BUILD" | python3 -c \
		'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "gpu_arch"][0])')"
	if [ -n "$DATA" ] && [ -f "$MANIFEST" ]; then echo "data $MANIFEST"; else echo "data none"; fi
	(cd "$stage" && find bin lib val -type f | sort | xargs sha256sum)
} > "$stage/KIT_INFO"
mkdir -p "$KIT"
tar -C "$stage" -cJf "$KIT/kit.tar.xz.part" bin lib val KIT_INFO
mv "$KIT/kit.tar.xz.part" "$KIT/kit.tar.xz"
cp "$stage/KIT_INFO" "$KIT/KIT_INFO"
say "wrote $KIT/kit.tar.xz ($(du -h "$KIT/kit.tar.xz" | cut -f1)); on the GPU machine: OUT=\$OUT KIT=$KIT/kit.tar.xz bench/gpu.sh"
