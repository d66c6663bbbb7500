#!/usr/bin/python3
"""vigil-eval on synthetic parts: models/synthetic-v2 over a generated
manifest of split 'test' gives the documented JSON with a high AUROC, and
the confusion table accounts for every part.

usage: test_eval.py BUILD_DIR SOURCE_ROOT
"""
import json
import os
import subprocess
import sys
import tempfile

build, root = sys.argv[1], sys.argv[2]
sim = os.path.join(build, "tools", "vigil-sim")
evaluate = os.path.join(build, "tools", "vigil-eval")


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


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
    # A split that is not in the manifest is an error, not an empty report.
    rc = subprocess.run([evaluate, "--manifest", manifest, "--data-root", data, "--split",
                         "nosuch", "--model", os.path.join(root, "models", "synthetic-v2"),
                         "--json", out], capture_output=True, text=True)
    if rc.returncode == 0 or "no parts of split 'nosuch'" not in rc.stderr:
        fail(f"split 'nosuch' gave rc {rc.returncode}: {rc.stderr}")
print(f"ok: AUROC {r['auroc']:.4f}, escapes at 1 % FRR {r['escape_rate_at_frr_1pct']:.4f}")
