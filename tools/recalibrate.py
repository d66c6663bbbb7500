#!/usr/bin/python3
"""Chooses a package's thresholds again on a held-out set, without
training: the modules (and an int8 calibration) are copied unchanged and
only [thresholds] and [metrics] are written anew.

    /usr/bin/python3 tools/recalibrate.py --model DIR --out MODEL_DIR \\
        --features-tool build/tools/vigil-features --val-manifest CSV \\
        --val-root DIR [--val-split val] --frr-target 0.01 \\
        [--marginal-rule tight] [--marginal-budget 0.04] [--version V]

For a package whose thresholds were chosen under another rule (real-v5's
marginal band holds 12 % of its val parts; --marginal-budget caps that),
or calibrated on a set the line has since outgrown. The held-out parts go
through the modules as vigild runs them (OpenCV DNN), the thresholds come
from tools/train.py calibrate(), and the manifest says where they came
from and what they promise for unseen good parts. The new package is
written to a new folder, as tools/ensemble.py writes one.
"""
import argparse
import os
import shlex
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ensemble  # noqa: E402  (package reading, held-out parts, safe writing)
import train  # noqa: E402  (calibration, figures, manifest text)

ensemble.TOOL = "recalibrate"
log = ensemble.log


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the package to calibrate")
    p.add_argument("--out", required=True, help="new package folder (must not exist)")
    ensemble.held_out_args(p, "tight", "the thresholds and [metrics]")
    p.add_argument("--version", help="[package] version of the new package (default: kept)")
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


def recalibrate(a, argv, pkg):
    """Writes pkg (an ensemble.Member, a.model read and checked once)
    with new thresholds into a.out; the modules' size in bytes."""
    source = pkg.get("package", "version")
    _, (surf, vib, defect, _), images, signals = ensemble.held_out(a, pkg.man)
    logits, _, _ = ensemble.run_all(ensemble.opencv_nets(pkg.files), images, signals,
                                    bool(pkg.heatmap))
    # An anomaly package (train.py --good-only) keeps to its good parts.
    a.good_only = pkg.man.get("vision", "score", fallback="defect") == "anomaly"
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
