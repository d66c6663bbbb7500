"""Synthetic anomalies for tools/train.py --good-only (issue 21): a line
that has only good parts trains its vision, signal and decision modules
on those parts with made-up defects pasted in, labelled where they were
pasted, so the networks learn what a good part looks like and flag what
departs from it (the scheme of DRAEM's discriminative network, Zavrtanik
et al. 2021, and of CutPaste, Li et al. 2021, without their external
texture sets, which nothing may download here).

Surface: a mask of one of four shapes (smoothed-noise blobs, a spot, a
thin polyline like a crack, a bite out of the tile's edge) inside the
tile (not the letterbox fill), filled with a darker or brighter patch, a
smooth shading, another part's texture turned across the grinding marks,
or smoothed noise, blended at a random opacity, with soft edges half the
time.
Vibration, in vigil-sigfeat-v1 units (fusion/features.c): what a bearing
fault does to a good window's features, drawn at random: more power in a
span of resonance bands, a comb of envelope peaks at a made-up defect
frequency and its harmonics, more kurtosis and crest factor; and, on every
window, what does not make a fault: a change of sensor gain and a little
noise.

Everything is drawn from one numpy Generator the caller seeds, so a run
depends only on its seed.
"""
import cv2
import numpy as np
import torch

POWER_BANDS, ENV_BANDS = 64, 32          # fusion/features.c layout
ENV_BAND_HZ = 18.75
RMS, CREST, KURT, BAND_KURT = 96, 97, 98, 99
SIGFEAT_DIM = 100


def tile_box(img):
    """(x0, y0, x1, y1) of the tile in a letterboxed image [H, W]: the
    fill is one flat value, that of the corner (when the tile fills the
    image, the box is the whole image)."""
    h, w = img.shape
    ys, xs = np.nonzero(np.abs(img - img[0, 0]) > 1e-4)
    if len(ys) < 16:
        return 0, 0, w, h
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def surface_mask(rng, h, w, box):
    """One anomaly's mask [H, W] (0 or 1) inside box."""
    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 2), max(y1 - y0, 2)
    m = np.zeros((h, w), np.float32)
    kind = rng.integers(4)
    if kind == 0:
        # Blobs: low-resolution noise blown up and cut at a quantile
        # (DRAEM's Perlin-noise masks, in spirit), from specks to a third
        # of the tile.
        s = int(rng.choice([8, 16, 32]))
        noise = rng.random((max(bh // s, 2), max(bw // s, 2))).astype(np.float32)
        noise = cv2.resize(noise, (bw, bh), interpolation=cv2.INTER_CUBIC)
        cut = np.quantile(noise, rng.uniform(0.75, 0.995))
        m[y0:y0 + bh, x0:x0 + bw] = (noise >= cut)[:h - y0, :w - x0]
    elif kind == 1:
        # A spot, like a blowhole.
        c = (int(rng.integers(x0, x0 + bw)), int(rng.integers(y0, y0 + bh)))
        axes = (int(rng.uniform(1, max(2, bw / 12))), int(rng.uniform(1, max(2, bh / 12))))
        cv2.ellipse(m, c, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    elif kind == 2:
        # A thin line of a few segments, like a crack.
        pts = [(rng.uniform(x0, x0 + bw), rng.uniform(y0, y0 + bh))]
        for _ in range(int(rng.integers(2, 6))):
            step, ang = rng.uniform(3, max(4, bw / 4)), rng.uniform(0, 2 * np.pi)
            pts.append((pts[-1][0] + step * np.cos(ang), pts[-1][1] + step * np.sin(ang)))
        cv2.polylines(m, [np.round(pts).astype(np.int32)], False, 1.0,
                      thickness=int(rng.integers(1, 3)))
    else:
        # A bite out of the tile's edge, like a break or a chipped edge.
        side = rng.integers(4)
        cx = x0 if side == 0 else x1 - 1 if side == 1 else int(rng.integers(x0, x0 + bw))
        cy = y0 if side == 2 else y1 - 1 if side == 3 else int(rng.integers(y0, y0 + bh))
        axes = (int(rng.uniform(2, max(3, bw / 6))), int(rng.uniform(2, max(3, bh / 6))))
        cv2.ellipse(m, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    inside = np.zeros_like(m)
    inside[y0:y1, x0:x1] = 1
    return m * inside


def surface_fill(rng, img, other):
    """What shows through the mask: img [H, W] made darker or brighter,
    shaded by a smooth field, the texture of other (another part) turned a
    quarter and moved, or smoothed noise added (normalised image units)."""
    kind = rng.integers(4)
    if kind == 0:
        return img + rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 1.5)
    if kind == 1:
        field = rng.standard_normal((4, 4)).astype(np.float32)
        field = cv2.resize(field, img.shape[::-1], interpolation=cv2.INTER_CUBIC)
        return img + field * rng.uniform(0.3, 1.5)
    if kind == 2:
        # The surface's grinding marks run one way; another part's
        # texture across them is a departure no good part shows.
        src = other.T if other.shape[0] == other.shape[1] else cv2.resize(
            np.ascontiguousarray(other.T), img.shape[::-1])
        dy, dx = (int(v) for v in rng.integers(-img.shape[0] // 2, img.shape[0] // 2, 2))
        src = np.roll(src, (dy, dx), axis=(0, 1))
        mu = float(other.mean())
        return mu + (src - mu) * rng.uniform(1.0, 2.5) + rng.uniform(-0.5, 0.5)
    noise = rng.standard_normal(img.shape).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), float(rng.uniform(0.5, 2.0)))
    return img + noise * rng.uniform(1.0, 3.0) / max(float(noise.std()), 1e-6)


def add_surface(rng, x, share):
    """Pastes an anomaly into about share of the images x [N, 1, H, W]
    (torch, normalised). Returns the new images, their masks [N, 1, H, W]
    and the labels [N] (1 where something was pasted)."""
    xs = x.numpy().copy()
    n, _, h, w = xs.shape
    masks = np.zeros_like(xs)
    for i in range(n):
        if rng.random() >= share:
            continue
        img = xs[i, 0]
        m = surface_mask(rng, h, w, tile_box(img))
        if m.sum() < 1:
            continue
        src = surface_fill(rng, img, xs[int(rng.integers(n)), 0])
        # Soft edges half the time, so a seam alone does not give the
        # anomaly away; the label is the hard mask.
        soft = (cv2.GaussianBlur(m, (0, 0), float(rng.uniform(0.7, 2.0)))
                if rng.random() < 0.5 else m)
        # Faint ones too (DRAEM draws 0.1 to 1): the real defects a good
        # surface must be told from are often faint.
        beta = rng.uniform(0.15, 1.0)
        xs[i, 0] = img * (1 - beta * soft) + src * beta * soft
        masks[i, 0] = m
    label = (masks.reshape(n, -1).max(axis=1) > 0).astype(np.float32)
    return torch.from_numpy(xs), torch.from_numpy(masks), torch.from_numpy(label)


def vibration_nuisance(rng, out):
    """What changes between good windows without a fault, applied to every
    training vector out [N, 100] in place: the sensor's gain (0.7x to
    1.4x: the power bands shift by twice its log, the RMS by its log, the
    rest not at all, fusion/features.c) and a little noise on every
    feature. One recording of a good bearing varies less than a line's good
    parts do: trained on its first minutes alone, the RMS of its later
    windows (1.5 % higher) looked like a fault."""
    n = len(out)
    gain = rng.uniform(-0.15, 0.15, n).astype(np.float32)
    out[:, :POWER_BANDS] += 2 * gain[:, None]
    out[:, RMS] += gain
    out[:, :POWER_BANDS] += rng.normal(0, 0.05, (n, POWER_BANDS)).astype(np.float32)
    out[:, POWER_BANDS:RMS] += rng.normal(0, 0.1, (n, ENV_BANDS)).astype(np.float32)
    out[:, CREST:] += rng.normal(0, 0.03, (n, SIGFEAT_DIM - CREST)).astype(np.float32)


def add_vibration(rng, s, share):
    """What a bearing fault does to about share of the feature vectors s
    [N, 100] (torch, vigil-sigfeat-v1 units), on top of the nuisance every
    vector gets (vibration_nuisance); at least one effect each. Returns
    the new vectors and the labels [N]."""
    out = s.numpy().copy()
    label = np.zeros(len(out), np.float32)
    if out.shape[1] != SIGFEAT_DIM:
        return s, torch.from_numpy(label)
    vibration_nuisance(rng, out)
    for i in range(len(out)):
        if rng.random() >= share:
            continue
        label[i] = 1
        f = out[i]
        effects = rng.random(3) < 0.6
        if not effects.any():
            effects[rng.integers(3)] = True
        if effects[0]:
            # Impacts ring a structural resonance: a span of bands gains.
            lo = int(rng.integers(8, POWER_BANDS - 4))
            hi = min(POWER_BANDS, lo + int(rng.integers(4, 24)))
            before = np.sum(10.0 ** f[:POWER_BANDS])
            f[lo:hi] += rng.uniform(0.3, 1.5) * np.hanning(hi - lo + 2)[1:-1]
            f[RMS] += 0.5 * np.log10(np.sum(10.0 ** f[:POWER_BANDS]) / before)
        if effects[1]:
            # The envelope repeats at a defect frequency: peaks at it and
            # its harmonics, smaller each time.
            freq, depth = rng.uniform(50, 250), rng.uniform(0.5, 2.5)
            for k in range(1, 8):
                b = int(k * freq / ENV_BAND_HZ)
                if b >= ENV_BANDS:
                    break
                f[POWER_BANDS + b] += depth / k
        if effects[2]:
            # Impulsive: kurtosis and crest factor rise.
            f[KURT] += rng.uniform(0.2, 1.5)
            f[BAND_KURT] += rng.uniform(0.2, 1.5)
            f[CREST] += rng.uniform(0.1, 0.7)
    return torch.from_numpy(out), torch.from_numpy(label)
