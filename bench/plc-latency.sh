#!/bin/sh
# Median trigger-to-result-valid latency over loopback, as the PLC sees it,
# in each role: pymodbus as the PLC, vigild whole, no link cut.
# usage: bench/plc-latency.sh [BUILD_DIR] [PARTS] [RATE]   (from the source root)
# docs/plc.md quotes its output.
set -e
# vigil-sim writes to stdout; keep only the BENCH lines.
build=${1:-build}
parts=${2:-1000}
rate=${3:-25}
for role in server client; do
	/usr/bin/python3 tests/test_plc_line.py "$build" . "$role" --bench \
		--parts "$parts" --rate "$rate" | grep '^BENCH'
done
