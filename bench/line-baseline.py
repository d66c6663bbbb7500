#!/usr/bin/python3
"""The plain Python script a line would otherwise run, for
bench/line-bench.sh to time against vigild on the same parts (issue 22).

One part at a time, on one thread of Python: cv2.imread of the part's
image, the same fitting and normalisation as fusion/image.c (letterbox or
stretch, OpenCV's resize), the vibration features of fusion/features.c
(vigil-sigfeat-v1, the layout documented at its top) in numpy, the
package's three ONNX modules in cv2.dnn (vision, signal, decision: the
decision module takes the vision output then the signal output, as
inference/inference.c feeds it), a pymodbus write of the result to a
Modbus TCP server on loopback (a pymodbus server in a child process, as a
PLC is another machine), then an SQLite insert and commit in WAL mode with
synchronous=NORMAL, as vigild's log does. Nothing overlaps.

The parts are a folder of `vigil-sim stage` or `vigil-sim generate`
(parts.csv, images/, vibration.wav). Prints one line of JSON: parts,
parts/s over the whole loop, latency (p50, p99, max in ms, from the start
of a part to its Modbus write returning: what the PLC waits for) and the
mean milliseconds of each stage; --scores writes every part's scores so
that line-bench.sh can check them against vigild's.

usage: line-baseline.py --parts-dir DIR --package PKG [--count N]
                        [--scores CSV] [--db FILE] [--warmup N]
"""
import argparse
import configparser
import csv
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np


def serve_modbus():
    """Child mode: a pymodbus TCP server on a free loopback port; prints
    PORT <n> and serves until stdin closes."""
    import asyncio
    import logging

    from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                    ModbusSlaveContext)
    from pymodbus.server.async_io import ModbusTcpServer

    # A client that closes its connection is logged as an error.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def run():
        slave = ModbusSlaveContext(hr=ModbusSequentialDataBlock(0, [0] * 1024), zero_mode=True)
        server = ModbusTcpServer(ModbusServerContext(slaves=slave, single=True),
                                 address=("127.0.0.1", 0), allow_reuse_address=True)
        task = asyncio.create_task(server.serve_forever())
        await server.serving
        print(f"PORT {server.server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.shutdown()
        task.cancel()

    asyncio.run(run())


def read_package(pkg):
    ini = configparser.ConfigParser(inline_comment_prefixes=("#",))
    ini.read(os.path.join(pkg, "manifest.ini"))
    v, s, t = ini["vision"], ini["signal"], ini["thresholds"]
    if s.get("features", "vigil-sigfeat-v1") != "vigil-sigfeat-v1":
        sys.exit(f"line-baseline: {pkg}: features {s['features']}, this script computes "
                 "vigil-sigfeat-v1")
    return dict(
        vision=os.path.join(pkg, v["file"]), signal=os.path.join(pkg, s["file"]),
        decision=os.path.join(pkg, ini["decision"]["file"]),
        width=int(v["input_width"]), height=int(v["input_height"]),
        mean=float(v.get("mean", "0")), std=float(v.get("std", "1")),
        resize=v.get("resize", "stretch"), heatmap=v.get("heatmap_output"),
        rate=float(s["rate_hz"]), window=int(s["window"]),
        reject=float(t["reject"]), marginal=float(t["marginal"]))


# ---- fusion/image.c ----

def scale_to(img, w, h):
    ih, iw = img.shape
    if (iw, ih) == (w, h):
        return img
    interp = cv2.INTER_AREA if w < iw or h < ih else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def image_input(img, p):
    """fusion_image_prepare_resize: fitted 8-bit, then one float32
    multiply-add per pixel."""
    ow, oh = p["width"], p["height"]
    if p["resize"] == "letterbox":
        h, w = img.shape
        if (w > h and ow < oh) or (w < h and ow > oh):
            img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
            h, w = img.shape
        if w * oh >= h * ow:
            fw, fh = ow, (h * ow * 2 + w) // (2 * w)
        else:
            fw, fh = (w * oh * 2 + h) // (2 * h), oh
        fw, fh = min(max(fw, 1), ow), min(max(fh, 1), oh)
        fitted = scale_to(img, fw, fh)
        n = fw * fh
        out = np.full((oh, ow), (int(fitted.sum(dtype=np.uint64)) + n // 2) // n, np.uint8)
        x0, y0 = (ow - fw) // 2, (oh - fh) // 2
        out[y0:y0 + fh, x0:x0 + fw] = fitted
    else:
        out = scale_to(img, ow, oh)
    std, mean = np.float32(p["std"]), np.float32(p["mean"])
    scale = np.float32(1) / (np.float32(255) * std)
    return out.astype(np.float32) * scale + (-mean / std)


# ---- fusion/features.c (vigil-sigfeat-v1) and fusion/prep-math.h ----

class SigFeat:
    def __init__(self, n, rate):
        self.n, self.rate = n, rate
        i = np.arange(n)
        self.hann = (0.5 - 0.5 * np.cos(2 * np.pi * i / n)).astype(np.float32)
        j = np.minimum(i, n - 1 - i)
        self.edge = edge = n // 32
        self.tukey = np.where(j >= edge, 1.0,
                              0.5 - 0.5 * np.cos(np.pi * (j + 0.5) / max(edge, 1))).astype(np.float32)
        hp = min(2000.0, rate / 6.0)
        self.hp_bin = math.ceil(hp / (rate / n))
        k = np.arange(n // 2 + 1)
        self.twice = np.where((k == 0) | (2 * k == n), 1.0, 2.0)
        gain = np.where(k < self.hp_bin, 0.0, np.where(2 * k == n, 1.0, 2.0))
        self.gain = np.concatenate([gain, np.zeros(n - gain.size)])
        bin_hz, nyq, nbins = rate / n, rate / 2, n // 2 + 1
        self.power_bands = [self.bins(b * nyq / 64, nyq + bin_hz if b == 63 else (b + 1) * nyq / 64,
                                      bin_hz, nbins) for b in range(64)]
        self.env_bands = [self.bins(b * 18.75, (b + 1) * 18.75, bin_hz, nbins) for b in range(32)]

    @staticmethod
    def bins(f_lo, f_hi, bin_hz, nbins):
        a, b = math.ceil(f_lo / bin_hz - 1e-9), math.ceil(f_hi / bin_hz - 1e-9)
        a, b = max(a, 1), min(b, nbins)
        if b <= a:
            c = min(max(math.floor(0.5 * (f_lo + f_hi) / bin_hz + 0.5), 1), nbins - 1)
            a, b = c, c + 1
        return a, b

    def power(self, x):
        X = np.fft.rfft(x.astype(np.float64))
        return self.twice * (X.real ** 2 + X.imag ** 2) / (self.n * 0.375 * self.n)

    def compute(self, x):
        n = self.n
        c = (x - x.astype(np.float64).mean()).astype(np.float32)
        cd = c.astype(np.float64)
        ms, peak = (cd * cd).mean(), np.abs(cd).max()
        d = cd - cd.mean()
        m2, m4 = (d * d).mean(), (d ** 4).mean()
        p = self.power(c * self.hann)
        out = [np.log10(p[lo:hi].mean() + 1e-12) for lo, hi in self.power_bands]
        spec = np.fft.rfft((c * self.tukey).astype(np.float64))
        full = np.zeros(n, np.complex128)
        full[:spec.size] = spec * self.gain[:spec.size]
        a = np.fft.ifft(full)
        env = (a.real ** 2 + a.imag ** 2).astype(np.float32)
        env_mean = env.astype(np.float64).mean()
        hr = a.real[self.edge:n - self.edge]
        hd = hr - hr.mean()
        hm2, hm4 = (hd * hd).mean(), (hd ** 4).mean()
        pe = self.power(((env - env_mean) * self.hann).astype(np.float32))
        for lo, hi in self.env_bands:
            rel = pe[lo:hi].mean() / (env_mean * env_mean) if env_mean > 0 else 0.0
            out.append(np.log10(rel + 1e-10))
        rms = np.float32(math.sqrt(ms))
        crest = np.float32(peak / math.sqrt(ms)) if ms > 0 else 0.0
        kurt = np.float32(m4 / (m2 * m2)) if m2 > 0 else 0.0
        hk = hm4 / (hm2 * hm2) if hm2 > 0 else 0.0
        out += [math.log10(rms + 1e-9), math.log(crest) if crest > 0 else 0.0,
                math.log(kurt) if kurt > 0 else 0.0, math.log(hk) if hk > 0 else 0.0]
        return np.asarray(out, np.float32)


def read_wav(path, rate):
    """A mono float32 WAV (vigil-sim's vibration.wav)."""
    with open(path, "rb") as f:
        raw = f.read()
    fmt, ch, r = struct.unpack("<HHI", raw[20:28])
    if (fmt, ch, int(r)) != (3, 1, int(rate)):
        sys.exit(f"line-baseline: {path}: not mono float32 at {rate:.0f} Hz")
    at = raw.index(b"data")
    (n,) = struct.unpack("<I", raw[at + 4:at + 8])
    return np.frombuffer(raw[at + 8:at + 8 + n], "<f4")


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts-dir")
    ap.add_argument("--package")
    ap.add_argument("--count", type=int, default=0, help="parts to run (all)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed parts first (3)")
    ap.add_argument("--scores", help="per-part scores CSV")
    ap.add_argument("--db", help="SQLite file (a temporary one)")
    ap.add_argument("--serve-modbus", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve_modbus:
        return serve_modbus()
    if not a.parts_dir or not a.package:
        ap.error("--parts-dir and --package are required")

    p = read_package(a.package)
    with open(os.path.join(a.parts_dir, "parts.csv")) as f:
        parts = list(csv.DictReader(f))
    if a.count > 0:
        parts = parts[:a.count]
    wav = read_wav(os.path.join(a.parts_dir, "vibration.wav"), p["rate"])
    sig = SigFeat(p["window"], p["rate"])
    vision, signal, decision = (cv2.dnn.readNetFromONNX(p[k])
                                for k in ("vision", "signal", "decision"))
    vnames = vision.getUnconnectedOutLayersNames()

    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-modbus"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    tmp = tempfile.TemporaryDirectory(prefix="line-baseline-")
    try:
        port = int(server.stdout.readline().split()[1])
        from pymodbus.client import ModbusTcpClient
        plc = ModbusTcpClient("127.0.0.1", port=port)
        if not plc.connect():
            sys.exit(f"line-baseline: cannot connect to the Modbus server on port {port}")
        import sqlite3
        con = sqlite3.connect(a.db or os.path.join(tmp.name, "baseline.db"))
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("CREATE TABLE IF NOT EXISTS inspections (id INTEGER PRIMARY KEY, "
                    "part_id INTEGER, t_wall_us INTEGER, verdict TEXT, score REAL, "
                    "vision_score REAL, signal_score REAL, latency_ms REAL)")
        con.commit()

        def inspect(i, row):
            t = [time.perf_counter()]
            img = cv2.imread(os.path.join(a.parts_dir, row["image"]), cv2.IMREAD_GRAYSCALE)
            if img is None:
                sys.exit(f"line-baseline: cannot read {row['image']}")
            x = image_input(img, p)
            t.append(time.perf_counter())
            s0 = int(row["vib_start"])
            feats = sig.compute(wav[s0:s0 + p["window"]])
            t.append(time.perf_counter())
            vision.setInput(x.reshape(1, 1, p["height"], p["width"]))
            vout = vision.forward(vnames)
            vvec = next(o for o in vout if o.ndim == 2).reshape(-1)
            signal.setInput(feats.reshape(1, -1))
            svec = signal.forward().reshape(-1)
            decision.setInput(np.concatenate([vvec, svec]).reshape(1, -1).astype(np.float32))
            fused = float(decision.forward().reshape(-1)[0])
            score = sigmoid(fused)
            verdict = ("reject" if score >= p["reject"] else
                       "marginal" if score >= p["marginal"] and p["marginal"] < p["reject"]
                       else "accept")
            t.append(time.perf_counter())
            code = {"accept": 1, "reject": 2, "marginal": 3}[verdict]
            plc.write_registers(100, [i & 0xFFFF, code, int(score * 10000)], slave=1)
            t.append(time.perf_counter())
            lat = (t[-1] - t[0]) * 1e3
            con.execute("INSERT INTO inspections (part_id, t_wall_us, verdict, score, "
                        "vision_score, signal_score, latency_ms) VALUES (?,?,?,?,?,?,?)",
                        (i, int(time.time() * 1e6), verdict, score, sigmoid(float(vvec[0])),
                         sigmoid(float(svec[0])), lat))
            con.commit()
            t.append(time.perf_counter())
            return (score, sigmoid(float(vvec[0])), sigmoid(float(svec[0])), verdict, lat,
                    np.diff(t) * 1e3)

        for i in range(min(a.warmup, len(parts))):
            inspect(i, parts[i])
        results = []
        t0 = time.perf_counter()
        for i, row in enumerate(parts):
            results.append(inspect(i, row))
        wall = time.perf_counter() - t0
        plc.close()
        con.close()
    finally:
        server.stdin.close()
        server.wait(timeout=10)
        tmp.cleanup()

    if a.scores:
        with open(a.scores, "w") as f:
            f.write("part,part_id,score,vision_score,signal_score,verdict\n")
            for i, (row, r) in enumerate(zip(parts, results)):
                f.write(f"{i},{row['part_id']},{r[0]:.9g},{r[1]:.9g},{r[2]:.9g},{r[3]}\n")
    lat = np.array([r[4] for r in results])
    stages = np.mean([r[5] for r in results], axis=0)
    print(json.dumps({
        "parts": len(results), "parts_per_s": round(len(results) / wall, 2),
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 2),
                       "p99": round(float(np.percentile(lat, 99)), 2),
                       "max": round(float(lat.max()), 2)},
        "stage_ms": dict(zip(("image", "features", "model", "modbus", "sqlite"),
                             (round(float(v), 3) for v in stages))),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
