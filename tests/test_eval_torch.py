#!/usr/bin/python3
"""The run-time check: a model trained by tools/train.py (segmentation
vision module, a short run on synthetic parts) gives the same scores and
the same defect maps under PyTorch as under the C runtime (vigil-eval:
fusion/ features, inference/ modules through OpenCV DNN) on the same
held-out parts; and the C runtime's defect map, of the size the manifest
states, is hottest on the synthetic defects.

usage: test_eval_torch.py BUILD_DIR SOURCE_ROOT
"""
import csv
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linetest import fail, read_manifest, read_maps, read_scores  # noqa: E402

build, root = sys.argv[1], sys.argv[2]
sim = os.path.join(build, "tools", "vigil-sim")
TOLERANCE = 1e-4   # probabilities; float32 through two runtimes
SIZE = 64          # model input; the defect map is SIZE / 4 a side
MAP_STRIDE = 4
# Surface-defect parts whose hottest 3x3 map region touches the defect; a
# map unrelated to the defects touches one about 15 % of the time (the
# defects cover 3-20 of the 256 cells). Measured: 10 of 13.
MIN_HOT_ON_DEFECT = 0.6


with tempfile.TemporaryDirectory(prefix="vigil-eval-torch-") as tmp:
    train, held = os.path.join(tmp, "train"), os.path.join(tmp, "held")
    subprocess.run([sim, "generate", "--out", train, "--parts", "200", "--seed", "41"],
                   check=True)
    subprocess.run([sim, "generate", "--out", held, "--parts", "60", "--seed", "42",
                    "--split", "test"], check=True)
    pkg = os.path.join(tmp, "pkg")
    torch_scores = os.path.join(tmp, "torch.csv")
    torch_maps = os.path.join(tmp, "torch.maps")
    subprocess.run(["/usr/bin/python3", os.path.join(root, "tools", "train.py"),
                    "--manifest", os.path.join(train, "parts.csv"),
                    "--features-tool", os.path.join(build, "tools", "vigil-features"),
                    "--out", pkg, "--seed", "3", "--arch", "seg", "--width", str(SIZE),
                    "--height", str(SIZE), "--epochs", "12", "--frr-target", "0.01",
                    "--val-manifest", os.path.join(held, "parts.csv"), "--val-split", "test",
                    "--scores-out", torch_scores, "--maps-out", torch_maps,
                    "--name", "check", "--version", "check-1"],
                   check=True)
    c_scores = os.path.join(tmp, "c.csv")
    c_maps = os.path.join(tmp, "c.maps")
    subprocess.run([os.path.join(build, "tools", "vigil-eval"),
                    "--manifest", os.path.join(held, "parts.csv"), "--split", "test",
                    "--model", pkg, "--json", os.path.join(tmp, "eval.json"),
                    "--scores", c_scores, "--heatmaps", c_maps], check=True)
    t, c = read_scores(torch_scores), read_scores(c_scores)
    if set(t) != set(c) or len(t) != 60:
        fail(f"torch scored {len(t)} parts, the C runtime {len(c)}")
    worst = max(abs(float(t[p][k]) - float(c[p][k]))
                for p in t for k in ("score", "vision_score", "signal_score"))
    if worst > TOLERANCE:
        fail(f"C runtime and PyTorch differ by {worst:.3g} (tolerance {TOLERANCE})")

    # The defect maps: the size the manifest states, torch's values.
    man = read_manifest(pkg)
    side = SIZE // MAP_STRIDE
    if (man.get("heatmap_output"), man.get("heatmap_width"), man.get("heatmap_height")) != \
            ("defect_map", str(side), str(side)):
        fail(f"manifest does not declare a {side}x{side} defect_map heatmap")
    tm, cm = read_maps(torch_maps), read_maps(c_maps)
    if cm.shape != (60, side, side) or tm.shape != cm.shape:
        fail(f"defect maps: C runtime {cm.shape}, torch {tm.shape}, want (60, {side}, {side})")
    if cm.min() < 0 or cm.max() > 1:
        fail(f"defect map values {cm.min()}..{cm.max()} outside 0..1")
    map_diff = float(np.abs(tm - cm).max())
    if map_diff > TOLERANCE:
        fail(f"defect maps differ by {map_diff:.3g} (tolerance {TOLERANCE})")

    # Where the map is hottest: on the defect. Masks at model size from the
    # features tool, as training sees them, pooled to map cells.
    feats = os.path.join(tmp, "held.vgf")
    subprocess.run([os.path.join(build, "tools", "vigil-features"),
                    "--manifest", os.path.join(held, "parts.csv"), "--split", "test",
                    "--width", str(SIZE), "--height", str(SIZE), "--out", feats,
                    "--masks-out", feats + ".masks"], check=True)
    raw = np.fromfile(feats + ".masks", np.uint8)
    masks = raw[12:].view("<f4").reshape(60, side, MAP_STRIDE, side, MAP_STRIDE)
    cells = masks.max(axis=(2, 4)) > 0
    with open(os.path.join(held, "parts.csv")) as f:
        classes = [r["image_class"] for r in csv.DictReader(f) if r["split"] == "test"]
    surface = [i for i, c in enumerate(classes) if c != "free"]
    if len(surface) < 10:
        fail(f"only {len(surface)} held-out parts with a surface defect")
    on = 0
    for i in surface:
        padded = np.pad(cm[i], 1)
        region = sum(padded[dy:dy + side, dx:dx + side] for dy in range(3) for dx in range(3))
        y, x = np.unravel_index(int(np.argmax(region)), region.shape)
        on += bool(cells[i, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].any())
    if on < MIN_HOT_ON_DEFECT * len(surface):
        fail(f"the defect map's hottest region lies on the defect in {on} of "
             f"{len(surface)} parts (want {MIN_HOT_ON_DEFECT:.0%})")
print(f"ok: C runtime and PyTorch agree on 60 parts, max score difference {worst:.2e}, "
      f"max defect map difference {map_diff:.2e}; hottest region on the defect in "
      f"{on} of {len(surface)} parts")
