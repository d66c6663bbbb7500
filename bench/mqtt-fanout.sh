#!/bin/sh
# bench/mqtt-fanout.sh [MESSAGES] [SUBSCRIBERS...]: how many result messages
# a second one mosquitto broker on this machine carries at QoS 1, in and
# out, for the plant's sizing (docs/plant.md, "MQTT fan-out"). Starts its
# own broker on a free loopback port; prints one line per subscriber count.
set -eu
n=${1:-20000}
shift 2>/dev/null || true
counts=${*:-1 10 50}
command -v mosquitto >/dev/null || { echo "mosquitto not found (Debian: mosquitto)"; exit 1; }
dir=$(mktemp -d)
trap 'kill $broker 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 100\n' "$port" > "$dir/m.conf"
mosquitto -c "$dir/m.conf" > "$dir/broker.log" 2>&1 &
broker=$!
for i in $(seq 50); do mosquitto_sub -p "$port" -t x -C 0 -W 1 2>/dev/null && break; sleep 0.1; done 2>/dev/null || true
# A result as vigild publishes it (docs/operations.md, "Live results over
# MQTT"), about the 462 bytes of an average one.
payload='{"site":"plant-a","line":"line-3","station":"station-12","run":1796575539123456,"seq":123456,"part_id":123457,"trigger_counter":57921,"time":"2026-12-06T16:46:36.545348Z","verdict":"reject","model_verdict":"reject","score":0.91,"model_score":0.91,"vision_score":0.95,"signal_score":0.12,"defect_class":"surface","flags":1,"failsafe":false,"latency_ms":38.2,"infer_ms":11.5,"model_version":"real-v5","job":3}'
yes "$payload" | head -n "$n" > "$dir/msgs"
echo "mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}'), $n messages of ${#payload} bytes, QoS 1, one publisher"
for s in $counts; do
	pids=
	for i in $(seq "$s"); do
		mosquitto_sub -p "$port" -q 1 -t "vigil/#" -C "$n" > /dev/null &
		pids="$pids $!"
	done
	sleep 1
	t0=$(date +%s.%N)
	mosquitto_pub -p "$port" -q 1 -t vigil/plant-a/line-3/station-12/result -l < "$dir/msgs"
	for p in $pids; do wait "$p"; done
	t1=$(date +%s.%N)
	/usr/bin/python3 -c "import sys; n,s,d=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]); print(f'{s:3d} subscribers: {n/d:8.0f} msg/s in, {n*s/d:9.0f} msg/s out, {d:6.2f} s')" "$n" "$s" "$(/usr/bin/python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$t1")"
done
