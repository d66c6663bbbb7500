#!/usr/bin/python3
"""Issue 21's next step, measured: a dark-residual score beside a good-only
package's learned one, on good parts alone.

A crack or a blowhole on a magnetic tile is darker than the tile around it;
the learned good-only score misses most cracks (they are a pixel wide at
the model's 160 x 112). This score needs no training: the image, its long
side at 320 px (INTER_AREA), less its 21 x 21 median (the tile's own
texture and shading, which a thin or small defect does not move), the
darkest 3 x 3 mean of that residual within 4 px of the edge, over the
median absolute residual (how rough this tile's surface is). Each score is
then put in units of the split's good parts (tools/dark_residual.py
units(): their median, and their 90th percentile less the median, where
the operating point lies; what a good-only line has to calibrate with),
and the two are fused by
their maximum. No defect label is used but to report the AUROCs.

usage: good-only-dark.py MANIFEST DATA_ROOT SCORES.csv [SCORES.csv ...]
  SCORES.csv: vigil-eval --scores of a good-only package on one split
  (e.g. models/good-only-v1 on train and on val); prints per split the
  vision AUROC (surface-defective against surface-good parts) of the
  learned score, the dark score and their fusion, overall and per class.
"""
import csv
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import dark_residual  # noqa: E402  (the score as the C runtime computes it)


def auroc(pos, neg):
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def robust_z(x, good):
    m, unit = dark_residual.units(x[good])
    return (x - m) / (unit + 1e-9)


def main(manifest, root, score_files):
    images = {r["part_id"]: r["image"] for r in csv.DictReader(open(manifest))}
    print("| scores | score | vision AUROC | blowhole | break | crack | fray | uneven |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for f in score_files:
        rows = list(csv.DictReader(open(f)))
        cls = np.array([r["image_class"] for r in rows])
        p = np.clip(np.array([float(r["vision_score"]) for r in rows]), 1e-7, 1 - 1e-7)
        learned = np.log(p / (1 - p))
        dark = dark_residual.dark_scores([os.path.join(root, images[r["part_id"]]) for r in rows])
        good = cls == "free"
        fused = np.maximum(robust_z(learned, good), robust_z(dark, good))
        for name, x in (("learned", learned), ("dark residual", dark), ("max of z", fused)):
            per = [f"{auroc(x[cls == c], x[good]):.3f}"
                   for c in ("blowhole", "break", "crack", "fray", "uneven")]
            print(f"| {os.path.basename(f)} | {name} | {auroc(x[~good], x[good]):.3f} | "
                  + " | ".join(per) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
