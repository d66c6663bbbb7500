#!/usr/bin/python3
"""Novel defects (issue 21): trains the supervised recipe once per surface
defect class with that class left out of the training set, joins each
with a good-only package (tools/fuse.py), and reports each left-out
class's escapes on the held-out set at each package's operating point,
for the supervised package alone, the good-only one alone and the fused
one: what a line misses the day a defect of a new kind turns up.

    /usr/bin/python3 tools/leave_one_out.py --manifest CSV --data-root DIR \\
        --split train --val-manifest CSV --val-root DIR --val-split val \\
        --anomaly GOOD_ONLY_PKG --features-tool build/tools/vigil-features \\
        --eval-tool build/tools/vigil-eval --work DIR --frr-target 0.01 \\
        -- --seed 1 --arch seg2 --width 160 --height 112 ... (train.py's recipe)

The good-only package never saw a defect of any kind, so one serves every
class. --work keeps each run (work/CLASS/: the training manifest, the
supervised and fused packages, vigil-eval's JSON, the logs); a run whose
package is already there is not trained again, so an interrupted
ablation picks up where it stopped. The table goes to standard output
(Markdown) and work/leave-one-out.json.
"""
import argparse
import csv
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(f"leave-one-out: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    if "--" in argv:
        at = argv.index("--")
        argv, recipe = argv[:at], argv[at + 1:]
    else:
        recipe = []
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, help="training line manifest")
    p.add_argument("--data-root", help="its data root (default: its folder)")
    p.add_argument("--split", help="train on the rows of this split only")
    p.add_argument("--val-manifest", required=True)
    p.add_argument("--val-root", help="its data root (default: its folder)")
    p.add_argument("--val-split")
    p.add_argument("--anomaly", required=True, help="the good-only package to fuse with")
    p.add_argument("--features-tool", required=True)
    p.add_argument("--eval-tool", required=True, help="path of vigil-eval")
    p.add_argument("--work", required=True, help="folder for every run (kept, resumable)")
    p.add_argument("--frr-target", type=float, default=0.01)
    p.add_argument("--classes", help="comma-separated surface classes to leave out "
                   "(default: every image_class of the training rows but free)")
    a = p.parse_args(argv)
    a.recipe = recipe
    a.data_root = a.data_root or os.path.dirname(os.path.abspath(a.manifest))
    a.val_root = a.val_root or os.path.dirname(os.path.abspath(a.val_manifest))
    for flag in ("--manifest", "--out", "--val-manifest", "--frr-target", "--features-tool",
                 "--good-only"):
        if flag in recipe:
            p.error(f"the recipe after -- must not give {flag}: leave_one_out.py sets it")
    return a


def read_rows(path):
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


def run(cmd, log_path):
    with open(log_path, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"leave-one-out: {cmd[1] if cmd[0].endswith('python3') else cmd[0]} exited "
                 f"{r.returncode}; its log: {log_path}")


def evaluate(a, pkg, out):
    if not os.path.exists(out):
        cmd = [a.eval_tool, "--manifest", a.val_manifest, "--data-root", a.val_root,
               "--model", pkg, "--json", out]
        if a.val_split:
            cmd += ["--split", a.val_split]
        run(cmd, out + ".log")
    with open(out) as f:
        return json.load(f)


def class_escapes(report, name):
    """(escapes, defective) of one image_class from vigil-eval's JSON."""
    for c in report["escapes_by_class"]["image_class"]:
        if c["class"] == name:
            return c["escapes"], c["defective"]
    return 0, 0


def main(argv):
    a = parse_args(argv)
    os.makedirs(a.work, exist_ok=True)
    fields, rows = read_rows(a.manifest)
    used = [r for r in rows if not a.split or r["split"] == a.split]
    classes = (a.classes.split(",") if a.classes else
               sorted({r["image_class"] for r in used} - {"free", ""}))
    held = [a.val_manifest, "--val-root", a.val_root, "--frr-target", repr(a.frr_target)]
    if a.val_split:
        held += ["--val-split", a.val_split]
    anomaly = evaluate(a, a.anomaly, os.path.join(a.work, "anomaly.json"))
    results = []
    for name in classes:
        d = os.path.join(a.work, name)
        os.makedirs(d, exist_ok=True)
        kept = [r for r in rows if r["image_class"] != name]
        left = sum(r["image_class"] == name for r in used)
        train_csv = os.path.join(d, "train.csv")
        with open(train_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(kept)
        sup, fused = os.path.join(d, "supervised"), os.path.join(d, "fused")
        if not os.path.exists(os.path.join(sup, "manifest.ini")):
            log(f"{name}: training without its {left} rows ({sup}.log)")
            run(["/usr/bin/python3", os.path.join(HERE, "train.py"), "--manifest", train_csv,
                 "--data-root", a.data_root, "--features-tool", a.features_tool, "--out", sup,
                 "--val-manifest", *held, *(["--split", a.split] if a.split else []),
                 "--version", f"loo-{name}", *a.recipe], sup + ".log")
        if not os.path.exists(os.path.join(fused, "manifest.ini")):
            run(["/usr/bin/python3", os.path.join(HERE, "fuse.py"), "--supervised", sup,
                 "--anomaly", a.anomaly, "--out", fused, "--features-tool", a.features_tool,
                 "--val-manifest", *held, "--marginal-rule", "tight",
                 "--version", f"loo-{name}-fused"], fused + ".log")
        reports = {"supervised": evaluate(a, sup, os.path.join(d, "supervised.json")),
                   "anomaly": anomaly,
                   "fused": evaluate(a, fused, os.path.join(d, "fused.json"))}
        row = {"class": name, "left_out_rows": left}
        for kind, r in reports.items():
            esc, n = class_escapes(r, name)
            row[kind] = {"escapes": esc, "defective": n, "escape_rate": esc / n if n else None,
                         "false_reject_rate": r["false_reject_rate"],
                         "vision_auroc": r["vision_only"]["auroc"]}
        results.append(row)
        log(f"{name}: escapes supervised {row['supervised']['escapes']}, anomaly "
            f"{row['anomaly']['escapes']}, fused {row['fused']['escapes']} of "
            f"{row['fused']['defective']}")
    with open(os.path.join(a.work, "leave-one-out.json"), "w") as f:
        json.dump(results, f, indent=2)

    def cell(x):
        if x["escape_rate"] is None:
            return "-"
        return (f"{x['escapes']} of {x['defective']} ({100 * x['escape_rate']:.0f} %), "
                f"FR {100 * x['false_reject_rate']:.1f} %")
    print("| left-out class | supervised alone | good-only alone | fused |")
    print("| --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['class']} | {cell(r['supervised'])} | {cell(r['anomaly'])} | "
              f"{cell(r['fused'])} |")


if __name__ == "__main__":
    main(sys.argv[1:])
