"""A model package's files as tools/train.py writes them (docs/model.md;
tools/ensemble.py writes its joined package with the same pieces): the
ONNX modules, checked under OpenCV DNN (the CPU inference path) against
torch; the thresholds (calibrate()) and the held-out figures; manifest.ini;
torch's defect maps in vigil-eval's format.
"""
import csv
import datetime
import hashlib
import math
import os
import shlex
import sys

import numpy as np
import torch

from train_data import log
from train_model import SIGNAL_EMBED, VISION_EMBED, VisionSeg, VisionWithMap

FEATURES_VERSION = "vigil-sigfeat-v1"
OPSET = 11
VISION_OUTPUT = "vision"
HEATMAP_OUTPUT = "defect_map"   # [vision] heatmap_output of a segmentation package
ANOMALY_MAP_OUTPUT = "anomaly_map"   # [vision] anomaly_map_output of a fused package


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
    good = int((~d).sum())
    return {
        "parts": len(p),
        "defective": int(d.sum()),
        "accuracy": float(np.mean((p >= reject) == d)),
        "escapes": escapes,
        "false_rejects": false_rejects,
        "escape_rate": escapes / max(int(d.sum()), 1),
        "false_reject_rate": false_rejects / max(good, 1),
        "good": good,
        "false_reject_upper95": rate_upper_bound(false_rejects, good),
        "marginal_rate": float(np.mean((p >= marginal) & (p < reject))),
        "vision_accuracy": float(np.mean((pv >= 0.5) == (surf > 0.5))),
        "signal_accuracy": float(np.mean((ps >= 0.5) == (vib > 0.5))),
    }


MARGIN_LOGIT = 0.1   # tight rule: marginal this far above the good part it clears


def calibrate(fused_logits, defect, frr_target, rule="midway", marginal_budget=None,
              good_only=False):
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
    outright and the parts in between go to a manual check.
    marginal_budget (a share of all held-out parts, e.g. 0.04): reject is
    lowered, never below marginal, until at most that share of the
    held-out parts lies in [marginal, reject): midway between the highest
    part the band may keep and the next part up. The parts above go
    straight to reject, good ones too; escapes and false rejects (which
    count marginal good parts) do not change, only how many flagged parts
    a person checks.
    good_only (a good-only package, train.py --good-only): the defective
    held-out parts are left out altogether, the budget's count too, so the
    thresholds come from the good parts alone."""
    if good_only:
        fused_logits, defect = fused_logits[defect < 0.5], defect[defect < 0.5]
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
    if marginal_budget is not None:
        flagged = np.sort(fused_logits[fused_logits >= marginal].astype(np.float64))
        keep = int(np.floor(marginal_budget * len(fused_logits)))
        if keep < len(flagged) and flagged[keep] < reject:
            reject = (flagged[keep - 1] + flagged[keep]) / 2 if keep > 0 else marginal
    return float(sigmoid(reject)), float(sigmoid(marginal))


def rate_upper_bound(k, n, confidence=0.95):
    """The one-sided Clopper-Pearson upper bound on a rate seen k times in
    n trials: the p at which k or fewer would be seen with probability
    1 - confidence. With thresholds set just above the (k+1)-th highest of
    n good held-out parts, an unseen good part's false-reject probability
    is Beta(k+1, n-k) distributed over the draw of the held-out set: mean
    (k+1)/(n+1), and this bound is its confidence quantile."""
    if n <= 0 or k >= n:
        return 1.0
    logc = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            for i in range(k + 1)]

    def cdf(p):
        return sum(math.exp(c + i * math.log(p) + (n - i) * math.log1p(-p))
                   for i, c in enumerate(logc))
    lo, hi = k / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > 1 - confidence else (lo, mid)
    return hi


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


def teacher_outputs(a, pkg, t, seg):
    """A model package's outputs on the training parts t, run as vigild
    runs them (OpenCV DNN): (vision logits [N], fused logits [N], defect
    maps [N, 1, Hm, Wm] or None). Exits unless the package takes the
    student's input size and resize, and, for a segmentation student, has
    a defect map of its size."""
    import configparser
    import cv2
    man = configparser.ConfigParser()
    if not man.read(os.path.join(pkg, "manifest.ini")):
        sys.exit(f"train: --teacher {pkg}: no manifest.ini there")
    vis = man["vision"]
    got = (vis.getint("input_width"), vis.getint("input_height"), vis.get("resize", "stretch"))
    if got != (a.width, a.height, a.resize):
        sys.exit(f"train: --teacher {pkg} takes {got[0]}x{got[1]} {got[2]}, this run "
                 f"{a.width}x{a.height} {a.resize}: the teacher must see the student's input")
    if seg and vis.get("heatmap_output") != HEATMAP_OUTPUT:
        sys.exit(f"train: --teacher {pkg} has no defect map ([vision] heatmap_output) to "
                 f"teach a segmentation network")
    nets = tuple(cv2.dnn.readNetFromONNX(os.path.join(pkg, man[k]["file"]))
                 for k in ("vision", "signal", "decision"))
    n = len(t.images)
    tv, td = np.zeros(n, np.float32), np.zeros(n, np.float32)
    maps = None
    for i in range(n):
        v, _, d, hm = opencv_forward(nets, t.images[i:i + 1], t.signals[i:i + 1], seg)
        tv[i], td[i] = v[0, 0], d[0, 0]
        if seg:
            maps = maps if maps is not None else np.zeros((n,) + hm.shape[1:], np.float32)
            maps[i] = hm[0]
    grid = (a.height // VisionSeg.MAP_STRIDE, a.width // VisionSeg.MAP_STRIDE)
    if seg and maps.shape[2:] != grid:
        sys.exit(f"train: --teacher {pkg}'s defect map is {maps.shape[3]}x{maps.shape[2]}, "
                 f"the student's {grid[1]}x{grid[0]}")
    log(f"teacher {pkg} ({man['package'].get('version', '?')}) on {n} training parts: "
        f"vision p >= 0.5 on {int((tv >= 0).sum())}, fused on {int((td >= 0).sum())}")
    return tv, td, maps


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def export_modules(a, vision, signal, decision, sig_dim, seg):
    """Writes the three ONNX modules into a.out from the trained modules
    (in eval mode); the signal module carries its normalisation in its
    first layer. Returns the package's file names and paths by module and
    the folded signal module."""
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
    return files, paths, sig_export


def check_opencv(paths, vision, signal, sig_export, decision, check_img, check_sig, seg):
    """Loads the exported modules with OpenCV DNN and exits unless they
    match torch on the first 64 of the given parts. Returns the OpenCV
    nets (vision, signal, decision) and torch's defect maps of those parts
    (None without a segmentation network)."""
    import cv2
    nets = tuple(cv2.dnn.readNetFromONNX(paths[k]) for k in ("vision", "signal", "decision"))
    for net in nets:
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
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
    return nets, tmap


def threshold_text(p, a):
    """A threshold as vigild reads it: calibrated ones as the exact decimal
    of their float32 (inference keeps thresholds in float and checks
    marginal <= reject against that float), given ones as typed."""
    if a.frr_target is None:
        return f"{p:g}"
    return repr(float(np.float32(p)))


# Class names that say only "defective" (vigilctl export without a QA
# defect type) or "good": not offered to QA as defect types.
GENERIC_CLASSES = {"image_class": {"free", "defect", ""}, "vib_class": {"normal", "fault", ""}}


def manifest_classes(a):
    """The defect classes of the training and validation manifests (their
    image_class and vib_class values, generic ones left out), for the
    package's [classes]: the review page offers them as defect types.
    a.manifest may be one path or a list of them; files that cannot be read
    add nothing (train.py has already read them or failed)."""
    found = {"image_class": set(), "vib_class": set()}
    names = []
    for attr in ("manifest", "val_manifest"):
        v = getattr(a, attr, None)
        names += v if isinstance(v, (list, tuple)) else [v] if v else []
    for name in names:
        if not isinstance(name, str) or not os.path.isfile(name):
            continue
        with open(name, newline="") as f:
            for row in csv.DictReader(f):
                for col, seen in found.items():
                    v = (row.get(col) or "").strip()
                    if v not in GENERIC_CLASSES[col] and "," not in v:
                        seen.add(v)
    return sorted(found["image_class"]), sorted(found["vib_class"])


def threshold_lines(a, metrics):
    """The manifest's [thresholds] group with the comment that says where
    the thresholds came from and what they promise for unseen good parts."""
    lines = [
        "# Sigmoid probabilities: p >= reject rejects, marginal <= p < reject is",
        "# marginal; vision and signal flag the modality that found the defect.",
    ]
    if a.frr_target is not None and metrics:
        budget = getattr(a, "marginal_budget", None)
        fr, good = metrics["false_rejects"], metrics["good"]
        lines += [
            f"# Chosen on {'the good parts of ' if getattr(a, 'good_only', False) else ''}"
            f"{a.val_manifest} (split {a.val_split or 'all'}) for a false-reject "
            f"target of {100 * a.frr_target:g} %, marginal rule {a.marginal_rule}"
            + (f", marginal band at most {100 * budget:g} % of the parts"
               if budget is not None else "") + " (tools/train.py calibrate()).",
            f"# Unseen good parts: false rejects {fr} of {good} here, so expect about "
            f"{100 * (fr + 1) / (good + 1):.2g} %, at most "
            f"{100 * metrics['false_reject_upper95']:.2g} % with 95 % confidence."]
    return lines + [
        "[thresholds]",
        f"reject={threshold_text(a.reject, a)}",
        f"marginal={threshold_text(min(a.marginal, a.reject), a)}",
        "vision=0.5",
        "signal=0.5",
        "",
    ]


def metrics_lines(a, metrics):
    """The manifest's [metrics] group (the load gate's figures) with its
    comment; metrics from figures(), None without a held-out set."""
    if not metrics:
        return ["# No held-out set was given.", "[metrics]", "heldout_parts=0"]
    return [
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
    ] + ([f"heldout_escape_rate={metrics['escape_rate']:.4f}"] if metrics["defective"] else
         ["# No defective held-out part, so no escape rate (a good-only line's first",
          "# package; vigild's gate warns that it went unchecked)."]) + [
        f"heldout_false_reject_rate={metrics['false_reject_rate']:.4f}",
        f"heldout_false_reject_upper95={metrics['false_reject_upper95']:.4f}",
        f"heldout_marginal_rate={metrics['marginal_rate']:.4f}",
    ]


# [vision] score (docs/model.md) and the comment that says what it means.
VISION_SCORE_LINES = {
    "defect": [],
    "anomaly": ["# An anomaly score: trained on good parts alone, with synthetic anomalies",
                "# (tools/train.py --good-only); its map shows where the part departs",
                "# from the good ones.", "score=anomaly"],
    "fused": ["# The higher of a supervised defect score and an anomaly score",
              "# (tools/fuse.py); heatmap_output is the supervised model's defect map,",
              "# anomaly_map_output the good-only model's anomaly map.", "score=fused"],
}


def vision_score(a):
    """What the package's vision score means: a.vision_score where a tool
    sets it (tools/fuse.py), anomaly for train.py --good-only."""
    return getattr(a, "vision_score", None) or (
        "anomaly" if getattr(a, "good_only", False) else "defect")


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
    ] + VISION_SCORE_LINES[vision_score(a)] + (
        [f"heatmap_output={HEATMAP_OUTPUT}", f"heatmap_width={heatmap[0]}",
         f"heatmap_height={heatmap[1]}"] if heatmap else []) + (
        [f"anomaly_map_output={ANOMALY_MAP_OUTPUT}"]
        if heatmap and vision_score(a) == "fused" else []) + [
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
    ] + threshold_lines(a, metrics)
    surface, vibration = manifest_classes(a)
    if surface or vibration:
        lines += [
            "# The defect classes of the training data (image_class, vib_class), which",
            "# the review page offers as defect types (docs/operations.md).",
            "[classes]",
            f"surface={', '.join(surface)}",
            f"vibration={', '.join(vibration)}",
            "",
        ]
    lines += metrics_lines(a, metrics)
    with open(os.path.join(a.out, "manifest.ini"), "w") as f:
        f.write("\n".join(lines) + "\n")


def write_maps(path, maps):
    """Defect maps [N, 1, H, W] as vigil-eval --heatmaps writes them:
    "VGH1", uint32 N, W, H, then N*H*W float32, little-endian."""
    n, _, h, w = maps.shape
    with open(path, "wb") as f:
        f.write(b"VGH1" + np.array([n, w, h], "<u4").tobytes())
        f.write(np.ascontiguousarray(maps, "<f4").tobytes())
