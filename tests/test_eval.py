#!/usr/bin/python3
"""vigil-eval on synthetic parts: models/synthetic-v2 over a generated
manifest of split 'test' gives the documented JSON with a high AUROC, and
the confusion table accounts for every part. The manual-check figures
(marginal_rate, flagged_good_at_full_recall, escapes_by_class) match what
the scores CSV gives when counted here, also with a copy of the package
whose wide marginal band sends many parts to a manual check; the 95 %
upper bounds on the fused escape and false-reject rates are the p at
which the binomial CDF of the counts is 5 %.

usage: test_eval.py BUILD_DIR SOURCE_ROOT
"""
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

build, root = sys.argv[1], sys.argv[2]
sim = os.path.join(build, "tools", "vigil-sim")
evaluate = os.path.join(build, "tools", "vigil-eval")


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def binom_cdf(k, n, p):
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


def check_bound(name, bound, k, n):
    """bound must be the one-sided 95 % Clopper-Pearson upper bound for k
    of n: P(X <= k) is 5 % at it, more just below it."""
    if k >= n:
        ok = bound == 1
    else:
        ok = abs(binom_cdf(k, n, bound) - 0.05) < 1e-4 and binom_cdf(k, n, bound - 1e-3) > 0.05
    if not ok:
        fail(f"{name} {bound} is not the 95 % upper bound for {k} of {n}")


def check_manual_figures(r, scores_csv):
    """The JSON's manual-check figures against the scores CSV, counted
    here."""
    with open(scores_csv) as f:
        rows = list(csv.DictReader(f))
    marginal = sum(x["verdict"] == "marginal" for x in rows)
    if abs(r["marginal_rate"] - marginal / len(rows)) > 1e-5 or \
            abs(r["fused"]["marginal_rate"] - r["marginal_rate"]) > 1e-9:
        fail(f"marginal_rate {r['marginal_rate']}, the CSV has {marginal} of {len(rows)}")
    for view, key, subset in (("fused", "score", lambda x: True),
                              ("vision_only", "vision_score", lambda x: x["image_class"] != "free"),
                              ("signal_only", "signal_score", lambda x: x["vib_class"] != "normal")):
        low = min(float(x[key]) for x in rows if x["defect"] == "1" and subset(x))
        flagged = sum(float(x[key]) >= low for x in rows if x["defect"] == "0")
        if r[view]["flagged_good_at_full_recall"] != flagged:
            fail(f"{view}: flagged_good_at_full_recall {r[view]['flagged_good_at_full_recall']}, "
                 f"the CSV gives {flagged} good parts at or above {low}")
    good = [x for x in rows if x["defect"] == "0"]
    bad = [x for x in rows if x["defect"] == "1"]
    fr = sum(x["verdict"] != "accept" for x in good)
    check_bound("false_reject_upper95", r["false_reject_upper95"], fr, len(good))
    check_bound("fused false_reject_upper95", r["fused"]["false_reject_upper95"], fr, len(good))
    check_bound("fused escape_upper95", r["fused"]["escape_upper95"],
                sum(x["verdict"] == "accept" for x in bad), len(bad))
    if r["flagged_good_at_full_recall"] != r["fused"]["flagged_good_at_full_recall"]:
        fail("top-level flagged_good_at_full_recall is not the fused one")
    for column, normal in (("image_class", "free"), ("vib_class", "normal")):
        want = {}
        for x in rows:
            if x["defect"] == "1" and x[column] != normal:
                c = want.setdefault(x[column], [0, 0, 0])
                c[0] += 1
                c[1] += x["verdict"] == "accept"
                c[2] += x["verdict"] == "marginal"
        got = {c["class"]: [c["defective"], c["escapes"], c["marginal"]]
               for c in r["escapes_by_class"][column]}
        if got != want:
            fail(f"escapes_by_class {column}: {got}, the CSV gives {want}")
        for c in r["escapes_by_class"][column]:
            if abs(c["escape_rate"] - c["escapes"] / c["defective"]) > 1e-5:
                fail(f"escape_rate of {c}")
    return marginal


with tempfile.TemporaryDirectory(prefix="vigil-eval-") as tmp:
    data = os.path.join(tmp, "parts")
    subprocess.run([sim, "generate", "--out", data, "--parts", "300", "--seed", "31",
                    "--split", "test"], check=True)
    out = os.path.join(tmp, "eval.json")
    scores = os.path.join(tmp, "scores.csv")
    # The manifest elsewhere than its data: --data-root must be honoured.
    manifest = os.path.join(tmp, "line.csv")
    with open(os.path.join(data, "parts.csv")) as src, open(manifest, "w") as dst:
        dst.write(src.read())
    subprocess.run([evaluate, "--manifest", manifest, "--data-root", data, "--split", "test",
                    "--model", os.path.join(root, "models", "synthetic-v2"), "--json", out,
                    "--scores", scores], check=True)
    with open(out) as f:
        r = json.load(f)
    for key in ("parts", "auroc", "escape_rate_at_frr_1pct", "escape_rate",
                "false_reject_rate", "vision_only", "signal_only", "confusion"):
        if key not in r:
            fail(f"no '{key}' in the JSON")
    for view in ("vision_only", "signal_only"):
        for key in ("parts", "auroc", "escape_rate_at_frr_1pct", "escape_rate",
                    "false_reject_rate"):
            if key not in r[view]:
                fail(f"no '{key}' under '{view}'")
    if r["parts"] != 300:
        fail(f"{r['parts']} parts, expected 300")
    if not r["auroc"] >= 0.98:
        fail(f"fused AUROC {r['auroc']} on synthetic parts")
    if not r["signal_only"]["auroc"] >= 0.98 or not r["vision_only"]["auroc"] >= 0.95:
        fail(f"modality AUROCs {r['vision_only']['auroc']} {r['signal_only']['auroc']}")
    if not 0 <= r["escape_rate_at_frr_1pct"] <= 0.1:
        fail(f"escape rate at 1 % FRR {r['escape_rate_at_frr_1pct']}")
    total = sum(c["parts"] for c in r["confusion"])
    verdicts = sum(c["accept"] + c["marginal"] + c["reject"] for c in r["confusion"])
    if total != 300 or verdicts != 300:
        fail(f"confusion table holds {total} parts, {verdicts} verdicts")
    with open(scores) as f:
        if len(f.read().splitlines()) != 301:
            fail("the scores CSV does not have one row per part")
    check_manual_figures(r, scores)
    if sum(c["escapes"] for c in r["escapes_by_class"]["image_class"]) + \
            sum(c["escapes"] for c in r["escapes_by_class"]["vib_class"]) < r["fused"]["escapes"]:
        fail("escapes_by_class misses some of the fused escapes")
    # The same parts with a wide marginal band: many manual checks.
    wide = os.path.join(tmp, "wide")
    shutil.copytree(os.path.join(root, "models", "synthetic-v2"), wide)
    with open(os.path.join(wide, "manifest.ini")) as f:
        text = f.read()
    text = text.replace("\nreject=0.5\nmarginal=0.3\n", "\nreject=0.999\nmarginal=0.001\n")
    with open(os.path.join(wide, "manifest.ini"), "w") as f:
        f.write(text)
    subprocess.run([evaluate, "--manifest", manifest, "--data-root", data, "--split", "test",
                    "--model", wide, "--json", out, "--scores", scores], check=True)
    with open(out) as f:
        w = json.load(f)
    if check_manual_figures(w, scores) < 20:
        fail(f"the wide marginal band gave a marginal_rate of {w['marginal_rate']}")
    # A split that is not in the manifest is an error, not an empty report.
    rc = subprocess.run([evaluate, "--manifest", manifest, "--data-root", data, "--split",
                         "nosuch", "--model", os.path.join(root, "models", "synthetic-v2"),
                         "--json", out], capture_output=True, text=True)
    if rc.returncode == 0 or "no parts of split 'nosuch'" not in rc.stderr:
        fail(f"split 'nosuch' gave rc {rc.returncode}: {rc.stderr}")
print(f"ok: AUROC {r['auroc']:.4f}, escapes at 1 % FRR {r['escape_rate_at_frr_1pct']:.4f}")
