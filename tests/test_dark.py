#!/usr/bin/python3
"""The dark-residual score ([dark] in a package's manifest, docs/model.md;
issue 21): computed on the full frame on the CPU, joined into the vision
and fused scores by their maximum in units of good parts.

- tools/recalibrate.py --dark adds [dark] to a package (models/synthetic-v2
  here) and chooses its thresholds on the joined scores; vigil-eval
  reproduces the held-out figures it writes.
- The C score (fusion_dark_score, vigil-eval's dark column) equals
  tools/dark_residual.py's on every image, and the joined score is the
  higher of the package's own and the dark score in its units, on every
  CPU backend (opencv, reference, onednn).
- infer-bench judges parts files (vigil-features --raw-out) prepared and
  raw (infer_model_run_raw) as vigil-eval does, dark score included.
- vigild on a simulated line logs the joined scores and verdicts that
  vigil-eval gives for the same parts, and the join moved some of them;
  its model-loaded event says the package joins [dark].
- A [dark] with an even median, an unknown key or a scale missing is
  refused, naming the file, line and key; tools/ensemble.py (and so
  tools/fuse.py) refuses to join a package with [dark], which the joined
  package would drop.

usage: test_dark.py BUILD_DIR SOURCE_ROOT
"""
import configparser
import csv
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linetest import (Vigild, binaries, fail, free_port, generate_parts,  # noqa: E402
                      line_config, require_model, sequence_camera)

build, root = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(root, "tools"))
import dark_residual  # noqa: E402

evaluate = os.path.join(build, "tools", "vigil-eval")
features = os.path.join(build, "tools", "vigil-features")
bench = os.path.join(build, "bench", "infer-bench")
compare = os.path.join(root, "bench", "compare-scores.py")
require_model(root)
base = os.path.join(root, "models", "synthetic-v2")
HELD, LINE = 120, 40


def run(cmd, want_rc=0):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != want_rc:
        fail(f"{' '.join(cmd)}: exit {p.returncode}, wanted {want_rc}\n{p.stdout}{p.stderr}")
    return p.stdout + p.stderr


def scores(pkg, manifest, out, backend="opencv"):
    js = out + ".json"
    run([evaluate, "--manifest", manifest, "--model", pkg, "--backend", backend,
         "--json", js, "--scores", out])
    with open(out) as f:
        rows = list(csv.DictReader(f))
    with open(js) as f:
        return rows, json.load(f)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def dark_settings(pkg):
    man = configparser.ConfigParser(interpolation=None)
    man.read(os.path.join(pkg, "manifest.ini"))
    return {k: float(v) for k, v in man["dark"].items()}, man


def joined(dark, own, median, scale, d):
    """The score vigild gives: the higher of the package's own and the dark
    score put in the package score's units (infer_model_join_dark)."""
    z = (dark - d["good_median"]) / d["good_scale"]
    return max(own, sigmoid(median + z * scale))


with tempfile.TemporaryDirectory(prefix="vigil-dark-") as tmp:
    held = os.path.join(tmp, "held")
    generate_parts(build, held, HELD, 47, split="test")
    held_csv = os.path.join(held, "parts.csv")
    pkg = os.path.join(tmp, "dark")
    log = run(["/usr/bin/python3", os.path.join(root, "tools", "recalibrate.py"),
               "--model", base, "--out", pkg, "--features-tool", features,
               "--val-manifest", held_csv, "--frr-target", "0.05", "--marginal-rule", "tight",
               "--dark", "--version", "dark-test"])
    d, man = dark_settings(pkg)
    if not d.get("good_scale", 0) > 0:
        fail(f"recalibrate.py --dark wrote no [dark] with its units: {dict(man['dark'])}\n{log}")

    # The C score against the Python one, and the join, on every CPU backend.
    own, _ = scores(base, held_csv, os.path.join(tmp, "own.csv"))
    with open(held_csv) as f:
        paths = [os.path.join(held, r["image"]) for r in csv.DictReader(f)]
    want_dark = dark_residual.dark_scores(paths)
    first = None
    for backend in ("opencv", "reference", "onednn"):
        rows, js = scores(pkg, held_csv, os.path.join(tmp, f"dark-{backend}.csv"), backend)
        got_dark = [float(r["dark"]) for r in rows]
        worst = max(abs(a - b) for a, b in zip(got_dark, want_dark))
        if len(rows) != HELD or worst > 1e-4:
            fail(f"{backend}: the C dark score differs from tools/dark_residual.py's by "
                 f"{worst:.3g}")
        raised, worst = 0, 0.0
        for r, o in zip(rows, own):
            want = joined(float(r["dark"]), float(o["score"]), d["fused_median"],
                          d["fused_scale"], d)
            want_v = joined(float(r["dark"]), float(o["vision_score"]), d["vision_median"],
                            d["vision_scale"], d)
            worst = max(worst, abs(float(r["score"]) - want),
                        abs(float(r["vision_score"]) - want_v))
            raised += float(r["score"]) > float(o["score"]) + 1e-6
        if worst > (1e-5 if backend == "opencv" else 1e-4):
            fail(f"{backend}: the joined scores differ from max(own, dark) by {worst:.3g}")
        if raised == 0:
            fail(f"{backend}: the dark score raised no part's score; the test checks nothing")
        if first is None:
            first = (rows, js, raised)
    rows, js, raised = first
    metrics = man["metrics"]
    esc = round(float(metrics["heldout_escape_rate"]) * js["defective"])
    frr = round(float(metrics["heldout_false_reject_rate"]) * js["good"])
    if (round(js["escape_rate"] * js["defective"]),
            round(js["false_reject_rate"] * js["good"])) != (esc, frr):
        fail(f"vigil-eval: escapes {js['escape_rate']}, false rejects {js['false_reject_rate']}; "
             f"recalibrate.py's [metrics]: {esc} escapes, {frr} false rejects")
    print(f"dark: {HELD} held-out parts, the score raised on {raised}; C = Python, joined "
          f"= max(own, dark) on opencv, reference, onednn")

    # Parts files: prepared (infer_model_dark + join) and raw (in run_raw).
    raw = os.path.join(tmp, "held.vgr")
    m = dict(man["vision"])
    run([features, "--manifest", held_csv, "--width", m["input_width"], "--height",
         m["input_height"], "--resize", m.get("resize", "stretch"), "--out",
         os.path.join(tmp, "f.vgf"), "--raw-out", raw])
    for mode, extra in (("prepared", ["--batch", "1"]), ("raw", ["--raw", "--batch", "4"])):
        out = os.path.join(tmp, f"bench-{mode}.csv")
        run([bench, pkg, "opencv", "10", "--parts", raw, "--scores", out, *extra])
        print(run([sys.executable, compare, os.path.join(tmp, "dark-opencv.csv"), out,
                   "--name", f"dark {mode}", "--same-verdicts", "--max-diff", "1e-6"]).strip())

    # vigild on a simulated line: the log's scores are vigil-eval's.
    sim_bin = binaries(build)[0]
    sim_dir = os.path.join(tmp, "sim")
    generate_parts(build, sim_dir, LINE, 77)
    port = free_port()
    db = os.path.join(tmp, "vigil.db")
    conf = os.path.join(tmp, "vigild.conf")
    with open(conf, "w") as f:
        f.write(line_config(sequence_camera(sim_dir), sim_dir, root, port, db, package=pkg))
    results = os.path.join(tmp, "results.csv")
    sim = subprocess.Popen([sim_bin, "run", "--parts-dir", sim_dir, "--port", str(port),
                            "--rate", "300", "--results", results, "--drain-timeout-s", "30",
                            "--ready-timeout-s", "60"], stderr=subprocess.DEVNULL)
    vigild = Vigild(build, conf, os.path.join(tmp, "vigild.log"))
    try:
        if sim.wait(timeout=240) != 0:
            fail("vigil-sim: results lost or mislogged")
        if vigild.stop() != 0:
            fail("vigild did not stop cleanly")
    finally:
        vigild.reap()
        if sim.poll() is None:
            sim.kill()
    line_csv = os.path.join(sim_dir, "parts.csv")
    want, _ = scores(pkg, line_csv, os.path.join(tmp, "line-eval.csv"))
    plain, _ = scores(base, line_csv, os.path.join(tmp, "line-own.csv"))
    con = sqlite3.connect(db)
    got = con.execute("SELECT part_id, score, vision_score, verdict FROM inspections "
                      "ORDER BY part_id").fetchall()
    loaded = [m for (m,) in con.execute("SELECT message FROM events WHERE kind = "
                                        "'model-loaded'")]
    con.close()
    if len(loaded) != 1 or "dark-residual score ([dark])" not in loaded[0]:
        fail(f"the model-loaded event does not say the package joins [dark]: {loaded}")
    if [g[0] for g in got] != list(range(LINE)):
        fail(f"the log holds parts {[g[0] for g in got]}, want 0..{LINE - 1}")
    for (part, score, vision, verdict), w in zip(got, want):
        if abs(score - float(w["score"])) > 1e-5 or verdict != w["verdict"] or \
                abs(vision - float(w["vision_score"])) > 1e-5:
            fail(f"part {part}: vigild logged {score:.7g} {vision:.7g} {verdict}, vigil-eval "
                 f"gives {w['score']} {w['vision_score']} {w['verdict']}")
    moved = sum(float(w["score"]) > float(p["score"]) + 1e-6 for w, p in zip(want, plain))
    if moved == 0:
        fail("the dark score raised no line part's score; the line check checks nothing")
    print(f"dark: vigild logged vigil-eval's joined scores and verdicts on {LINE} parts "
          f"({moved} raised by the dark score)")

    # A package with [dark] is not joined into another (which would drop it).
    msg = run(["/usr/bin/python3", os.path.join(root, "tools", "ensemble.py"), "--member", base,
               "--member", pkg, "--out", os.path.join(tmp, "joined"), "--features-tool",
               features, "--val-manifest", held_csv, "--frr-target", "0.05"], want_rc=1)
    if "has [dark]" not in msg or os.path.exists(os.path.join(tmp, "joined")):
        fail(f"tools/ensemble.py joined a package with [dark]: {msg}")

    # A bad [dark] is refused, naming the file, line and key.
    text = open(os.path.join(pkg, "manifest.ini")).read()
    for what, old, new, key in (
            ("an even median", "median=21\n", "median=20\n", "median"),
            ("an unknown key", "box=3\n", "box=3\nboxes=3\n", "boxes"),
            ("a scale missing", "\nfused_scale=", "\n#fused_scale=", "fused_scale")):
        bad = os.path.join(tmp, "bad")
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(pkg, bad)
        if old not in text:
            fail(f"the manifest has no {old!r} to change")
        with open(os.path.join(bad, "manifest.ini"), "w") as f:
            f.write(text.replace(old, new, 1))
        msg = run([evaluate, "--manifest", held_csv, "--model", bad, "--json",
                   os.path.join(tmp, "bad.json")], want_rc=1)
        where = os.path.join(bad, "manifest.ini") + ":"
        if where not in msg or f"[dark] {key}" not in msg:
            fail(f"{what}: the refusal does not name {where}LINE and [dark] {key}: {msg}")
print("dark: ok")
