#!/bin/sh
# The whole line against a plain Python script, on real parts (issue 22).
#
#   bench/line-bench.sh PACKAGE BACKEND PRECISION DATA_ROOT
#
# Stages the val parts of DATA_ROOT/line-dev.csv with `vigil-sim stage`
# (REPEAT times over, default 2, so that a run is long enough to time),
# then in one run:
#   1. infer-bench: the model alone at batch 1 (synthetic inputs) on
#      vigild's thread count and on every core, the faster being the
#      ceiling the line is measured against;
#   2. vigild end to end, played by `vigil-sim run --rate`: the highest rate
#      it sustains, found by doubling (or halving) from START_PPS (default
#      16 parts/s) and then halving the interval BISECT times (default 4).
#      A rate is sustained when the summary has no missed deadline (no
#      fail-safe result; reject_deadline_ms = DEADLINE_MS, default 1000 as
#      in the embedded configuration), no result lost, and the parts went
#      through at >= 97 % of the rate asked (vigild falling behind delays
#      the triggers before any deadline passes);
#   3. bench/line-baseline.py, the Python script, over the same staged
#      parts, one at a time;
#   4. vigild once more at the script's own top rate, for the two p99s at
#      the same rate;
# and prints parts/s and p50/p99 latency of each, the ratios, and the
# largest score difference between the script and vigild on the same
# parts (so both judged the same thing), and vigild's CPU time a part by
# thread. RING_MB and MODEL_THREADS set vigild's recent ring and model
# threads (below). Figures are printed, never asserted. BUILD (default build) is
# the build folder; the machine should be otherwise idle. Needs
# python3-opencv, python3-numpy, python3-pymodbus.
set -eu

if [ $# -ne 4 ]; then
	echo "usage: $0 PACKAGE BACKEND PRECISION DATA_ROOT" >&2
	exit 2
fi
pkg=$(realpath "$1")
backend=$2
precision=$3
data=$(realpath "$4")
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${BUILD:-build}")
repeat=${REPEAT:-2}
start_pps=${START_PPS:-16}
bisect=${BISECT:-4}
deadline_ms=${DEADLINE_MS:-1000}
# RING_MB: [database] recent_images_mb (unset: vigild's default, every
# accepted part's files in a 1 GB ring; 0: no ring, the log keeps what the
# embedded configuration's sampling keeps).
ring_line=${RING_MB:+recent_images_mb = $RING_MB}
# MODEL_THREADS: [model] threads (unset: vigild's default, the CPUs less
# one, so that the rest of the line keeps a core).
threads_line=${MODEL_THREADS:+threads = $MODEL_THREADS}
sim="$build/tools/vigil-sim"
vigild="$build/app/vigild"
py=/usr/bin/python3

for f in "$sim" "$vigild" "$build/bench/infer-bench" "$pkg/manifest.ini" "$data/line-dev.csv"; do
	[ -e "$f" ] || { echo "line-bench: $f is missing" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/line-bench.XXXXXX)
vpid=
spid=
cleanup() {
	[ -n "$vpid" ] && kill "$vpid" 2>/dev/null || true
	[ -n "$spid" ] && kill "$spid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# The val rows REPEAT times: the staged folder replays them in that order.
head -n 1 "$data/line-dev.csv" >"$tmp/val.csv"
i=0
while [ "$i" -lt "$repeat" ]; do
	awk -F, 'NR > 1 && $2 == "val"' "$data/line-dev.csv" >>"$tmp/val.csv"
	i=$((i + 1))
done
"$sim" stage --manifest "$tmp/val.csv" --data-root "$data" --out "$tmp/parts" 2>&1 | sed 's/^/  /'
parts=$(($(wc -l <"$tmp/parts/parts.csv") - 1))

echo "line-bench: $pkg, $backend $precision, $parts parts ($repeat x the val parts of $data/line-dev.csv)"
echo "  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. The model alone, on as many threads as vigild gives it ([model]
# threads: MODEL_THREADS, by default one core fewer than the machine has)
# and on all of them; the faster is the ceiling.
ncpu=$(nproc)
vthreads=${MODEL_THREADS:-$((ncpu > 1 ? ncpu - 1 : 1))}
model=0
for t in $(echo "$vthreads $ncpu" | tr ' ' '\n' | sort -nu); do
	m=$("$build/bench/infer-bench" "$pkg" "$backend" 500 1 --batch 1 --precision "$precision" \
		--threads "$t" 2>/dev/null | grep 'best_batch' | sed 's/.*parts_per_s=//')
	echo "  model only (infer-bench, batch 1, $t thread(s)): $m parts/s"
	model=$($py -c "print(max($model, ${m:-0}))")
done

free_port() {
	$py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# One vigild run at $1 parts/s; leaves $tmp/run/summary.json and vigil.db.
run_line() {
	pps=$1
	rm -rf "$tmp/run"
	mkdir -p "$tmp/run"
	port=$(free_port)
	cat >"$tmp/run/vigild.conf" <<EOF
[camera.top]
pipeline = multifilesrc location=$tmp/parts/images/part-%05d.png index=0 caps=image/png ! pngdec ! videoconvert ! appsink name=sink
trigger = sequence
frame_timeout_ms = 5000

[vibration.drive_end]
pipeline = filesrc location=$tmp/parts/vibration.wav ! wavparse ! audioconvert ! audioresample ! appsink name=sink
mode = sequence
rate_hz = 12000
window = 2048
stride = 2048
timeout_ms = 5000
shaft_hz = 29.95
bearing_balls = 9
ball_diameter_mm = 7.94
pitch_diameter_mm = 39.04

[model]
package = $pkg
backend = $backend
precision = $precision
$threads_line

[plc]
host = 127.0.0.1
port = $port
poll_ms = 2
reject_deadline_ms = $deadline_ms

[database]
path = $tmp/run/vigil.db
$ring_line
EOF
	"$sim" run --parts-dir "$tmp/parts" --port "$port" --rate "$($py -c "print($pps * 60)")" \
		--summary "$tmp/run/summary.json" --db "$tmp/run/vigil.db" --ready-timeout-s 120 \
		>"$tmp/run/sim.out" 2>&1 &
	spid=$!
	"$vigild" --config "$tmp/run/vigild.conf" >"$tmp/run/vigild.log" 2>&1 &
	vpid=$!
	wait "$spid" || true
	spid=
	# Where vigild's CPU went, thread by thread (/proc: utime + stime in
	# clock ticks, fields 14 and 15, counted after the name's closing
	# parenthesis since a name may hold spaces), before it stops.
	for t in /proc/"$vpid"/task/*; do
		echo "$(tr ' ' '_' <"$t/comm" 2>/dev/null) $(sed 's/^.*) //' "$t/stat" 2>/dev/null | cut -d' ' -f12,13)"
	done >"$tmp/run/threads.txt"
	kill -TERM "$vpid" 2>/dev/null || true
	wait "$vpid" || true
	vpid=
	[ -s "$tmp/run/summary.json" ] || {
		echo "line-bench: no summary at $pps parts/s; vigild's log:" >&2
		tail -20 "$tmp/run/vigild.log" >&2
		exit 1
	}
}

# "ok PARTS_PER_S P50 P99 MISSED" from the last run's summary; ok is 1
# when the rate asked was sustained.
judge() {
	$py - "$tmp/run/summary.json" "$1" "$parts" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
asked, parts = float(sys.argv[2]), int(sys.argv[3])
pps = s["parts_per_min"] / 60
missed = s["missed_deadlines"]
ok = (missed == 0 and s["plc_results"] == parts
      and s["lost"] == 0 and pps >= 0.97 * asked)
print(int(ok), round(pps, 1), s["latency_ms"]["p50"], s["latency_ms"]["p99"], missed)
EOF
}

# 2. The highest rate vigild sustains: doubling or halving from START_PPS
# until one rate is sustained and its double (or half) is not, then
# halving the interval.
good=0
bad=0
rate=$start_pps
while :; do
	run_line "$rate"
	set -- $(judge "$rate")
	echo "  vigild at $rate parts/s: $2 parts/s, p50 $3 ms, p99 $4 ms, missed deadlines $5 -> $([ "$1" = 1 ] && echo sustained || echo not sustained)"
	if [ "$1" = 1 ]; then
		good=$rate
		best="$2 $3 $4"
		cp "$tmp/run/vigil.db" "$tmp/best.db"
		cp "$tmp/run/threads.txt" "$tmp/best-threads.txt"
		[ "$bad" != 0 ] || [ "$rate" -ge 2000 ] && break
		rate=$((rate * 2))
	else
		bad=$rate
		[ "$good" != 0 ] && break
		if [ "$rate" -le 1 ]; then
			echo "line-bench: vigild does not sustain 1 part/s; see $tmp/run/vigild.log" >&2
			trap - EXIT
			exit 1
		fi
		rate=$((rate / 2))
	fi
done
i=0
while [ "$bad" != 0 ] && [ "$i" -lt "$bisect" ]; do
	rate=$(((good + bad) / 2))
	[ "$rate" = "$good" ] && break
	run_line "$rate"
	set -- $(judge "$rate")
	echo "  vigild at $rate parts/s: $2 parts/s, p50 $3 ms, p99 $4 ms, missed deadlines $5 -> $([ "$1" = 1 ] && echo sustained || echo not sustained)"
	if [ "$1" = 1 ]; then
		good=$rate
		best="$2 $3 $4"
		cp "$tmp/run/vigil.db" "$tmp/best.db"
		cp "$tmp/run/threads.txt" "$tmp/best-threads.txt"
	else
		bad=$rate
	fi
	i=$((i + 1))
done
set -- $best
v_pps=$1 v_p50=$2 v_p99=$3

# 3. The Python script on the same parts.
$py "$src/bench/line-baseline.py" --parts-dir "$tmp/parts" --package "$pkg" \
	--scores "$tmp/baseline.csv" >"$tmp/baseline.json"
set -- $($py -c 'import json, sys; s = json.load(open(sys.argv[1])); l = s["latency_ms"]; print(s["parts_per_s"], l["p50"], l["p99"], " ".join(f"{k}={v}" for k, v in s["stage_ms"].items()))' "$tmp/baseline.json")
b_pps=$1 b_p50=$2 b_p99=$3
shift 3
echo "  python script: $b_pps parts/s, p50 $b_p50 ms, p99 $b_p99 ms (mean ms a part: $*)"

# 4. vigild at the script's own top rate.
run_line "$b_pps"
set -- $(judge "$b_pps")
a_p50=$3 a_p99=$4
echo "  vigild at the script's $b_pps parts/s: p50 $a_p50 ms, p99 $a_p99 ms, missed deadlines $5"

# The script's scores against vigild's on the same parts.
agree=$($py - "$tmp/best.db" "$tmp/baseline.csv" <<'EOF'
import csv, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
v = dict((p, (s, d)) for p, s, d in con.execute("SELECT part_id, score, verdict FROM inspections"))
worst, differ = 0.0, 0
for r in csv.DictReader(open(sys.argv[2])):
    s, d = v[int(r["part"])]
    worst = max(worst, abs(s - float(r["score"])))
    differ += d != r["verdict"]
print(f"{worst:.2g} over {len(v)} parts, {differ} verdicts differ")
EOF
)

# vigild's CPU time a part by thread at its highest sustained rate (the
# start-up, loading the model, is in "vigild", the main thread).
threads=$($py - "$tmp/best-threads.txt" "$parts" "$(getconf CLK_TCK)" <<'EOF'
import collections, sys
cpu = collections.Counter()
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 3:
        cpu[f[0]] += (int(f[1]) + int(f[2])) / int(sys.argv[3])
parts = int(sys.argv[2])
print(", ".join(f"{k} {v * 1000 / parts:.2f}" for k, v in cpu.most_common() if v * 1000 / parts >= 0.01),
      f"(total {sum(cpu.values()) * 1000 / parts:.2f})")
EOF
)

$py - <<EOF
v_pps, b_pps, model = $v_pps, $b_pps, float("${model:-nan}" or "nan")
print("line-bench summary: $pkg $backend $precision, $parts real parts")
print(f"  model only        {model:7.1f} parts/s")
print(f"  vigild            {v_pps:7.1f} parts/s  p50 $v_p50 ms  p99 $v_p99 ms  (highest sustained rate, deadline $deadline_ms ms)")
print(f"  python script     {b_pps:7.1f} parts/s  p50 $b_p50 ms  p99 $b_p99 ms")
print(f"  vigild at {b_pps} parts/s  p50 $a_p50 ms  p99 $a_p99 ms")
print(f"  ratios: vigild / script parts/s {v_pps / b_pps:.2f}x; script p99 / vigild p99 at the script's rate {$b_p99 / $a_p99:.2f}x; vigild / model only {v_pps / model:.0%}")
print("  score agreement, script against vigild: max difference $agree")
print("  vigild's CPU ms a part by thread at its highest rate: $threads")
print(f"  model only: {1000 / model:.2f} ms a part; $ncpu cores give {$ncpu * 1000 / v_pps:.2f} ms of CPU a part at vigild's rate")
EOF
