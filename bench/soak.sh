#!/bin/sh
# Memory soak: vigild's resident memory (VmRSS) over a long run of the
# simulated line with two cameras, printed every EVERY parts, and how far it
# moved after the warm-up (the first EVERY parts). docs/performance.md
# ("Soak") quotes its output.
# usage: bench/soak.sh [BUILD_DIR] [PARTS] [RATE]   (from the source root)
#   PARTS 100000; RATE 6000 parts/min; VIGIL_SOAK_EVERY (10000) sets how
#   often RSS is printed, VIGIL_SOAK_DIR keeps the run's files there.
#   A quick check: VIGIL_SOAK_EVERY=1000 bench/soak.sh build 5000
# The exit status is vigild's; parts the line lost (triggers missed on a
# loaded machine) are printed with vigil-sim's summary, not failed on.
#
# vigil-sim generate makes 200 parts; the run cycles through them (the
# cameras' multifilesrc loops over the images, the vibration source over
# the raw samples, vigil-sim's parts list repeats), so 100,000 parts need
# no 100,000 images. Both cameras read the same images in sequence mode:
# what is soaked is vigild's per-part path (two frames, one model run per
# camera, the PLC handshake, a row, the files of rejects and of one
# accepted part in 10, the review server's sampler), not the verdicts.
set -eu
build=${1:-build}
parts=${2:-100000}
rate=${3:-6000}
every=${VIGIL_SOAK_EVERY:-10000}
root=$(pwd)
bin=$(cd "$build" && pwd)
base=200

if [ -n "${VIGIL_SOAK_DIR:-}" ]; then
	tmp=$VIGIL_SOAK_DIR
	mkdir -p "$tmp"
	rm -rf "$tmp/sim" "$tmp/run" "$tmp/vigil.db" "$tmp/vigil.db-wal" "$tmp/vigil.db-shm" \
		"$tmp/vigil.db.media"
else
	tmp=$(mktemp -d /tmp/vigil-soak-XXXXXX)
fi
tmp=$(cd "$tmp" && pwd)
sim=
vigild=
cleanup() {
	[ -n "$sim" ] && kill "$sim" 2>/dev/null && wait "$sim" 2>/dev/null
	[ -n "$vigild" ] && kill "$vigild" 2>/dev/null && wait "$vigild" 2>/dev/null
	[ -z "${VIGIL_SOAK_DIR:-}" ] && rm -rf "$tmp"
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! "$bin/tools/vigil-sim" generate --out "$tmp/sim" --parts "$base" --seed 20261206 \
	--split soak > "$tmp/generate.log" 2>&1; then
	cat "$tmp/generate.log" >&2
	exit 1
fi
# The recording's samples without the 44-byte WAV header (core/wav.h:
# float32, mono, 12 kHz), so that a looping source can replay them.
tail -c +45 "$tmp/sim/vibration.wav" > "$tmp/sim/vibration.f32"
mkdir "$tmp/run"
awk -v n="$parts" 'NR == 1 { print; next } { row[m++] = $0 }
	END { for (i = 0; i < n; i++) print row[i % m] }' "$tmp/sim/parts.csv" > "$tmp/run/parts.csv"
plc_port=$(/usr/bin/python3 -c 'import sys; sys.path.insert(0, "tests")
from linetest import free_port; print(free_port())')

camera() {
	cat <<EOF
[camera.$1]
pipeline = multifilesrc location=$tmp/sim/images/part-%05d.png index=0 loop=true caps=image/png ! pngdec ! videoconvert ! appsink name=sink
trigger = sequence
frame_timeout_ms = 5000

EOF
}
{
	camera top
	camera side
	cat <<EOF
[vibration.drive_end]
pipeline = multifilesrc location=$tmp/sim/vibration.f32 ! rawaudioparse use-sink-caps=false format=pcm pcm-format=f32le sample-rate=12000 num-channels=1 ! audioconvert ! audioresample ! appsink name=sink
mode = sequence
rate_hz = 12000
window = 2048
stride = 2048
timeout_ms = 5000
iso_class = I
shaft_hz = 29.95
bearing_balls = 9
ball_diameter_mm = 7.94
pitch_diameter_mm = 39.04

[model]
package = $root/models/synthetic-v2
backend = opencv

[plc]
host = 127.0.0.1
port = $plc_port
poll_ms = 2
reject_deadline_ms = 2000

[database]
path = $tmp/vigil.db
keep_accepted_every = 10

[review]
listen = 127.0.0.1
port = 0
token = vigil-soak
EOF
} > "$tmp/vigild.conf"

"$bin/tools/vigil-sim" run --parts-dir "$tmp/run" --port "$plc_port" --rate "$rate" \
	--db "$tmp/vigil.db" > "$tmp/sim.out" 2> "$tmp/sim.log" &
sim=$!
"$bin/app/vigild" --config "$tmp/vigild.conf" > "$tmp/vigild.log" 2>&1 &
vigild=$!

rss() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$vigild/status"
}

echo "soak: $parts parts at $rate parts/min, two cameras, models/synthetic-v2 (opencv);" \
	"files in $tmp"
printf '%8s %10s %12s\n' parts "RSS kB" "since first"
next=$every
first=
min=
max=
# vigil-sim says every 100 parts how many it triggered: sample there.
while kill -0 "$sim" 2>/dev/null && [ "$next" -le "$parts" ]; do
	n=$(sed -n 's/^vigil-sim: \([0-9]*\) parts triggered.*/\1/p' "$tmp/sim.log" | tail -n 1)
	if [ -n "$n" ] && [ "$n" -ge "$next" ] && kill -0 "$vigild" 2>/dev/null; then
		r=$(rss) || break
		first=${first:-$r}
		if [ -z "$min" ] || [ "$r" -lt "$min" ]; then min=$r; fi
		if [ -z "$max" ] || [ "$r" -gt "$max" ]; then max=$r; fi
		printf '%8d %10d %+12d\n' "$n" "$r" "$((r - first))"
		next=$((next + every))
	fi
	sleep 0.2
done
sim_status=0
wait "$sim" || sim_status=$?
sim=
peak=$(awk '/^VmHWM:/ { print $2 }' "/proc/$vigild/status" 2>/dev/null || echo "?")
status=0
kill -TERM "$vigild" 2>/dev/null || true
wait "$vigild" || status=$?
vigild=
if [ -n "$first" ]; then
	echo "after warm-up (from $every parts on): RSS within $((max - min)) kB" \
		"(min $min, max $max); peak $peak kB"
fi
grep -E '^  (rate|PLC results|fail-safe|latency|database) ' "$tmp/sim.out" || true
[ "$sim_status" -eq 0 ] || echo "vigil-sim: exit $sim_status (see $tmp/sim.log)"
tail -n 1 "$tmp/vigild.log"
exit $status
