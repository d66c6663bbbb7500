#!/bin/sh
# What /api/trends costs on a log of a million rows over a year (hour and
# day buckets over the year, hour buckets over the last week).
# docs/operations.md quotes its output.
# usage: bench/trends.sh [BUILD_DIR] [ROWS]   (from the source root)
set -e
build=${1:-build}
rows=${2:-1000000}
"$build/bench/vigil-trends-bench" --rows "$rows" --days 365
