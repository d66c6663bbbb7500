#!/usr/bin/python3
"""Trains a Vigil model package: vision, signal and decision ONNX modules
and their manifest.ini (docs/model.md describes the package).

Run with Debian's Python (torch 1.13, onnx, OpenCV 4.6):

    /usr/bin/python3 tools/train.py --manifest DIR/parts.csv --data-root DIR \\
        --features-tool build/tools/vigil-features --out MODEL_DIR --seed 1 \\
        [--val-manifest CSV --val-root DIR] [--epochs N]

Model inputs come from the features tool, i.e. from the same C code vigild
runs, so training and inspection see identical inputs. The three modules are
trained jointly: BCE of the vision head against image_class != free, of the
signal head against vib_class != normal, and of the fused logit against
defect. Results depend only on the data and --seed (deterministic torch
algorithms, fixed thread count). The exported modules are checked by loading
them with OpenCV DNN, the CPU inference path, and comparing with torch; the
held-out figures in the manifest come from the OpenCV outputs.
"""
import argparse
import csv
import datetime
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURES_VERSION = "vigil-sigfeat-v1"
VISION_EMBED = 16
SIGNAL_EMBED = 8
OPSET = 11
VISION_OUTPUT = "vision"
HEATMAP_OUTPUT = "defect_map"   # [vision] heatmap_output of a segmentation package


def write_maps(path, maps):
    """Defect maps [N, 1, H, W] as vigil-eval --heatmaps writes them:
    "VGH1", uint32 N, W, H, then N*H*W float32, little-endian."""
    n, _, h, w = maps.shape
    with open(path, "wb") as f:
        f.write(b"VGH1" + np.array([n, w, h], "<u4").tobytes())
        f.write(np.ascontiguousarray(maps, "<f4").tobytes())


def log(msg):
    print(f"train: {msg}", flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, help="training line manifest (parts.csv)")
    p.add_argument("--data-root", help="folder the manifest's paths are relative to "
                   "(default: the manifest's folder)")
    p.add_argument("--features-tool", required=True, help="path of vigil-features")
    p.add_argument("--out", required=True, help="model package folder to write")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--split", help="train on the manifest rows of this split only (all)")
    p.add_argument("--val-manifest", help="held-out manifest for the [metrics] and calibration")
    p.add_argument("--val-root", help="folder of the held-out manifest's paths")
    p.add_argument("--val-split", help="use the held-out manifest's rows of this split only")
    p.add_argument("--arch", choices=("cnn", "seg", "seg2"), default="cnn",
                   help="vision module: cnn (the synthetic package's) or seg (a segmentation "
                   "network trained with the masks, whose defect map and features feed the "
                   "vision head); seg2: seg with one more dilated layer (dilation 8) for "
                   "large defects")
    p.add_argument("--resize", choices=("stretch", "letterbox"), default="stretch",
                   help="fitting the image to --width x --height (vigil-features --resize, "
                   "[vision] resize): stretch (aspect not kept) or letterbox (aspect kept, "
                   "turned to the input's orientation, border filled)")
    p.add_argument("--balance", type=float, default=0.0,
                   help="draw each epoch's parts with replacement, weight "
                   "count(image_class)^-BALANCE (0: every part once, in random order)")
    p.add_argument("--shift", type=int, default=0,
                   help="augmentation: move each training image (and its mask) by up to "
                   "SHIFT pixels along each axis, edges repeated (0: no shift)")
    p.add_argument("--map-target", choices=("area", "any"), default="area",
                   help="segmentation arch: a defect map cell is a positive target when the "
                   "mask covers more than 10 %% of it (area) or when any of its pixels is "
                   "at least a quarter covered (any: keeps thin cracks' cells)")
    p.add_argument("--focal", type=float, default=0.0,
                   help="focal loss exponent GAMMA for the vision head and the fused output: "
                   "each part's cross-entropy weighted by (1 - p_true)^GAMMA, so hard parts "
                   "(good surfaces scored high, faint defects) weigh more (0: plain BCE)")
    p.add_argument("--frr-target", type=float,
                   help="choose the thresholds on the held-out set for this false-reject "
                   "rate (e.g. 0.01) instead of --reject/--marginal")
    p.add_argument("--marginal-rule", choices=("midway", "tight"), default="midway",
                   help="with --frr-target: place the marginal threshold midway between the "
                   "good parts on either side of the target (midway) or just above the "
                   "highest good part the target does not allow (tight; calibrate())")
    p.add_argument("--scores-out", help="write torch's scores of the held-out parts here "
                   "(CSV, manifest order) to check the C runtime against")
    p.add_argument("--maps-out", help="write torch's defect maps of the held-out parts "
                   "here (segmentation arch; the format of vigil-eval --heatmaps)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=96, help="vision input width")
    p.add_argument("--height", type=int, default=96, help="vision input height")
    p.add_argument("--mean", type=float, default=0.5, help="image normalisation mean")
    p.add_argument("--std", type=float, default=0.25, help="image normalisation std")
    p.add_argument("--window", type=int, default=2048, help="vibration window, samples")
    p.add_argument("--rate", type=float, default=12000, help="vibration sample rate, Hz")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", default="synthetic", help="[package] name")
    p.add_argument("--version", default="synthetic-1", help="[package] version")
    p.add_argument("--reject", type=float, default=0.5, help="reject threshold (probability)")
    p.add_argument("--marginal", type=float, default=0.3, help="marginal threshold")
    a = p.parse_args(argv)
    if a.val_manifest and not a.val_root:
        a.val_root = os.path.dirname(os.path.abspath(a.val_manifest))
    if not a.data_root:
        a.data_root = os.path.dirname(os.path.abspath(a.manifest))
    if not 0 <= a.marginal <= a.reject <= 1:
        p.error("thresholds must satisfy 0 <= marginal <= reject <= 1")
    return a


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


class Vision(nn.Module):
    """Small CNN; global max and mean pooling so that one small defect
    anywhere in the image still reaches the head."""

    def __init__(self):
        super().__init__()
        chans = [1, 8, 16, 32, 32, 32]
        layers = []
        for i in range(5):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU()]
            if i < 4:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(64, 1 + VISION_EMBED)

    def forward(self, x):
        h = self.body(x)
        h = torch.cat([self.max_pool(h), self.avg_pool(h)], dim=1)
        return self.head(torch.flatten(h, 1))


class VisionSeg(nn.Module):
    """Segmentation + decision (the surface-defect literature's design):
    a convolutional encoder makes a defect map at a quarter of the input
    resolution, trained against the masks; the vision head sees the map's
    global max and mean and the encoder features' global max and mean, so
    one small defect anywhere reaches it. Dilated convolutions widen the
    view at the map's resolution (about 60 input pixels) for large
    defects (fray, uneven) without upsampling layers OpenCV 4.6 might not
    import."""

    MAP_STRIDE = 4

    def __init__(self, dilations=(2, 4)):
        super().__init__()

        def block(cin, cout, dilation=1):
            return [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU()]

        dilated = [layer for d in dilations for layer in block(48, 48, d)]
        self.body = nn.Sequential(*block(1, 16), nn.MaxPool2d(2),
                                  *block(16, 32), nn.MaxPool2d(2),
                                  *block(32, 48), *dilated)
        self.seg = nn.Conv2d(48, 1, 1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(48 * 2 + 2, 1 + VISION_EMBED)

    def features(self, x):
        h = self.body(x)
        m = self.seg(h)
        pooled = torch.cat([self.max_pool(h), self.avg_pool(h),
                            self.max_pool(m), self.avg_pool(m)], dim=1)
        return self.head(torch.flatten(pooled, 1)), m

    def forward(self, x):
        return self.features(x)[0]


class VisionWithMap(nn.Module):
    """The exported vision module of a segmentation network: two outputs,
    the vision head's [logit, embedding] and the defect map as
    probabilities (sigmoid), the package's heatmap."""

    def __init__(self, vision):
        super().__init__()
        self.vision = vision

    def forward(self, x):
        v, m = self.vision.features(x)
        return v, torch.sigmoid(m)


class Signal(nn.Module):
    """MLP over the vigil-sigfeat-v1 vector; the training set's feature mean
    and std are part of the model (folded into the first layer on export)."""

    def __init__(self, dim, mean, std):
        super().__init__()
        self.register_buffer("feat_mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("feat_std", torch.tensor(std, dtype=torch.float32))
        self.fc1 = nn.Linear(dim, 64)
        self.fc2 = nn.Linear(64, 32)
        self.out = nn.Linear(32, 1 + SIGNAL_EMBED)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        h = (x - self.feat_mean) / self.feat_std
        h = self.drop(F.relu(self.fc1(h)))
        h = F.relu(self.fc2(h))
        return self.out(h)

    def folded(self):
        """The same function with the normalisation inside fc1."""
        g = SignalExport(self.fc1.in_features)
        with torch.no_grad():
            w = self.fc1.weight / self.feat_std
            g.fc1.weight.copy_(w)
            g.fc1.bias.copy_(self.fc1.bias - w @ self.feat_mean)
            g.fc2.load_state_dict(self.fc2.state_dict())
            g.out.load_state_dict(self.out.state_dict())
        return g.eval()


class SignalExport(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, 64)
        self.fc2 = nn.Linear(64, 32)
        self.out = nn.Linear(32, 1 + SIGNAL_EMBED)

    def forward(self, x):
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Decision(nn.Module):
    """Fuses the two modules' outputs. Dropout on its input keeps it from
    leaning on single embedding components the heads do not back."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(2 + VISION_EMBED + SIGNAL_EMBED, 16)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, vs):
        return self.fc2(F.relu(self.fc1(self.drop(vs))))


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


def focal_bce(logit, target, gamma):
    """Binary cross-entropy, mean over the batch; gamma > 0: each part's
    term weighted by (1 - p_true)^gamma (focal loss, Lin et al. 2017), so
    parts already classified with confidence weigh little and the hard
    ones (a good surface scored high, a faint break) decide the gradient."""
    if gamma <= 0:
        return F.binary_cross_entropy_with_logits(logit, target)
    ce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    p_true = torch.exp(-ce)
    return ((1 - p_true) ** gamma * ce).mean()


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


def augment(x, m, gen, shift=0):
    """Flips, quarter turns (square inputs), shifts (shift > 0) and
    brightness/contrast changes of the normalised image batch, the same
    flips, turns and shifts of the masks m (may be None); the surface has no
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
    gain = 1 + 0.15 * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    shift = 0.3 * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    return x * gain + shift, m


def predict(vision, signal, decision, images, signals, batch=256):
    vision.eval(), signal.eval(), decision.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            v = vision(torch.from_numpy(images[i:i + batch]))
            s = signal(torch.from_numpy(signals[i:i + batch]))
            d = decision(torch.cat([v, s], dim=1))
            outs.append(torch.cat([v[:, :1], s[:, :1], d], dim=1))
    return torch.cat(outs).numpy()


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def auroc(pos, neg):
    """Probability that a positive scores above a negative (ties one half)."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    pos, neg = np.asarray(pos, np.float64), np.sort(np.asarray(neg, np.float64))
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float(np.mean((below + 0.5 * ties) / len(neg)))


def figures(logits, surf, vib, defect, reject, marginal):
    """Escapes: defective parts accepted (p < marginal). False rejects: good
    parts rejected or marginal (p >= marginal), as vigil-sim counts them."""
    pv, ps, p = sigmoid(logits[:, 0]), sigmoid(logits[:, 1]), sigmoid(logits[:, 2])
    d = defect > 0.5
    escapes = int(np.sum(d & (p < marginal)))
    false_rejects = int(np.sum(~d & (p >= marginal)))
    return {
        "parts": len(p),
        "defective": int(d.sum()),
        "accuracy": float(np.mean((p >= reject) == d)),
        "escapes": escapes,
        "false_rejects": false_rejects,
        "escape_rate": escapes / max(int(d.sum()), 1),
        "false_reject_rate": false_rejects / max(int((~d).sum()), 1),
        "vision_accuracy": float(np.mean((pv >= 0.5) == (surf > 0.5))),
        "signal_accuracy": float(np.mean((ps >= 0.5) == (vib > 0.5))),
    }


MARGIN_LOGIT = 0.1   # tight rule: marginal this far above the good part it clears


def calibrate(fused_logits, defect, frr_target, rule="midway"):
    """Two thresholds from the held-out set's good parts, sorted highest
    first; k = floor(frr_target * good parts) of them may be rejected or
    marginal. marginal, under rule
      midway: midway (in logit) between the (k+1)-th and the k-th highest
              good part (real-v1 to real-v3);
      tight:  MARGIN_LOGIT above the (k+1)-th highest good part (never
              above midway): the lowest threshold that meets the target on
              the held-out set, the one vigil-eval's escape rate at 1 %
              false rejects uses, so the operating point escapes no more
              than that figure. The gap up to the k-th good part holds no
              good part, only defective ones; midway accepts those.
    Under both, at most k held-out good parts are at or above marginal.
    reject: midway between the highest good part and 1 logit above it,
    and never below p = 0.5, so that no held-out good part is rejected
    outright and the parts in between go to a manual check."""
    good = np.sort(fused_logits[defect < 0.5].astype(np.float64))[::-1]
    if len(good) == 0:
        return 0.5, 0.5
    k = int(np.floor(frr_target * len(good)))
    if k >= len(good):
        marginal = good[-1] - 0.5
    elif rule == "tight":
        gap = good[k - 1] - good[k] if k > 0 else 1.0
        marginal = good[k] + min(MARGIN_LOGIT, gap / 2)
    elif k == 0:
        marginal = good[0] + 0.5
    else:
        marginal = (good[k] + good[k - 1]) / 2
    reject = max(good[0] + 0.5, 0.0, marginal)
    return float(sigmoid(reject)), float(sigmoid(marginal))


def export_onnx(module, example, path, in_name, out_names):
    module.eval()
    torch.onnx.export(module, example, path, opset_version=OPSET, input_names=[in_name],
                      output_names=out_names, do_constant_folding=True,
                      training=torch.onnx.TrainingMode.EVAL)
    import onnx
    onnx.checker.check_model(onnx.load(path))


def opencv_forward(nets, img, sig, with_map=False):
    """The three modules chained as vigild chains them; with_map: also the
    vision module's defect map (None without)."""
    vnet, snet, dnet = nets
    vnet.setInput(img)
    if with_map:
        v, hm = vnet.forward([VISION_OUTPUT, HEATMAP_OUTPUT])
        v = v.reshape(1, -1)
    else:
        v, hm = vnet.forward().reshape(1, -1), None
    snet.setInput(sig)
    s = snet.forward().reshape(1, -1)
    dnet.setInput(np.concatenate([v, s], axis=1).astype(np.float32))
    d = dnet.forward().reshape(1, -1)
    return v, s, d, hm


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def main(argv):
    a = parse_args(argv)
    t_start = time.time()
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)

    seg = a.arch in ("seg", "seg2")
    surf, vib, defect, train_classes = read_labels(a.manifest, a.split)
    with tempfile.TemporaryDirectory(prefix="vigil-train-") as tmp:
        images, signals, masks = compute_features(a, a.manifest, a.data_root, a.split,
                                                  os.path.join(tmp, "train.vgf"), masks=seg)
        if len(images) != len(surf):
            sys.exit(f"train: features for {len(images)} parts, manifest has {len(surf)}")
        val = None
        if a.val_manifest:
            vs, vv, vd, val_classes = read_labels(a.val_manifest, a.val_split)
            vi, vsig, _ = compute_features(a, a.val_manifest, a.val_root, a.val_split,
                                           os.path.join(tmp, "val.vgf"))
            val = (vi, vsig, vs, vv, vd)
    n, sig_dim = signals.shape
    log(f"{n} training parts: {int(surf.sum())} surface defects, {int(vib.sum())} "
        f"bearing faults, {int(defect.sum())} defective; image {a.width}x{a.height}, "
        f"{sig_dim} signal features")

    mean = signals.mean(axis=0)
    std = np.maximum(signals.std(axis=0), 1e-3)
    vision = (VisionSeg((2, 4, 8)) if a.arch == "seg2" else VisionSeg()) if seg else Vision()
    signal, decision = Signal(sig_dim, mean, std), Decision()
    if seg:
        # Defect map targets (defect_map_target, --map-target), made per
        # batch from the augmented masks, so shifts by any number of pixels
        # stay aligned with the image.
        cell = VisionSeg.MAP_STRIDE
        full_masks = torch.from_numpy(masks)

        def map_target(m):
            return defect_map_target(m, cell, a.map_target)
        every = map_target(full_masks)
        log(f"defect map {every.shape[3]}x{every.shape[2]}: "
            f"{float(every.mean()) * 100:.2f} % of cells defective")
    params = list(vision.parameters()) + list(signal.parameters()) + list(decision.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-4)
    steps = a.epochs * ((n + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(a.seed)
    x_img, x_sig = torch.from_numpy(images), torch.from_numpy(signals)
    draw = None
    if a.balance:
        # Rare surface classes drawn more often: weight count^-balance.
        names = [c[0] for c in train_classes]
        count = {k: names.count(k) for k in set(names)}
        draw = torch.tensor([count[k] ** -a.balance for k in names], dtype=torch.float64)
        share = {k: float(draw[[i for i, x in enumerate(names) if x == k]].sum() / draw.sum())
                 for k in sorted(count)}
        log("balanced draw, share of each epoch by image_class: " +
            ", ".join(f"{k} {100 * v:.1f} %" for k, v in share.items()))
    y = torch.from_numpy(np.stack([surf, vib, defect], axis=1))

    for epoch in range(1, a.epochs + 1):
        vision.train(), signal.train(), decision.train()
        order = (torch.multinomial(draw, n, replacement=True, generator=gen)
                 if draw is not None else torch.randperm(n, generator=gen))
        total, t0 = 0.0, time.time()
        for i in range(0, n, a.batch):
            idx = order[i:i + a.batch]
            xb, mb = augment(x_img[idx], full_masks[idx] if seg else None, gen, a.shift)
            if seg:
                mb = map_target(mb)
            if seg:
                v, m = vision.features(xb)
            else:
                v = vision(xb)
            s = signal(x_sig[idx])
            d = decision(torch.cat([v, s], dim=1))
            yb = y[idx]
            loss = (focal_bce(v[:, 0], yb[:, 0], a.focal) +
                    F.binary_cross_entropy_with_logits(s[:, 0], yb[:, 1]) +
                    focal_bce(d[:, 0], yb[:, 2], a.focal))
            if seg:
                loss = loss + F.binary_cross_entropy_with_logits(
                    m, mb, pos_weight=torch.tensor(5.0))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        msg = f"epoch {epoch}/{a.epochs} loss {total / n:.4f} ({time.time() - t0:.1f} s)"
        if val and (epoch % 5 == 0 or epoch == a.epochs):
            f = figures(predict(vision, signal, decision, val[0], val[1]), *val[2:],
                        a.reject, a.marginal)
            msg += (f"; held-out accuracy {f['accuracy']:.4f} vision {f['vision_accuracy']:.4f}"
                    f" signal {f['signal_accuracy']:.4f} escapes {f['escapes']}"
                    f" false rejects {f['false_rejects']}")
            if a.balance or a.resize != "stretch" or a.arch == "seg2":
                lg = predict(vision, signal, decision, val[0], val[1])
                good, sd = val[4] < 0.5, val[2] > 0.5
                msg += (f"; AUROC fused {auroc(lg[val[4] > 0.5, 2], lg[good, 2]):.4f}"
                        f" vision {auroc(lg[sd, 0], lg[good, 0]):.4f}")
        log(msg)

    # Export. The signal module carries its normalisation in its first layer.
    vision.eval(), signal.eval(), decision.eval()
    sig_export = signal.folded()
    files = {"vision": "vision.onnx", "signal": "signal.onnx", "decision": "decision.onnx"}
    paths = {k: os.path.join(a.out, v) for k, v in files.items()}
    if seg:
        export_onnx(VisionWithMap(vision), torch.zeros(1, 1, a.height, a.width),
                    paths["vision"], "image", [VISION_OUTPUT, HEATMAP_OUTPUT])
    else:
        export_onnx(vision, torch.zeros(1, 1, a.height, a.width), paths["vision"], "image",
                    [VISION_OUTPUT])
    export_onnx(sig_export, torch.zeros(1, sig_dim), paths["signal"], "features", ["signal"])
    export_onnx(decision, torch.zeros(1, 2 + VISION_EMBED + SIGNAL_EMBED), paths["decision"],
                "vision_signal", ["defect"])

    import cv2
    nets = tuple(cv2.dnn.readNetFromONNX(paths[k]) for k in ("vision", "signal", "decision"))
    for net in nets:
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    check_img, check_sig = (val[0], val[1]) if val else (images, signals)
    k = min(len(check_img), 64)
    with torch.no_grad():
        tv, tmap = vision.features(torch.from_numpy(check_img[:k])) if seg else \
            (vision(torch.from_numpy(check_img[:k])), None)
        tv = tv.numpy()
        tmap = torch.sigmoid(tmap).numpy() if seg else None
        ts = signal(torch.from_numpy(check_sig[:k])).numpy()
        ts_folded = sig_export(torch.from_numpy(check_sig[:k])).numpy()
        td = decision(torch.cat([torch.from_numpy(tv), torch.from_numpy(ts)], 1)).numpy()
    diff = [0.0, 0.0, 0.0, 0.0]
    for i in range(k):
        v, s, d, hm = opencv_forward(nets, check_img[i:i + 1], check_sig[i:i + 1], seg)
        diff[0] = max(diff[0], float(np.abs(v - tv[i]).max()))
        diff[1] = max(diff[1], float(np.abs(s - ts[i]).max()))
        diff[2] = max(diff[2], float(np.abs(d - td[i]).max()))
        if seg:
            diff[3] = max(diff[3], float(np.abs(hm - tmap[i]).max()))
    log(f"OpenCV DNN {cv2.__version__} against torch on {k} parts, max abs diff: "
        f"vision {diff[0]:.2e} signal {diff[1]:.2e} decision {diff[2]:.2e} "
        + (f"defect map {diff[3]:.2e} " if seg else "") +
        f"(folded signal layer vs torch: {np.abs(ts_folded - ts).max():.2e})")
    if max(diff) > 1e-3:
        sys.exit("train: the exported modules do not match torch under OpenCV DNN")

    metrics = None
    if val:
        # Held-out figures from the modules as vigild runs them.
        logits = np.zeros((len(val[0]), 3), np.float32)
        for i in range(len(val[0])):
            v, s, d, _ = opencv_forward(nets, val[0][i:i + 1], val[1][i:i + 1], seg)
            logits[i] = (v[0, 0], s[0, 0], d[0, 0])
        if a.frr_target is not None:
            a.reject, a.marginal = calibrate(logits[:, 2], val[4], a.frr_target,
                                             a.marginal_rule)
            log(f"thresholds for {100 * a.frr_target:g} % false rejects on the held-out set: "
                f"reject {a.reject:.6g}, marginal {a.marginal:.6g}")
        if a.scores_out:
            torch_logits = predict(vision, signal, decision, val[0], val[1])
            with open(a.scores_out, "w") as f:
                f.write("part_id,score,vision_score,signal_score\n")
                for c, t in zip(val_classes, sigmoid(torch_logits.astype(np.float64))):
                    f.write(f"{c[2]},{t[2]:.7g},{t[0]:.7g},{t[1]:.7g}\n")
            log(f"torch scores of the held-out parts: {a.scores_out}")
        if a.maps_out and seg:
            with torch.no_grad():
                maps = [torch.sigmoid(vision.features(torch.from_numpy(val[0][i:i + 64]))[1])
                        for i in range(0, len(val[0]), 64)]
            write_maps(a.maps_out, torch.cat(maps).numpy())
            log(f"torch defect maps of the held-out parts: {a.maps_out}")
        metrics = figures(logits, *val[2:], a.reject, a.marginal)
        log(f"held-out (OpenCV DNN): {metrics['parts']} parts, {metrics['defective']} "
            f"defective; accuracy {metrics['accuracy']:.4f}; escapes {metrics['escapes']} "
            f"({100 * metrics['escape_rate']:.2f} % of defective); false rejects "
            f"{metrics['false_rejects']} ({100 * metrics['false_reject_rate']:.2f} % of good); "
            f"vision {metrics['vision_accuracy']:.4f}, signal {metrics['signal_accuracy']:.4f}")
        p = sigmoid(logits[:, 2])
        for col in (0, 1):
            names = sorted({c[col] for c in val_classes})
            parts = []
            for name in names:
                sel = np.array([c[col] == name for c in val_classes])
                if sel.any():
                    head = sigmoid(logits[sel, col]) >= 0.5
                    wrong = int(np.sum(head != (name not in ("free", "normal"))))
                    parts.append(f"{name} {wrong}/{int(sel.sum())}")
            log(("vision" if col == 0 else "signal") + " head errors by class: " +
                ", ".join(parts))
        bad = [i for i in range(len(p)) if (p[i] >= a.marginal) != (val[4][i] > 0.5)]
        log("wrong verdicts (part index, image_class, vib_class, p): " +
            "; ".join(f"{i} {val_classes[i][0]} {val_classes[i][1]} {p[i]:.2f}" for i in bad[:40]))

    heatmap = None
    if seg:
        heatmap = (a.width // VisionSeg.MAP_STRIDE, a.height // VisionSeg.MAP_STRIDE)
        if tmap.shape[2:] != (heatmap[1], heatmap[0]):
            sys.exit(f"train: defect map is {tmap.shape[3]}x{tmap.shape[2]}, expected "
                     f"{heatmap[0]}x{heatmap[1]} (input not a multiple of "
                     f"{VisionSeg.MAP_STRIDE})")
    write_manifest(a, paths, files, sig_dim, metrics, argv, heatmap)
    size = sum(os.path.getsize(p) for p in paths.values())
    log(f"wrote {a.out} ({size / 1024:.0f} KiB of modules) in {time.time() - t_start:.0f} s")


def threshold_text(p, a):
    """A threshold as vigild reads it: calibrated ones as the exact decimal
    of their float32 (inference keeps thresholds in float and checks
    marginal <= reject against that float), given ones as typed."""
    if a.frr_target is None:
        return f"{p:g}"
    return repr(float(np.float32(p)))


def write_manifest(a, paths, files, sig_dim, metrics, argv, heatmap=None,
                   vision_out=1 + VISION_EMBED, signal_out=1 + SIGNAL_EMBED,
                   tool="tools/train.py", notes=()):
    """manifest.ini of the package in a.out; tool and argv make its
    trained_by line, notes are comment lines under [package]."""
    cmd = tool + " " + " ".join(shlex.quote(x) for x in argv)
    lines = [
        f"# Vigil model package (docs/model.md). Written by {tool}.",
        "[package]",
        "format=1",
        f"name={a.name}",
        f"version={a.version}",
        f"created={datetime.date.today().isoformat()}",
        f"trained_by={cmd}",
    ] + [f"# {n}" for n in notes] + [
        "",
        "[vision]",
        f"file={files['vision']}",
        f"sha256={sha256(paths['vision'])}",
        f"input_width={a.width}",
        f"input_height={a.height}",
    ] + ([f"resize={a.resize}"] if a.resize != "stretch" else []) + [
        f"mean={a.mean:g}",
        f"std={a.std:g}",
        f"output_dim={vision_out}",
    ] + ([f"heatmap_output={HEATMAP_OUTPUT}", f"heatmap_width={heatmap[0]}",
          f"heatmap_height={heatmap[1]}"] if heatmap else []) + [
        "",
        "[signal]",
        f"file={files['signal']}",
        f"sha256={sha256(paths['signal'])}",
        f"features={FEATURES_VERSION}",
        f"rate_hz={a.rate:g}",
        f"window={a.window}",
        f"input_dim={sig_dim}",
        f"output_dim={signal_out}",
        "",
        "[decision]",
        f"file={files['decision']}",
        f"sha256={sha256(paths['decision'])}",
        f"input_dim={vision_out + signal_out}",
        "output_dim=1",
        "",
        "# Sigmoid probabilities: p >= reject rejects, marginal <= p < reject is",
        "# marginal; vision and signal flag the modality that found the defect.",
    ] + ([f"# Chosen on {a.val_manifest} (split {a.val_split or 'all'}) for a false-reject "
          f"target of {100 * a.frr_target:g} %, marginal rule {a.marginal_rule} "
          "(tools/train.py calibrate())."]
         if a.frr_target is not None and metrics else []) + [
        "[thresholds]",
        f"reject={threshold_text(a.reject, a)}",
        f"marginal={threshold_text(min(a.marginal, a.reject), a)}",
        "vision=0.5",
        "signal=0.5",
        "",
    ]
    if metrics:
        lines += [
            f"# Held-out set {a.val_manifest}, run through OpenCV DNN: accuracy is",
            "# (p >= reject) == defect; escape rate is defective parts accepted",
            "# (p < marginal) over defective parts; false reject rate is good parts",
            "# rejected or marginal over good parts.",
            f"# Defective parts: {metrics['defective']}; escapes: {metrics['escapes']}; "
            f"false rejects: {metrics['false_rejects']}; vision head accuracy "
            f"{metrics['vision_accuracy']:.4f}, signal head {metrics['signal_accuracy']:.4f}.",
            "[metrics]",
            f"heldout_parts={metrics['parts']}",
            f"heldout_accuracy={metrics['accuracy']:.4f}",
            f"heldout_escape_rate={metrics['escape_rate']:.4f}",
            f"heldout_false_reject_rate={metrics['false_reject_rate']:.4f}",
        ]
    else:
        lines += ["# No held-out set was given.", "[metrics]", "heldout_parts=0"]
    with open(os.path.join(a.out, "manifest.ini"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
