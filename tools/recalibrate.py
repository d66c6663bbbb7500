#!/usr/bin/python3
"""Chooses a package's thresholds again on a held-out set, without
training: the modules (and an int8 calibration) are copied unchanged and
only [thresholds] and [metrics] are written anew.

    /usr/bin/python3 tools/recalibrate.py --model DIR --out MODEL_DIR \\
        --features-tool build/tools/vigil-features --val-manifest CSV \\
        --val-root DIR [--val-split val] --frr-target 0.01 \\
        [--marginal-rule tight] [--marginal-budget 0.04] [--version V] [--dark]

For a package whose thresholds were chosen under another rule (real-v5's
marginal band holds 12 % of its val parts; --marginal-budget caps that),
or calibrated on a set the line has since outgrown. The held-out parts go
through the modules as vigild runs them (OpenCV DNN), the thresholds come
from tools/train.py calibrate(), and the manifest says where they came
from and what they promise for unseen good parts. The new package is
written to a new folder, as tools/ensemble.py writes one.

--dark joins the dark-residual score (tools/dark_residual.py, computed on
the full image) into the vision and fused scores before the thresholds
are chosen, and writes the units it joins in as the manifest's [dark]:
a crack a pixel wide at the model's input is still dark at 320 px.
"""
import argparse
import csv
import os
import shlex
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dark_residual  # noqa: E402  (the [dark] score as the C runtime computes it)
import ensemble  # noqa: E402  (package reading, held-out parts, safe writing)
import numpy as np  # noqa: E402
import train  # noqa: E402  (calibration, figures, manifest text)

ensemble.TOOL = "recalibrate"
log = ensemble.log


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the package to calibrate")
    p.add_argument("--out", required=True, help="new package folder (must not exist)")
    ensemble.held_out_args(p, "tight", "the thresholds and [metrics]")
    p.add_argument("--version", help="[package] version of the new package (default: kept)")
    p.add_argument("--dark", action="store_true",
                   help="join the dark-residual score (docs/model.md) into the vision and "
                   "fused scores, in units of the held-out set's good parts, before "
                   "choosing the thresholds: writes [dark] (kept on for a package that has it)")
    a = p.parse_args(argv)
    ensemble.check_held_out_args(p, a)
    return a


def group_span(lines, group):
    """[start, end) of group's lines in the manifest: from the comment
    block right above its header to the line before the next comment
    block or header that follows a blank line (or the end)."""
    head = lines.index(f"[{group}]")
    start = head
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    end = head + 1
    while end < len(lines) and not lines[end].startswith("["):
        if lines[end] == "" or lines[end].startswith("#"):
            break
        end += 1
    while end < len(lines) and lines[end] == "":
        end += 1
    return start, end


def held_out_images(a):
    """The held-out parts' image paths, in the order train.read_labels
    and vigil-features take the rows."""
    with open(a.val_manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if not a.val_split or r["split"] == a.val_split]
    return [os.path.join(a.val_root, r["image"]) for r in rows]


def join_dark(a, logits, defect):
    """The dark-residual score of every held-out image joined into the
    vision and fused logits as vigild joins it (infer_model_join_dark):
    (the new logits, the manifest's [dark] lines)."""
    dark = dark_residual.dark_scores(held_out_images(a))
    if len(dark) != len(logits):
        ensemble.fail(f"{a.val_manifest}: {len(dark)} images for {len(logits)} parts")
    good = defect < 0.5
    dm, du = dark_residual.units(dark[good])
    vm, vu = dark_residual.units(logits[good, 0])
    fm, fu = dark_residual.units(logits[good, 2])
    if not (du > 0 and vu > 0 and fu > 0):
        ensemble.fail(f"{a.val_manifest}: the good parts' scores do not spread "
                      f"(units {du:.3g}, {vu:.3g}, {fu:.3g}): no units to join in")
    z = (dark - dm) / du
    out = logits.copy()
    out[:, 0] = np.maximum(out[:, 0], vm + z * vu)
    out[:, 2] = np.maximum(out[:, 2], fm + z * fu)
    log(f"dark residual: {int(good.sum())} good parts, median {dm:.4g}, unit {du:.4g}; "
        f"it raised the fused score of {int((out[:, 2] > logits[:, 2]).sum())} of "
        f"{len(z)} parts")
    r = dark_residual
    lines = [
        "# The dark-residual score (docs/model.md), joined into the vision and the fused",
        f"# logit by their maximum, in units (median; {dark_residual.TAIL:g} quantile less median)"
        " of the good parts",
        f"# of {a.val_manifest}" + (f" (split {a.val_split})" if a.val_split else "")
        + " (tools/recalibrate.py --dark).",
        "[dark]",
        f"side={r.SIDE}", f"median={r.MEDIAN}", f"box={r.BOX}", f"edge={r.EDGE}",
        f"good_median={dm:.9g}", f"good_scale={du:.9g}",
        f"vision_median={vm:.9g}", f"vision_scale={vu:.9g}",
        f"fused_median={fm:.9g}", f"fused_scale={fu:.9g}",
        "",
    ]
    return out, lines


def recalibrate(a, argv, pkg):
    """Writes pkg (an ensemble.Member, a.model read and checked once)
    with new thresholds into a.out; the modules' size in bytes."""
    source = pkg.get("package", "version")
    _, (surf, vib, defect, _), images, signals = ensemble.held_out(a, pkg.man)
    logits, _, _ = ensemble.run_all(ensemble.opencv_nets(pkg.files), images, signals,
                                    bool(pkg.heatmap))
    # An anomaly package (train.py --good-only) keeps to its good parts.
    a.good_only = pkg.man.get("vision", "score", fallback="defect") == "anomaly"
    dark = None
    if a.dark or pkg.man.has_section("dark"):
        if not a.good_only:
            log("note: a package with a supervised score has a good tail of its own; in "
                "docs/model.md's leave-one-out runs joining the dark score into such a "
                "package let more defects through, not fewer: compare before shipping it")
        logits, dark = join_dark(a, logits, defect)
    a.reject, a.marginal = train.calibrate(logits[:, 2], defect, a.frr_target,
                                           a.marginal_rule, a.marginal_budget, a.good_only)
    metrics = train.figures(logits, surf, vib, defect, a.reject, a.marginal)
    log(f"thresholds: reject {a.reject:.6g}, marginal {a.marginal:.6g}; held-out "
        f"{metrics['parts']} parts: escapes {metrics['escapes']}, false rejects "
        f"{metrics['false_rejects']} of {metrics['good']} (at most "
        f"{100 * metrics['false_reject_upper95']:.2f} % on unseen good parts, 95 %), "
        f"marginal {100 * metrics['marginal_rate']:.2f} % of the parts")

    # Every file but the manifest, byte for byte: the modules, and an int8
    # calibration (vigil-calibrate), which names the modules' SHA-256 and
    # so stays valid.
    size = 0
    for name in sorted(os.listdir(a.model)):
        src = os.path.join(a.model, name)
        if name != "manifest.ini" and os.path.isfile(src):
            shutil.copy2(src, os.path.join(a.out, name))
    for m in ensemble.MODULES:
        size += os.path.getsize(pkg.files[m])
    with open(pkg.path) as f:
        lines = f.read().rstrip("\n").split("\n")
    start, end = group_span(lines, "metrics")
    lines[start:end] = train.metrics_lines(a, metrics)
    start, end = group_span(lines, "thresholds")
    lines[start:end] = train.threshold_lines(a, metrics)
    if dark:
        if "[dark]" in lines:
            start, end = group_span(lines, "dark")
            lines[start:end] = []
        start, _ = group_span(lines, "thresholds")
        lines[start:start] = dark
    at = next(i for i, x in enumerate(lines) if x.startswith("trained_by=")) + 1
    lines.insert(at, f"# Thresholds chosen again from {source}'s by tools/recalibrate.py " +
                 " ".join(shlex.quote(x) for x in argv))
    if a.version:
        lines = [f"version={a.version}" if x.startswith("version=") else x for x in lines]
    with open(os.path.join(a.out, "manifest.ini"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return size


def main(argv):
    a = parse_args(argv)
    pkg = ensemble.Member(a.model)
    ensemble.write_new_package(a, lambda a: recalibrate(a, argv, pkg), "recalibrate")


if __name__ == "__main__":
    main(sys.argv[1:])
