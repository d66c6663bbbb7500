"""The dark-residual score (docs/model.md, "A dark-residual score"), as the
C runtime computes it (cvwrap's cvw_dark_spot, fusion_dark_score), for the
tools that choose a package's [dark] figures and for the benchmarks.

A crack or a blowhole on a tile is darker than the tile around it. The
image, its long side scaled to SIDE pixels (area averaging), less its
MEDIAN x MEDIAN median (the tile's own texture and shading, which a thin
or small defect does not move), EDGE pixels cut from each side; the
darkest BOX x BOX mean of that residual over the median absolute residual
(how rough this tile is). The score is its natural log.
"""
import cv2
import numpy as np

SIDE, MEDIAN, BOX, EDGE = 320, 21, 3, 4
TAIL = 0.9   # the good parts' quantile that sets a score's unit (units())


def dark_score(gray, side=SIDE, median=MEDIAN, box=BOX, edge=EDGE):
    """gray: 8-bit 2-D array. The log score, as fusion_dark_score gives it."""
    h, w = gray.shape
    s = side / max(h, w)
    # round() rounds half to even, as the C side's nearbyint().
    size = (max(8, round(w * s)), max(8, round(h * s)))
    g = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    r = g.astype(np.float32) - cv2.medianBlur(g, median).astype(np.float32)
    r = np.ascontiguousarray(r[edge:r.shape[0] - edge, edge:r.shape[1] - edge])
    dark = float(cv2.blur(-r, (box, box)).max())
    score = dark / (float(np.median(np.abs(r))) + 1e-3)
    return float(np.log(max(score, 1e-6)))


def dark_scores(paths, **spec):
    out = []
    for p in paths:
        g = cv2.imread(p, cv2.IMREAD_GRAYSCALE)
        if g is None:
            raise SystemExit(f"dark_residual: cannot read {p}")
        out.append(dark_score(g, **spec))
    return np.array(out, np.float64)


def units(x):
    """A score's median and unit on good parts x: the unit is their TAIL
    quantile less their median. The operating point lies in the good
    parts' upper tail, and two scores whose tails differ in shape (the
    learned one's is long, the dark one's short) are only comparable
    there: in units of the middle (a MAD) the maximum of the two would
    spend the false-reject budget on the longer tail."""
    x = np.asarray(x, np.float64)
    m = float(np.median(x))
    return m, float(np.quantile(x, TAIL)) - m
