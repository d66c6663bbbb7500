#!/usr/bin/python3
"""vigil-sim stage: real parts of a line manifest (images of any size and
format, windows of WAV recordings, float32 and 16-bit) into the folder
vigil-sim generate writes, replayed through vigild whole.

The manifest and its files are made here: a 400x300 gray PNG, a 123x77
colour JPEG, a 61x250 colour PNG, float32 and 16-bit PCM recordings with
windows at arbitrary offsets, masks for some parts, and train rows that
--split val leaves out. Asserts that the staged images hold the pixels the
offline tools decode, the staged windows the source samples, the truth is
kept; that vigild inspects and logs every staged part once, with the
truth in vigil-sim run's results and the scores vigil-eval gives the
original manifest; that bench/line-baseline.py gives vigil-eval's scores
on them too; and that bad manifests are refused naming line and
column, leaving no parts.csv.

usage: test_sim_stage.py BUILD_DIR SOURCE_ROOT
"""
import csv
import json
import os
import sqlite3
import struct
import subprocess
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from linetest import (Vigild, binaries, fail, free_port, line_config, plc_results,  # noqa: E402
                      require_model, sequence_camera, workdir)

build, root = sys.argv[1], sys.argv[2]
sim = binaries(build)[0]
evaluate = os.path.join(build, "tools", "vigil-eval")
RATE, WINDOW = 12000, 2048
HEADER = "part_id,split,image,mask,image_class,vibration,vib_start,vib_len,vib_class,defect"


def write_wav(path, x, rate=RATE, pcm16=False):
    if pcm16:
        data, fmt, bits = (np.clip(x, -1, 32767 / 32768) * 32768).astype("<i2").tobytes(), 1, 16
    else:
        data, fmt, bits = x.astype("<f4").tobytes(), 3, 32
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
                struct.pack("<IHHIIHH", 16, fmt, 1, rate, rate * bits // 8, bits // 8, bits) +
                b"data" + struct.pack("<I", len(data)) + data)


def read_wav_f32(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        fail(f"{path}: not a WAV file")
    fmt, ch, rate = struct.unpack("<HHI", raw[20:28])
    if (fmt, ch, rate) != (3, 1, RATE):
        fail(f"{path}: format {fmt}, {ch} channels at {rate} Hz, want float32 mono {RATE}")
    at = raw.index(b"data")
    (n,) = struct.unpack("<I", raw[at + 4:at + 8])
    return np.frombuffer(raw[at + 8:at + 8 + n], "<f4")


def stage(manifest, out, *extra, want_rc=0):
    p = subprocess.run([sim, "stage", "--manifest", manifest, "--out", out, *extra],
                       capture_output=True, text=True)
    if p.returncode != want_rc:
        fail(f"vigil-sim stage {manifest}: exit {p.returncode}, wanted {want_rc}\n"
             f"{p.stdout}{p.stderr}")
    return p.stderr


def make_source(src):
    """The manifest's files; returns its rows as dicts (val and train)."""
    rng = np.random.default_rng(22)
    os.makedirs(os.path.join(src, "img"), exist_ok=True)
    os.makedirs(os.path.join(src, "vib"), exist_ok=True)
    t = np.arange(40000) / RATE
    hum = 0.05 * np.sin(2 * np.pi * 29.95 * t)
    write_wav(os.path.join(src, "vib", "healthy.wav"),
              hum + 0.04 * rng.standard_normal(t.size))
    # Impacts at an outer-race rate ringing at 3 kHz, in 16-bit PCM.
    ring = np.zeros(t.size)
    for t0 in np.arange(0, t[-1], 1 / 107.4):
        k = t >= t0
        ring[k] += 0.3 * np.exp(-(t[k] - t0) / 0.0008) * np.sin(2 * np.pi * 3000 * (t[k] - t0))
    write_wav(os.path.join(src, "vib", "fault.wav"),
              hum + 0.04 * rng.standard_normal(t.size) + ring, pcm16=True)

    def surface(h, w, colour=False):
        base = rng.normal(128, 12, (h, w)).clip(0, 255)
        img = cv2.GaussianBlur(base, (0, 0), 1.2).astype(np.uint8)
        return cv2.merge([img, (img * 0.8).astype(np.uint8), img // 2]) if colour else img

    def mask(h, w, defect):
        m = np.zeros((h, w), np.uint8)
        if defect:
            m[h // 3:h // 2, w // 4:w // 2] = 255
        return m

    specs = [  # (part, split, file, size, colour, image_class, wav, start, vib_class)
        ("A1", "val", "a1.png", (300, 400), False, "free", "healthy.wav", 0, "normal"),
        ("A2", "train", "a2.png", (80, 90), False, "free", "healthy.wav", 100, "normal"),
        ("B1", "val", "b1.jpg", (77, 123), True, "crack", "healthy.wav", 1234, "normal"),
        ("C1", "val", "c1.png", (250, 61), True, "free", "fault.wav", 777, "outer_race"),
        ("A3", "val", "a3.png", (300, 400), False, "blowhole", "fault.wav", 30001, "outer_race"),
        ("B2", "val", "b2.jpg", (77, 123), True, "free", "healthy.wav", 37952, "normal"),
    ]
    rows = []
    for part, split, name, (h, w), colour, icls, wav, start, vcls in specs:
        defect = int(icls != "free" or vcls != "normal")
        img = surface(h, w, colour)
        if defect and icls != "free":
            img[h // 3:h // 2, w // 4:w // 2] = 20
        cv2.imwrite(os.path.join(src, "img", name), img)
        m = ""
        if part != "B2":  # one part without a mask
            m = f"img/{name.split('.')[0]}-mask.png"
            cv2.imwrite(os.path.join(src, m), mask(h, w, defect))
        rows.append(dict(part_id=part, split=split, image=f"img/{name}", mask=m,
                         image_class=icls, vibration=f"vib/{wav}", vib_start=str(start),
                         vib_len=str(WINDOW), vib_class=vcls, defect=str(defect)))
    return rows


def write_manifest(path, rows, header=HEADER):
    with open(path, "w") as f:
        f.write(header + "\n")
        for r in rows:
            f.write(",".join(r[k] for k in header.split(",")) + "\n")


def source_window(src, r):
    """The row's window as the tools read it: float32 as is, 16-bit PCM
    with full scale 1 g."""
    path = os.path.join(src, r["vibration"])
    with open(path, "rb") as f:
        raw = f.read()
    (bits,) = struct.unpack("<H", raw[34:36])
    at = raw.index(b"data") + 8
    x = (np.frombuffer(raw[at:], "<i2") / 32768.0 if bits == 16 else np.frombuffer(raw[at:], "<f4"))
    s = int(r["vib_start"])
    return x[s:s + WINDOW]


def check_staged(src, out, want):
    with open(os.path.join(out, "parts.csv")) as f:
        head = f.readline().strip()
        f.seek(0)
        got = list(csv.DictReader(f))
    if head != HEADER:
        fail(f"staged header {head!r}")
    if [g["part_id"] for g in got] != [w["part_id"] for w in want]:
        fail(f"staged parts {[g['part_id'] for g in got]}, want {[w['part_id'] for w in want]}")
    wav = read_wav_f32(os.path.join(out, "vibration.wav"))
    if wav.size != WINDOW * len(want):
        fail(f"staged recording of {wav.size} samples, want {WINDOW * len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        for k in ("split", "image_class", "vib_class", "defect"):
            if g[k] != w[k]:
                fail(f"staged part {i} {k} {g[k]!r}, the manifest says {w[k]!r}")
        if (g["image"], g["vibration"]) != (f"images/part-{i:05d}.png", "vibration.wav") or \
                (int(g["vib_start"]), int(g["vib_len"])) != (i * WINDOW, WINDOW):
            fail(f"staged part {i} points at {g}")
        img = cv2.imread(os.path.join(out, g["image"]), cv2.IMREAD_UNCHANGED)
        ref = cv2.imread(os.path.join(src, w["image"]), cv2.IMREAD_GRAYSCALE)
        if img is None or img.dtype != np.uint8 or img.ndim != 2 or not np.array_equal(img, ref):
            fail(f"staged part {i}'s image is not {w['image']} decoded to 8-bit gray")
        if w["mask"]:
            m = cv2.imread(os.path.join(out, g["mask"]), cv2.IMREAD_UNCHANGED)
            if m is None or not np.array_equal(m, cv2.imread(os.path.join(src, w["mask"]),
                                                             cv2.IMREAD_GRAYSCALE)):
                fail(f"staged part {i}'s mask is not {w['mask']}")
        elif g["mask"]:
            fail(f"staged part {i} has mask {g['mask']!r}, its source none")
        win = wav[i * WINDOW:(i + 1) * WINDOW]
        if not np.array_equal(win, source_window(src, w).astype(np.float32)):
            fail(f"staged part {i}'s window is not {w['vibration']} at {w['vib_start']}")
    return got


def replay(tmp, staged, n, manifest):
    """vigil-sim run and vigild over the staged folder; vigild's rows and
    vigil-sim's results, checked against the manifest's truth and
    vigil-eval's scores of the original manifest."""
    port, db = free_port(), os.path.join(tmp, "vigil.db")
    conf = os.path.join(tmp, "vigild.conf")
    with open(conf, "w") as f:
        f.write(line_config(sequence_camera(staged), staged, root, port, db))
    results, summary = os.path.join(tmp, "results.csv"), os.path.join(tmp, "summary.json")
    p = subprocess.Popen([sim, "run", "--parts-dir", staged, "--port", str(port), "--rate", "300",
                          "--results", results, "--summary", summary, "--db", db,
                          "--ready-timeout-s", "60"], stdout=subprocess.DEVNULL)
    v = Vigild(build, conf, os.path.join(tmp, "vigild.log"))
    try:
        sim_rc = p.wait(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
        vigild_rc = v.stop()
    if vigild_rc != 0 or sim_rc != 0:
        fail(f"vigild exited with {vigild_rc}, vigil-sim run with {sim_rc}")
    with open(summary) as f:
        s = json.load(f)
    if not (s["parts"] == s["plc_results"] == s["db_rows"] == n):
        fail(f"summary counts: {s}")
    truth = {i: r for i, r in enumerate(csv.DictReader(open(manifest))) if r["split"] == "val"}
    truth = dict(enumerate(truth.values()))
    for r in plc_results(results, n):
        t = truth[int(r["part_id"])]
        got = (r["part"], r["defect"], r["image_class"], r["vib_class"])
        if got != (t["part_id"], t["defect"], t["image_class"], t["vib_class"]):
            fail(f"part {r['part_id']}: vigil-sim run scored it as {got}, the manifest says {t}")
    con = sqlite3.connect(db)
    rows = con.execute("SELECT part_id, verdict, score FROM inspections ORDER BY part_id").fetchall()
    con.close()
    if [r[0] for r in rows] != list(range(n)):
        fail(f"logged part ids {[r[0] for r in rows]}, want 0..{n - 1} once each")
    ev = os.path.join(tmp, "eval.csv")
    subprocess.run([evaluate, "--manifest", manifest, "--split", "val", "--model",
                    os.path.join(root, "models", "synthetic-v2"), "--json",
                    os.path.join(tmp, "eval.json"), "--scores", ev],
                   check=True, capture_output=True)
    with open(ev) as f:
        ref = list(csv.DictReader(f))
    worst = 0.0
    for (pid, verdict, score), e in zip(rows, ref):
        worst = max(worst, abs(score - float(e["score"])))
        if verdict != e["verdict"] and not (verdict == "marginal" or e["verdict"] == "marginal"):
            fail(f"part {pid} ({e['part_id']}): vigild {verdict}, vigil-eval {e['verdict']}")
    print(f"replayed {n} staged parts; worst score difference to vigil-eval {worst:.2e}")
    if worst > 1e-6:
        fail(f"vigild's scores of staged parts differ from vigil-eval's by {worst}")


def baseline_agrees(tmp, staged, manifest, pkg_name):
    """bench/line-baseline.py (the Python script line-bench.sh times) on
    the staged parts: its fitting, features and modules give vigil-eval's
    scores, so the benchmark compares two lines doing the same job."""
    pkg = os.path.join(root, "models", pkg_name)
    out, ev = os.path.join(tmp, f"baseline-{pkg_name}.csv"), os.path.join(tmp, f"ev-{pkg_name}.csv")
    p = subprocess.run(["/usr/bin/python3", os.path.join(root, "bench", "line-baseline.py"),
                        "--parts-dir", staged, "--package", pkg, "--scores", out, "--warmup", "1"],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        fail(f"line-baseline.py on {pkg_name}: exit {p.returncode}\n{p.stdout}{p.stderr}")
    summary = json.loads(p.stdout)
    subprocess.run([evaluate, "--manifest", manifest, "--split", "val", "--model", pkg,
                    "--json", os.path.join(tmp, "e.json"), "--scores", ev],
                   check=True, capture_output=True)
    with open(out) as f:
        got = list(csv.DictReader(f))
    with open(ev) as f:
        ref = list(csv.DictReader(f))
    if summary["parts"] != len(ref) or [g["part_id"] for g in got] != [r["part_id"] for r in ref]:
        fail(f"line-baseline.py judged {[g['part_id'] for g in got]}, want {len(ref)} parts")
    worst = max(abs(float(g[k]) - float(r[k])) for g, r in zip(got, ref)
                for k in ("score", "vision_score", "signal_score"))
    print(f"line-baseline.py on {pkg_name}: worst score difference to vigil-eval {worst:.2e}")
    if worst > 1e-5:
        fail(f"line-baseline.py's scores on {pkg_name} differ from vigil-eval's by {worst}")


def refused(tmp, src, rows, name, want, header=HEADER, extra=()):
    path = os.path.join(src, f"{name}.csv")
    write_manifest(path, rows, header)
    out = os.path.join(tmp, f"bad-{name}")
    msg = stage(path, out, *extra, want_rc=1)
    for w in want:
        if w not in msg:
            fail(f"{name}: stage said {msg.strip()!r}, wanted {w!r} in it")
    if os.path.exists(os.path.join(out, "parts.csv")):
        fail(f"{name}: a refused manifest left {out}/parts.csv")
    print(f"{name}: {msg.strip()}")


require_model(root)
with workdir("vigil-stage-") as tmp:
    src = os.path.join(tmp, "src")
    rows = make_source(src)
    manifest = os.path.join(src, "line.csv")
    write_manifest(manifest, rows)
    val = [r for r in rows if r["split"] == "val"]

    staged = os.path.join(tmp, "staged")
    stage(manifest, staged, "--split", "val")
    check_staged(src, staged, val)
    few = os.path.join(tmp, "few")
    stage(manifest, few, "--limit", "2", "--data-root", src)
    check_staged(src, few, rows[:2])

    replay(tmp, staged, len(val), manifest)
    for name in ("synthetic-v2", "real-v5"):  # stretched and letterboxed inputs
        baseline_agrees(tmp, staged, manifest, name)

    missing = [dict(r) for r in rows]
    missing[2]["image"] = "img/nothere.jpg"
    refused(tmp, src, missing, "missing", [f"{src}/missing.csv:4: column 'image'", "nothere.jpg"])
    bad = [dict(r) for r in rows]
    bad[3]["vib_start"] = "12x"
    refused(tmp, src, bad, "badcol", ["badcol.csv:5: column 7 'vib_start'", "'12x'"])
    past = [dict(r) for r in rows]
    past[4]["vib_start"] = "39000"
    refused(tmp, src, past, "past", ["past.csv:6: column 'vib_start'", "runs past"])
    other = [dict(r) for r in rows]
    other[1]["vib_len"] = "1024"
    refused(tmp, src, other, "window", ["window.csv:3: column 'vib_len'", "1024", "2048"])
    refused(tmp, src, rows, "rate", ["rate.csv:2: column 'vibration'", "12000 Hz",
                                     "expected 8000 Hz"], extra=("--rate-hz", "8000"))
    refused(tmp, src, rows, "nodefect", ["nodefect.csv:1:", "'defect'"],
            header=HEADER.rsplit(",", 1)[0])
print("sim stage: ok")
