#!/bin/sh
# The log writer's sustained rate, queue depth and write lag at 10x the
# demo's part rate (1200/min), then flat out, with files kept as vigild
# keeps them. docs/operations.md quotes its output.
# usage: bench/db-writer.sh [BUILD_DIR] [SECONDS]   (from the source root)
set -e
build=${1:-build}
secs=${2:-20}
"$build/bench/vigil-db-bench" --rate 12000 --seconds "$secs"
"$build/bench/vigil-db-bench" --rate 12000 --seconds "$secs" --keep-accepted 1
"$build/bench/vigil-db-bench" --rate 0 --seconds "$secs"
