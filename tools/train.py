#!/usr/bin/python3
"""Trains a Vigil model package: vision, signal and decision ONNX modules
and their manifest.ini (docs/model.md describes the package).

Run with Debian's Python (torch 1.13, onnx, OpenCV 4.6):

    /usr/bin/python3 tools/train.py --manifest DIR/parts.csv --data-root DIR \\
        --features-tool build/tools/vigil-features --out MODEL_DIR --seed 1 \\
        [--val-manifest CSV --val-root DIR] [--epochs N]

--manifest and --data-root repeat, paired in order, to train on several
sets at once (the original training set and the line's export, each in
its own folder); --val-manifest and --val-root likewise. With more than
one manifest in a set, each part id is prefixed with its manifest's place,
"1:17", "2:L40-17", so the ids of two sets never collide.

Model inputs come from the features tool, i.e. from the same C code vigild
runs, so training and inspection see identical inputs. The three modules are
trained jointly: BCE of the vision head against image_class != free, of the
signal head against vib_class != normal, and of the fused logit against
defect. Results depend only on the data and --seed (deterministic torch
algorithms, fixed thread count). The exported modules are checked by loading
them with OpenCV DNN, the CPU inference path, and comparing with torch; the
held-out figures in the manifest come from the OpenCV outputs.

This file is the command line and the run's flow; the pieces sit beside
it: train_data.py (labels, features, map target, augmentation),
train_model.py (the networks, the loss) and train_package.py (export,
OpenCV check, thresholds and figures, manifest.ini).
"""
import argparse
import collections
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

# The modules beside this file, wherever it is run from or loaded by path
# (tests/test_train_parts.py, tools/ensemble.py).
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from train_anomaly import add_surface, add_vibration  # noqa: E402
from train_data import (augment, compute_features, defect_map_target,  # noqa: E402
                        log, read_labels)
from train_model import (Decision, Signal, Vision, VisionSeg,  # noqa: E402
                         focal_bce, predict)
from train_package import (MARGIN_LOGIT, VISION_OUTPUT,  # noqa: E402
                           auroc, calibrate, check_opencv, export_modules, figures,
                           metrics_lines, opencv_forward, rate_upper_bound, sha256, sigmoid,
                           teacher_outputs, threshold_lines, write_manifest, write_maps)

# What tools/ensemble.py and tests/test_train_parts.py use through
# "import train"; the names this file does not use itself are kept here
# so that they keep working.
__all__ = ["MARGIN_LOGIT", "VISION_OUTPUT", "auroc", "calibrate",
           "compute_features", "defect_map_target", "figures", "focal_bce", "metrics_lines",
           "opencv_forward", "rate_upper_bound", "read_labels", "sha256", "sigmoid",
           "threshold_lines", "write_manifest"]

# --good-only's brightness and contrast augmentation (augment()'s gain and
# offset), wider than the supervised recipe's: the good tiles range from
# dark to bright, and with the default a bright good tile scored as an
# anomaly (its whole texture stronger than the training tiles').
GOOD_ONLY_PHOTOMETRIC = (0.5, 1.0)

# The training set as read: model inputs and labels, in manifest order.
TrainSet = collections.namedtuple(
    "TrainSet", "images signals masks surf vib defect classes")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, action="append",
                   help="training line manifest (parts.csv); repeat to train on several")
    p.add_argument("--data-root", action="append",
                   help="folder the manifest's paths are relative to (default: the "
                   "manifest's folder); with several --manifest, one each, in their order")
    p.add_argument("--features-tool", required=True, help="path of vigil-features")
    p.add_argument("--out", required=True, help="model package folder to write")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--split", help="train on the manifest rows of this split only (all)")
    p.add_argument("--val-manifest", action="append",
                   help="held-out manifest for the [metrics] and calibration; repeatable")
    p.add_argument("--val-root", action="append",
                   help="folder of the held-out manifest's paths; with several "
                   "--val-manifest, one each, in their order")
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
    p.add_argument("--marginal-budget", type=float,
                   help="with --frr-target: lower the reject threshold until at most this "
                   "share of the held-out parts (e.g. 0.04) is marginal, sent to a manual "
                   "check; the parts above are rejected outright (calibrate())")
    p.add_argument("--teacher", help="distil this model package (e.g. a seed ensemble from "
                   "tools/ensemble.py, same input size) into the one network trained here: "
                   "its vision and fused probabilities and its defect map on the training "
                   "parts become soft targets beside the labels")
    p.add_argument("--distil", type=float, default=0.5,
                   help="with --teacher: the soft targets' share of the vision, fused and "
                   "map losses (the labels keep the rest)")
    p.add_argument("--good-only", action="store_true",
                   help="a line without defect examples (issue 21): train on the good parts "
                   "alone (defect 0; the rest are left out), with synthetic anomalies pasted "
                   "into their images and vibration features (tools/train_anomaly.py), and "
                   "choose the thresholds on the held-out set's good parts alone; the "
                   "package's vision score is an anomaly score ([vision] score=anomaly). "
                   "Needs --arch seg or seg2")
    p.add_argument("--anomaly-share", type=float, default=0.5,
                   help="with --good-only: the share of each batch's images, and separately "
                   "of its vibration windows, given a synthetic anomaly")
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
    a.train_sets = paired_roots(p, a.manifest, a.data_root, "--manifest", "--data-root")
    a.val_sets = paired_roots(p, a.val_manifest, a.val_root, "--val-manifest", "--val-root")
    # What the package's manifest and tools/ensemble.py print as the sets.
    a.manifest = " + ".join(m for m, _ in a.train_sets)
    a.val_manifest = " + ".join(m for m, _ in a.val_sets) or None
    if a.marginal_budget is not None and (a.frr_target is None or
                                          not 0 <= a.marginal_budget <= 1):
        p.error("--marginal-budget needs --frr-target and a share between 0 and 1")
    if a.good_only and (a.arch == "cnn" or a.teacher or a.balance):
        p.error("--good-only needs --arch seg or seg2 (the anomaly map) and takes neither "
                "--teacher nor --balance (there are no defect labels to use)")
    if not 0 < a.anomaly_share < 1:
        p.error("--anomaly-share must be between 0 and 1")
    if not 0 <= a.distil <= 1:
        p.error("--distil must be between 0 and 1")
    if not 0 <= a.marginal <= a.reject <= 1:
        p.error("thresholds must satisfy 0 <= marginal <= reject <= 1")
    return a


def paired_roots(p, manifests, roots, m_flag, r_flag):
    """[(manifest, data root)]: roots paired with manifests in order, each
    defaulting to its manifest's folder when no root is given at all."""
    manifests, roots = manifests or [], roots or []
    if roots and len(roots) != len(manifests):
        p.error(f"{len(manifests)} {m_flag} but {len(roots)} {r_flag}: give one {r_flag} "
                f"per {m_flag}, in the same order (or none: each manifest's folder)")
    return [(m, roots[i] if roots else os.path.dirname(os.path.abspath(m)))
            for i, m in enumerate(manifests)]


def read_sets(a, sets, split, tmp, name, masks=False):
    """Labels and model inputs of every (manifest, root) in sets, joined in
    order: (images, signals, masks or None, surf, vib, defect, classes). Part
    ids are prefixed "K:" (K = the manifest's place, from 1) when there is
    more than one manifest, as two sets may number their parts alike."""
    parts = []
    for k, (manifest, root) in enumerate(sets, start=1):
        surf, vib, defect, classes = read_labels(manifest, split)
        images, signals, m = compute_features(a, manifest, root, split,
                                              os.path.join(tmp, f"{name}-{k}.vgf"), masks=masks)
        if len(images) != len(surf):
            sys.exit(f"train: features for {len(images)} parts, {manifest} has {len(surf)}")
        if len(sets) > 1:
            classes = [(c[0], c[1], f"{k}:{c[2]}") for c in classes]
            log(f"{manifest} (data root {root}): {len(surf)} parts")
        parts.append((images, signals, m, surf, vib, defect, classes))
    images, signals, m, surf, vib, defect, classes = zip(*parts)
    return (np.concatenate(images), np.concatenate(signals),
            np.concatenate(m) if masks else None, np.concatenate(surf), np.concatenate(vib),
            np.concatenate(defect), [c for cs in classes for c in cs])


def load_sets(a, seg):
    """The training set (with masks for a segmentation network) and the
    held-out set as (images, signals, surf, vib, defect) with its classes,
    (None, None) without one."""
    val, val_classes = None, None
    with tempfile.TemporaryDirectory(prefix="vigil-train-") as tmp:
        images, signals, masks, surf, vib, defect, train_classes = read_sets(
            a, a.train_sets, a.split, tmp, "train", masks=seg)
        if a.val_sets:
            vi, vsig, _, vs, vv, vd, val_classes = read_sets(a, a.val_sets, a.val_split, tmp,
                                                             "val")
            val = (vi, vsig, vs, vv, vd)
    t = TrainSet(images, signals, masks, surf, vib, defect, train_classes)
    if a.good_only:
        keep = defect < 0.5
        log(f"good-only: training on the {int(keep.sum())} good parts of {len(defect)}"
            + (f"; the {int((~keep).sum())} defective ones are left out" if not keep.all()
               else ""))
        if not keep.any():
            sys.exit("train: --good-only: the training set has no good part (defect 0)")
        t = TrainSet(*(v[keep] for v in t[:6]),
                     [c for c, k in zip(train_classes, keep) if k])
    return t, val, val_classes


def fit(a, seg, t, val, teacher=None):
    """Trains the three modules jointly on t (a TrainSet), logging each
    epoch and, every fifth, the held-out figures. teacher (--teacher):
    the teacher's (vision logits, fused logits, defect maps) of t's parts,
    soft targets that take a.distil of each loss but the signal head's.
    Returns the vision, signal and decision modules."""
    images, signals, masks, surf, vib, defect, train_classes = t
    n, sig_dim = signals.shape
    log(f"{n} training parts: {int(surf.sum())} surface defects, {int(vib.sum())} "
        f"bearing faults, {int(defect.sum())} defective; image {a.width}x{a.height}, "
        f"{sig_dim} signal features")

    mean = signals.mean(axis=0)
    # Good-only: the features' spread over one good recording can be tiny
    # (RMS 0.007 in log10); the nuisance train_anomaly adds is larger.
    std = np.maximum(signals.std(axis=0), 0.05 if a.good_only else 1e-3)
    vision = (VisionSeg((2, 4, 8)) if a.arch == "seg2" else VisionSeg()) if seg else Vision()
    signal, decision = Signal(sig_dim, mean, std), Decision()
    if seg:
        # Defect map targets (defect_map_target, --map-target), made per
        # batch from the augmented masks, so shifts by any number of pixels
        # stay aligned with the image.
        cell = VisionSeg.MAP_STRIDE
        full_masks = torch.from_numpy(masks)
        if teacher is not None:
            # The teacher's map, blown up to input pixels, rides along as a
            # second mask channel, so every flip and shift moves it with the
            # image; it is pooled back to cells per batch.
            up = F.interpolate(torch.from_numpy(teacher[2]), scale_factor=cell, mode="nearest")
            full_masks = torch.cat([full_masks, up], dim=1)

        def map_target(m):
            return defect_map_target(m[:, :1], cell, a.map_target)
        every = map_target(full_masks)
        log(f"defect map {every.shape[3]}x{every.shape[2]}: "
            f"{float(every.mean()) * 100:.2f} % of cells defective")
    params = list(vision.parameters()) + list(signal.parameters()) + list(decision.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-4)
    steps = a.epochs * ((n + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(a.seed)
    # Synthetic anomalies (--good-only) come from their own generator, so
    # the draw of batches and augmentations stays that of the seed.
    rng = np.random.default_rng(a.seed) if a.good_only else None
    photometric = GOOD_ONLY_PHOTOMETRIC if a.good_only else ()   # () : augment()'s own
    if a.good_only:
        log(f"good-only: a synthetic anomaly in {100 * a.anomaly_share:g} % of the images "
            f"and, apart, of the vibration windows (tools/train_anomaly.py)")
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
    w = a.distil if teacher is not None else 0.0
    if teacher is not None:
        soft = torch.from_numpy(sigmoid(np.stack([teacher[0], teacher[1]], axis=1)
                                        .astype(np.float64)).astype(np.float32))
        log(f"distilling {a.teacher}: soft targets take {w:g} of the vision, fused and map "
            f"losses")

    for epoch in range(1, a.epochs + 1):
        vision.train(), signal.train(), decision.train()
        order = (torch.multinomial(draw, n, replacement=True, generator=gen)
                 if draw is not None else torch.randperm(n, generator=gen))
        total, t0 = 0.0, time.time()
        for i in range(0, n, a.batch):
            idx = order[i:i + a.batch]
            xb, mb = augment(x_img[idx], full_masks[idx] if seg else None, gen, a.shift,
                             *photometric)
            sb_in, yb = x_sig[idx], y[idx]
            if a.good_only:
                xb, mb, ls = add_surface(rng, xb, a.anomaly_share)
                sb_in, lv = add_vibration(rng, sb_in, a.anomaly_share)
                yb = torch.stack([ls, lv, torch.maximum(ls, lv)], dim=1)
            if seg:
                mb, tmb = map_target(mb), (F.avg_pool2d(mb[:, 1:], cell) if w else None)
            if seg:
                v, m = vision.features(xb)
            else:
                v = vision(xb)
            s = signal(sb_in)
            d = decision(torch.cat([v, s], dim=1))
            loss = ((1 - w) * (focal_bce(v[:, 0], yb[:, 0], a.focal) +
                               focal_bce(d[:, 0], yb[:, 2], a.focal)) +
                    F.binary_cross_entropy_with_logits(s[:, 0], yb[:, 1]))
            if seg:
                loss = loss + (1 - w) * F.binary_cross_entropy_with_logits(
                    m, mb, pos_weight=torch.tensor(5.0))
            if w:
                sb = soft[idx]
                loss = loss + w * (F.binary_cross_entropy_with_logits(v[:, 0], sb[:, 0]) +
                                   F.binary_cross_entropy_with_logits(d[:, 0], sb[:, 1]))
                if seg:
                    loss = loss + w * F.binary_cross_entropy_with_logits(
                        m, tmb, pos_weight=torch.tensor(5.0))
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
            if a.balance or a.resize != "stretch" or a.arch == "seg2" or a.good_only:
                lg = predict(vision, signal, decision, val[0], val[1])
                good, sd = val[4] < 0.5, val[2] > 0.5
                msg += (f"; AUROC fused {auroc(lg[val[4] > 0.5, 2], lg[good, 2]):.4f}"
                        f" vision {auroc(lg[sd, 0], lg[good, 0]):.4f}")
                if a.good_only:
                    msg += f" signal {auroc(lg[val[3] > 0.5, 1], lg[good, 1]):.4f}"
        log(msg)
    return vision, signal, decision


def report_heldout(a, nets, vision, signal, decision, val, val_classes, seg):
    """The held-out figures from the modules as vigild runs them (the
    OpenCV nets); with --frr-target, first chooses a.reject and a.marginal
    on them. Writes --scores-out and --maps-out, logs the figures, errors
    by class and wrong verdicts, and returns the figures."""
    logits = np.zeros((len(val[0]), 3), np.float32)
    for i in range(len(val[0])):
        v, s, d, _ = opencv_forward(nets, val[0][i:i + 1], val[1][i:i + 1], seg)
        logits[i] = (v[0, 0], s[0, 0], d[0, 0])
    if a.frr_target is not None:
        # A good-only line has no defects to calibrate on: its thresholds
        # come from the good held-out parts alone, even where defective
        # ones are there to report figures on.
        a.reject, a.marginal = calibrate(logits[:, 2], val[4], a.frr_target, a.marginal_rule,
                                         a.marginal_budget, a.good_only)
        log(f"thresholds for {100 * a.frr_target:g} % false rejects on the held-out set"
            + (f"'s {int((val[4] < 0.5).sum())} good parts" if a.good_only else "") +
            f": reject {a.reject:.6g}, marginal {a.marginal:.6g}")
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
        f"{metrics['false_rejects']} ({100 * metrics['false_reject_rate']:.2f} % of good, at "
        f"most {100 * metrics['false_reject_upper95']:.2f} % on unseen good parts with 95 % "
        f"confidence); marginal {100 * metrics['marginal_rate']:.2f} % of the parts; "
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
    return metrics


def main(argv):
    a = parse_args(argv)
    t_start = time.time()
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)

    seg = a.arch in ("seg", "seg2")
    t, val, val_classes = load_sets(a, seg)
    teacher = teacher_outputs(a, a.teacher, t, seg) if a.teacher else None
    vision, signal, decision = fit(a, seg, t, val, teacher)
    sig_dim = t.signals.shape[1]

    vision.eval(), signal.eval(), decision.eval()
    files, paths, sig_export = export_modules(a, vision, signal, decision, sig_dim, seg)
    check_img, check_sig = (val[0], val[1]) if val else (t.images, t.signals)
    nets, tmap = check_opencv(paths, vision, signal, sig_export, decision,
                              check_img, check_sig, seg)
    metrics = (report_heldout(a, nets, vision, signal, decision, val, val_classes, seg)
               if val else None)

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


if __name__ == "__main__":
    main(sys.argv[1:])
