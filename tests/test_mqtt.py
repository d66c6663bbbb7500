#!/usr/bin/python3
"""Live results over MQTT ([mqtt], app/mqtt.h): vigild whole against a
mosquitto broker this test starts on loopback (persistence into its
temporary folder), with mosquitto_sub as a persistent QoS 1 subscriber
(clean session off, fixed id), and vigil-sim as the PLC.

  a) a run: every result (by part id and trigger counter, against the
     SQLite log) received exactly once; the retained status "online" read
     by a new subscriber; "offline" after SIGKILL (the last will) and after
     a clean stop (published by vigild); the figures in /api/status and
     /metrics.
  b) the broker frozen (SIGSTOP) until vigild has a full window of
     results handed over and not acknowledged, then stopped (SIGTERM) and
     started again mid-run: the PLC gets
     every result (vigil-sim checks each, and the rows), and every result
     reaches the subscriber. QoS 1 is at least once: a message the broker
     took but whose PUBACK was lost with the connection is sent again by
     vigild (libmosquitto, persistent session), and one the broker handed
     to the subscriber without its PUBACK is sent again by the broker, so
     duplicates can only be results in flight at the restart: at most
     MQTT_WINDOW from vigild plus the broker's window (20) to the
     subscriber. The test counts them, checks each is byte-identical to
     the first copy, and bounds them by that; consumers deduplicate by
     (station, run, seq).
  c) the broker away for a burst of 3x the [mqtt] queue: the oldest
     results are dropped and counted exactly (published + dropped ==
     results), the newest arrive once the broker is back, the line is
     unaffected; vigild started with the broker away runs and says it is
     disconnected (the unreachable-broker case).
  d) bad input: an unknown [mqtt] key, a qos out of range, a missing
     password_file and a station that is no topic level are refused with
     the file, line and key.
  e) a broker that refuses the login: the line runs, vigild logs the
     broker's reason (never the password) and says it is disconnected.

usage: test_mqtt.py BUILD_DIR SOURCE_ROOT [SCENARIO...]
"""
import getpass
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request

from linetest import Checks, Line, Vigild, fail, free_port, require_model, wait_for, workdir

build, root = sys.argv[1], sys.argv[2]
WINDOW = 20          # MQTT_WINDOW (app/mqtt.h)
BROKER_WINDOW = 20   # mosquitto's max_inflight_messages default, towards the subscriber
SITE, LINE, STATION = "plant1", "l1", "st1"
PREFIX = f"vigil/{SITE}/{LINE}/{STATION}"


def need(binary, package):
    path = shutil.which(binary)
    if not path:
        fail(f"{binary} not found: install the Debian package {package}")
    return path


class Broker:
    """mosquitto on a free loopback port, persistence in folder d (so a
    persistent subscriber's queued messages survive a restart)."""

    def __init__(self, d, port=None):
        self.bin = need("mosquitto", "mosquitto")
        self.port = port or free_port()
        self.conf = os.path.join(d, "mosquitto.conf")
        self.log = os.path.join(d, "mosquitto.log")
        self.p = None
        with open(self.conf, "w") as f:
            # user: as root mosquitto would switch to its own user, who
            # cannot write this folder; as anyone else it is ignored.
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                    f"persistence true\npersistence_location {d}/\n"
                    f"log_dest file {self.log}\nuser {getpass.getuser()}\n"
                    "max_queued_messages 0\nlog_type all\n")

    def start(self):
        self.p = subprocess.Popen([self.bin, "-c", self.conf], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT)

        def up():
            if self.p.poll() is not None:
                fail(f"mosquitto exited with {self.p.returncode}: {self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False
        wait_for("mosquitto listening", up, poll_s=0.05)
        return self

    def stop(self):
        """SIGTERM: mosquitto saves its persistence file and exits."""
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def tail(self):
        return self.text()[-2000:]


class Subscriber:
    """mosquitto_sub with a persistent session (-c, fixed id) at QoS 1 on
    PREFIX/result and a probe topic, every message a line "topic payload"
    in a file; it reconnects by itself when the broker comes back."""

    def __init__(self, d, broker, sub_id):
        self.bin = need("mosquitto_sub", "mosquitto-clients")
        self.broker, self.id = broker, sub_id
        self.out = os.path.join(d, f"{sub_id}.txt")
        self.probe = f"vigil-test/probe/{sub_id}"
        self.f = open(self.out, "a")
        self.p = subprocess.Popen([self.bin, "-h", "127.0.0.1", "-p", str(broker.port), "-c",
                                   "-i", sub_id, "-q", "1", "-v", "-t", f"{PREFIX}/result",
                                   "-t", self.probe], stdout=self.f, stderr=subprocess.STDOUT)
        # Subscribed once its own probe comes back: only then does the
        # broker keep results for it.
        n = [0]

        def probed():
            n[0] += 1
            subprocess.run([need("mosquitto_pub", "mosquitto-clients"), "-h", "127.0.0.1",
                            "-p", str(broker.port), "-q", "1", "-t", self.probe, "-m",
                            str(n[0])], check=True, timeout=30)
            return any(t == self.probe for t, _ in self.lines())
        wait_for("the subscriber's probe", probed, poll_s=0.2)

    def lines(self):
        with open(self.out) as f:
            return [tuple(line.rstrip("\n").split(" ", 1)) for line in f if " " in line]

    def results(self):
        """Payloads received on PREFIX/result, in order, as (text, dict)."""
        return [(p, json.loads(p)) for t, p in self.lines() if t == f"{PREFIX}/result"]

    def close(self):
        if self.p.poll() is None:
            self.p.terminate()
            self.p.wait()
        self.f.close()


def retained_status(broker, timeout_s=10):
    """The retained PREFIX/status as a new subscriber reads it (None: none)."""
    r = subprocess.run([need("mosquitto_sub", "mosquitto-clients"), "-h", "127.0.0.1",
                        "-p", str(broker.port), "-t", f"{PREFIX}/status", "-C", "1",
                        "-W", str(timeout_s)], capture_output=True, text=True,
                       timeout=timeout_s + 30)
    return json.loads(r.stdout) if r.stdout.strip() else None


def mqtt_conf(port, extra=""):
    return (f"\n[mqtt]\nhost = 127.0.0.1\nport = {port}\nsite = {SITE}\nline = {LINE}\n"
            f"station = {STATION}\nstatus_period_s = 1\nretry_min_s = 1\nretry_max_s = 1\n"
            f"{extra}\n[review]\nlisten = 127.0.0.1\nport = 0\n")


def rows(db):
    con = sqlite3.connect(db)
    r = con.execute("SELECT part_id, trigger_counter, verdict FROM inspections ORDER BY id"
                    ).fetchall()
    con.close()
    return r


def api_mqtt(base):
    with urllib.request.urlopen(base + "api/status", timeout=30) as r:
        return json.loads(r.read())["mqtt"]


def metric(base, name):
    with urllib.request.urlopen(base + "metrics", timeout=30) as r:
        m = re.search(r"^%s (\S+)$" % name, r.read().decode(), re.M)
    return float(m.group(1)) if m else None


def by_part(results):
    """{(part_id, trigger_counter): [payload texts]}."""
    got = {}
    for text, r in results:
        got.setdefault((r["part_id"], r["trigger_counter"]), []).append(text)
    return got


def scenario_a(tmp, ck):
    broker = Broker(tmp).start()
    sub = Subscriber(tmp, broker, "sub-a")
    try:
        line = Line(build, root, tmp, 60, 41, "e2e", extra_conf=mqtt_conf(broker.port))
        line.start()
        base = line.review_url()
        if line.wait_sim() != 0:
            fail("vigil-sim: not every part got one result and row")
        logged = rows(line.db)
        want = {(p, t) for p, t, _ in logged}
        wait_for("every result at the subscriber",
                 lambda: set(by_part(sub.results())) >= want)
        got = by_part(sub.results())
        ck.check(set(got) == want, f"results for parts not in the log: {set(got) - want}")
        ck.check(all(len(v) == 1 for v in got.values()),
                 f"duplicates in a run without outage: "
                 f"{[k for k, v in got.items() if len(v) > 1]}")
        verdicts = {(p, t): v for p, t, v in logged}
        for text, r in sub.results():
            k = (r["part_id"], r["trigger_counter"])
            ck.check(r["verdict"] == verdicts.get(k),
                     f"part {k}: verdict {r['verdict']}, the log says {verdicts.get(k)}")
            ck.check(r["station"] == STATION and r["site"] == SITE and r["line"] == LINE,
                     f"station ids: {text}")
            ck.check(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", r["time"]),
                     f"time not ISO 8601: {r['time']}")
            for key in ("run", "seq", "model_verdict", "score", "defect_class", "flags",
                        "latency_ms", "model_version", "job"):
                ck.check(key in r, f"no {key} in {text}")
        sizes = [len(text.encode()) for text, _ in sub.results()]
        print(f"result payload: {sum(sizes) / len(sizes):.0f} bytes on average, "
              f"{max(sizes)} at most")
        seqs = {(r["run"], r["seq"]) for _, r in sub.results()}
        ck.check(len(seqs) == len(want), "(run, seq) does not name each part once")
        q = wait_for("every result acknowledged",
                     lambda: (lambda q: q if q["acknowledged"] == len(logged) else None)(
                         api_mqtt(base)))
        ck.check(q["connected"] and q["dropped"] == 0 and q["published"] == len(logged),
                 f"/api/status mqtt: {q}")
        ck.check(metric(base, "vigil_mqtt_acknowledged_total") == len(logged) and
                 metric(base, "vigil_mqtt_connected") == 1,
                 "/metrics vigil_mqtt_* disagree with the run")
        # Published every status_period_s: the one after the last part.
        st = wait_for("the retained status counting every part",
                      lambda: (lambda st: st if st and st.get("inspected") == len(logged)
                               else None)(retained_status(broker)), poll_s=0.2)
        ck.check(st["state"] == "online" and st["station"] == STATION and "faults" in st and
                 st["model"] is not None, f"retained status: {st}")

        # SIGKILL: the broker publishes the last will.
        line.vigild.kill()
        wait_for("the last will (offline)",
                 lambda: (retained_status(broker, 2) or {}).get("state") == "offline",
                 poll_s=0.2)
        # Again without a PLC: online (with the PLC fault), then a clean
        # stop publishes offline itself.
        v = Vigild(build, line.conf, line.log_path)
        wait_for("online again",
                 lambda: (retained_status(broker, 2) or {}).get("state") == "online",
                 poll_s=0.2)
        if v.stop() != 0:
            fail("vigild did not stop cleanly")
        st = retained_status(broker)
        ck.check(st == {"state": "offline"}, f"after a clean stop the status is {st}")
        line.stop()
    finally:
        sub.close()
        broker.stop()


def scenario_b(tmp, ck):
    bdir = os.path.join(tmp, "broker")
    os.makedirs(bdir)
    broker = Broker(bdir).start()
    sub = Subscriber(tmp, broker, "sub-b")
    try:
        line = Line(build, root, tmp, 200, 42, "e2e", rate=1200,
                    extra_conf=mqtt_conf(broker.port))
        line.start()
        base = line.review_url()
        wait_for("30 results at the subscriber", lambda: len(sub.results()) >= 30,
                 timeout=120)
        # Frozen, the broker acknowledges nothing: vigild's window fills
        # with results handed over and not acknowledged, and more queue.
        broker.p.send_signal(signal.SIGSTOP)
        q = wait_for("a full window in flight and results queued",
                     lambda: (lambda q: q if q["in_flight"] == WINDOW and q["queued"] >= 5
                              else None)(api_mqtt(base)), timeout=120, poll_s=0.05)
        print(f"broker frozen: {q}")
        # Then stopped as a service manager stops it (SIGTERM, taken once
        # it runs again): whatever it did not acknowledge is vigild's to
        # send again.
        broker.p.send_signal(signal.SIGTERM)
        broker.p.send_signal(signal.SIGCONT)
        broker.stop()
        wait_for("vigild seeing the broker gone",
                 lambda: not api_mqtt(base)["connected"], timeout=120, poll_s=0.05)
        broker.start()
        if line.wait_sim() != 0:
            fail("vigil-sim: the PLC missed a result or a row while the broker restarted")
        logged = rows(line.db)
        want = {(p, t) for p, t, _ in logged}
        wait_for("every result at the subscriber after the restart",
                 lambda: set(by_part(sub.results())) >= want, timeout=120)
        got = by_part(sub.results())
        dups = sum(len(v) - 1 for v in got.values())
        # What vigild sent again after the restart: PUBLISH with DUP set.
        resent = len(re.findall(r"Received PUBLISH from vigil-\S+ \(d1, q1", broker.text()))
        print(f"re-sent by vigild (DUP) after the restart: {resent}")
        print(f"broker restart: {len(logged)} results, {dups} duplicates "
              f"(bound {WINDOW + BROKER_WINDOW})")
        ck.check(set(got) == want, f"results for parts not in the log: {set(got) - want}")
        ck.check(all(len(set(v)) == 1 for v in got.values()),
                 "a duplicate differs from its first copy")
        ck.check(resent <= WINDOW, f"{resent} re-sent: more than the window of {WINDOW}")
        ck.check(dups <= WINDOW + BROKER_WINDOW,
                 f"{dups} duplicates: more than could be in flight at the restart")
        q = wait_for("every result acknowledged",
                     lambda: (lambda q: q if q["acknowledged"] == len(logged) else None)(
                         api_mqtt(base)), timeout=60)
        ck.check(q["dropped"] == 0 and q["connected"], f"/api/status mqtt: {q}")
        line.stop()
    finally:
        sub.close()
        broker.stop()


def scenario_c(tmp, ck):
    queue, parts = 20, 60
    broker = Broker(tmp).start()
    sub = Subscriber(tmp, broker, "sub-c")
    # The subscriber's session (and what is queued for it) outlives the
    # broker's absence: the broker is away before vigild starts.
    broker.stop()
    try:
        line = Line(build, root, tmp, parts, 43, "e2e",
                    extra_conf=mqtt_conf(broker.port, f"queue = {queue}\n"))
        line.start()
        base = line.review_url()
        if line.wait_sim() != 0:
            fail("vigil-sim: the line was affected by the absent broker")
        logged = rows(line.db)
        q = wait_for("every result queued or dropped",
                     lambda: (lambda q: q if q["queued"] + q["dropped"] == len(logged)
                              else None)(api_mqtt(base)))
        ck.check(not q["connected"] and q["queued"] == queue and q["published"] == 0 and
                 q["dropped"] == len(logged) - queue, f"broker away: /api/status mqtt {q}")
        ck.check(metric(base, "vigil_mqtt_connected") == 0 and
                 metric(base, "vigil_mqtt_dropped_total") == len(logged) - queue,
                 "/metrics while the broker is away")
        broker.start()
        q = wait_for("the queue published once the broker is back",
                     lambda: (lambda q: q if q["acknowledged"] == queue else None)(
                         api_mqtt(base)))
        ck.check(q["published"] + q["dropped"] == len(logged) and q["queued"] == 0,
                 f"published + dropped != results: {q}")
        newest = {(p, t) for p, t, _ in logged[-queue:]}
        wait_for("the newest results at the subscriber",
                 lambda: set(by_part(sub.results())) >= newest)
        got = by_part(sub.results())
        ck.check(set(got) == newest and all(len(v) == 1 for v in got.values()),
                 f"drop-oldest: got {sorted(got)}, want the newest {sorted(newest)}")
        line.stop()
    finally:
        sub.close()
        broker.stop()


def scenario_d(tmp, ck):
    line = Line(build, root, tmp, 1, 44, "e2e")
    with open(line.conf) as f:
        base = f.read()
    cases = [
        ("qoss = 1\n", "qoss"),
        ("qos = 3\n", "qos"),
        (f"username = u\npassword_file = {tmp}/absent\n", "password_file"),
        ("station = a/b\n", "station"),
    ]
    for extra, key in cases:
        text = base + f"\n[mqtt]\nhost = 127.0.0.1\n{extra}"
        with open(line.conf, "w") as f:
            f.write(text)
        # The key's own line: the last one that sets it (in [mqtt]).
        lineno = max(i for i, t in enumerate(text.splitlines()) if t.startswith(key + " ")) + 1
        r = Vigild.once(build, line.conf)
        where = f"{line.conf}:{lineno}: [mqtt] {key}"
        ck.check(r.returncode != 0 and where in r.stderr,
                 f"{extra.strip()!r}: want an error naming {where!r}, got "
                 f"rc {r.returncode}: {r.stderr.strip()}")


def scenario_e(tmp, ck):
    """A broker that refuses the login: the line runs, the refusal is
    logged with its reason, the password never is, status disconnected."""
    broker = Broker(tmp)
    with open(broker.conf, "a") as f:
        f.write(f"allow_anonymous false\npassword_file {tmp}/passwords\n")
    open(os.path.join(tmp, "passwords"), "w").close()
    broker.start()
    try:
        secret = "not-the-password-41"
        line = Line(build, root, tmp, 20, 45, "e2e", extra_conf=mqtt_conf(
            broker.port, f"username = vigil\npassword = {secret}\n"))
        line.start()
        base = line.review_url()
        if line.wait_sim() != 0:
            fail("vigil-sim: the line was affected by the refused login")
        m = line.vigild.wait_log(r"mqtt: 127\.0\.0\.1:\d+ refused the connection: ([^;]+);")
        ck.check(m and "not authorised" in m.group(1), "no clear refusal in vigild's log")
        q = api_mqtt(base)
        ck.check(not q["connected"] and q["published"] == 0, f"/api/status mqtt: {q}")
        line.stop()
        ck.check(secret not in line.vigild.text(), "the password is in vigild's log")
    finally:
        broker.stop()


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d,
             "e": scenario_e}


def main():
    require_model(root)
    need("mosquitto", "mosquitto")
    need("mosquitto_sub", "mosquitto-clients")
    names = sys.argv[3:] or list(SCENARIOS)
    for name in names:
        print(f"--- scenario {name}")
        ck = Checks()
        with workdir(f"vigil-mqtt-{name}-") as tmp:
            SCENARIOS[name](tmp, ck)
            ck.finish()
    print("PASS")


if __name__ == "__main__":
    main()
