"""Training inputs of tools/train.py: the manifest's labels, the model
inputs as vigil-features computes them (the fusion/ code vigild runs, so
training and inspection see the same inputs), the defect map target made
from the masks, and the augmentation of a training batch.
"""
import csv
import shlex
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F


def log(msg):
    """A progress line; all of train.py's modules log under its name."""
    print(f"train: {msg}", flush=True)


def read_labels(path, split=None):
    """Surface, vibration and overall defect labels, in manifest order
    (rows of one split when split is given, as vigil-features --split)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"image_class", "vib_class", "defect"} | ({"split"} if split else set())
        missing = need - set(reader.fieldnames or [])
        if missing:
            sys.exit(f"train: {path}:1: no column {', '.join(sorted(missing))}")
        surf, vib, defect, classes = [], [], [], []
        for line, row in enumerate(reader, start=2):
            if split and row["split"] != split:
                continue
            try:
                d = int(row["defect"])
            except ValueError:
                sys.exit(f"train: {path}:{line}: column 'defect': {row['defect']!r} is not 0 or 1")
            surf.append(row["image_class"] != "free")
            vib.append(row["vib_class"] != "normal")
            defect.append(d != 0)
            classes.append((row["image_class"], row["vib_class"], row.get("part_id", "")))
    return (np.array(surf, np.float32), np.array(vib, np.float32),
            np.array(defect, np.float32), classes)


def compute_features(a, manifest, root, split, out_path, masks=False):
    cmd = [a.features_tool, "--manifest", manifest, "--data-root", root,
           "--width", str(a.width), "--height", str(a.height),
           "--mean", repr(a.mean), "--std", repr(a.std),
           "--window", str(a.window), "--rate", repr(a.rate), "--out", out_path]
    if a.resize != "stretch":
        cmd += ["--resize", a.resize]
    if split:
        cmd += ["--split", split]
    if masks:
        cmd += ["--masks-out", out_path + ".masks"]
    log("features: " + shlex.join(cmd))
    subprocess.run(cmd, check=True)
    raw = np.fromfile(out_path, dtype=np.uint8)
    if raw[:4].tobytes() != b"VGF1":
        sys.exit(f"train: {out_path}: not a vigil-features file")
    n, img_floats, sig_dim = (int(v) for v in raw[4:16].view("<u4"))
    if img_floats != a.width * a.height:
        sys.exit(f"train: {out_path}: {img_floats} image floats, expected {a.width * a.height}")
    data = raw[16:].view("<f4").reshape(n, img_floats + sig_dim)
    images = data[:, :img_floats].reshape(n, 1, a.height, a.width).copy()
    signals = data[:, img_floats:].copy()
    if not masks:
        return images, signals, None
    raw = np.fromfile(out_path + ".masks", dtype=np.uint8)
    if raw[:4].tobytes() != b"VGM1" or int(raw[4:8].view("<u4")[0]) != n:
        sys.exit(f"train: {out_path}.masks: not a vigil-features mask file for {n} parts")
    masks_arr = raw[12:].view("<f4").reshape(n, 1, a.height, a.width).copy()
    return images, signals, masks_arr

def defect_map_target(masks, cell, mode):
    """The defect map's training target from masks [N, 1, H, W] (0..1, the
    share of each input pixel the defect covers): 1 for a map cell of
    cell x cell pixels that is defective. area: the mask covers more than
    10 % of the cell (a 2-pixel blowhole still marks its cell). any: the
    cell's most covered pixel is at least a quarter covered, so a crack a
    pixel wide crossing a corner of the cell still marks it."""
    if mode == "any":
        return (F.max_pool2d(masks, cell) >= 0.25).float()
    return (F.avg_pool2d(masks, cell) > 0.1).float()


def shift_batch(x, m, shift, gen):
    """Moves the whole batch by one random offset of up to shift pixels
    per axis, repeating the edge pixels into the uncovered side (a wrap
    would draw a seam that looks like a crack); the masks m move the same
    way with 0 filled in. Position on the tile is no cue to a defect."""
    dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=gen))
    h, w = x.shape[2], x.shape[3]
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))

    def move(t, mode):
        t = F.pad(t, pad, mode=mode) if mode == "replicate" else F.pad(t, pad)
        y0, x0 = max(-dy, 0), max(-dx, 0)
        return t[:, :, y0:y0 + h, x0:x0 + w]
    return move(x, "replicate"), (move(m, "constant") if m is not None else None)


def augment(x, m, gen, shift=0, gain=0.15, offset=0.3):
    """Flips, quarter turns (square inputs), shifts (shift > 0) and
    brightness/contrast changes (each image times 1 +- gain, plus +- offset
    in normalised units) of the normalised image batch, the same flips,
    turns and shifts of the masks m (may be None); the surface has no
    preferred way up."""
    def both(f):
        return f(x), (f(m) if m is not None else None)
    if torch.rand(1, generator=gen).item() < 0.5:
        x, m = both(lambda t: torch.flip(t, dims=[3]))
    if torch.rand(1, generator=gen).item() < 0.5:
        x, m = both(lambda t: torch.flip(t, dims=[2]))
    if x.shape[2] == x.shape[3] and torch.rand(1, generator=gen).item() < 0.5:
        x, m = both(lambda t: torch.rot90(t, 1, dims=[2, 3]))
    if shift > 0:
        x, m = shift_batch(x, m, shift, gen)
    n = x.shape[0]
    g = 1 + gain * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    shift = offset * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    return x * g + shift, m
