#!/bin/sh
# make demo: a simulated production line inspected by the real vigild.
# vigil-sim generates synthetic parts (images, vibration, ground truth), then
# plays the PLC on Modbus TCP 127.0.0.1:1502 while vigild, on its embedded
# default configuration, inspects every part from a GStreamer camera
# pipeline and a GStreamer vibration pipeline, runs the model, answers the
# PLC and logs to SQLite. The summary goes to $build/demo/summary.json.
set -eu
build=${1:-build}
parts=${VIGIL_DEMO_PARTS:-600}
rate=${VIGIL_DEMO_RATE:-1200}
demo="$build/demo"
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)
bin=$(cd "$build" && pwd)

if [ ! -f "$demo/sim/parts.csv" ] || [ "$(($(wc -l < "$demo/sim/parts.csv") - 1))" -ne "$parts" ]; then
	rm -rf "$demo/sim"
	"$bin/tools/vigil-sim" generate --out "$demo/sim" --parts "$parts" --seed 20261129 --split demo
fi
rm -rf "$demo/vigil.db" "$demo/vigil.db-wal" "$demo/vigil.db-shm" "$demo/vigil.db.media"

"$bin/tools/vigil-sim" run --parts-dir "$demo/sim" --port 1502 --rate "$rate" \
	--results "$demo/results.csv" --summary "$demo/summary.json" --db "$demo/vigil.db" &
sim=$!
sleep 0.5
(cd "$demo" && exec "$bin/app/vigild" > vigild.log 2>&1) &
vigild=$!

status=0
wait "$sim" || status=$?
kill -TERM "$vigild" 2>/dev/null || true
wait "$vigild" || true
tail -n 1 "$demo/vigild.log"
echo
echo "summary:  $demo/summary.json"
echo "results:  $demo/results.csv (one row per part, with ground truth)"
echo "database: $demo/vigil.db (files in $demo/vigil.db.media)"
echo "vigild log: $demo/vigild.log"
exit $status
