#!/usr/bin/env python3
"""Compares two score files of the same parts, row by row, in plain Python
(no packages: it runs on the GPU machine's python3 as on a line PC).

    compare-scores.py REF CAND [--name TEXT] [--same-verdicts] [--max-diff D]

REF and CAND are vigil-eval --scores or infer-bench --scores CSVs of the
same parts in the same order (a column score, vision_score, signal_score
and verdict each). Prints one line: the parts, the verdicts that differ
(with the first few part ids), the largest difference of each score, and,
when either file has the defect column (vigil-eval's), the fused AUROC of
both and its change. Exit status 1 when CAND holds a score that is not
finite (NaN, inf) where REF's is, when --same-verdicts and a verdict
differs, or when a score differs by more than --max-diff; 2 on unusable
input.
"""
import argparse
import csv
import math
import sys

SCORES = ("score", "vision_score", "signal_score")


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no rows")
    missing = [c for c in SCORES + ("verdict",) if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}")
    for i, r in enumerate(rows):
        for c in SCORES:
            try:
                r[c] = float(r[c])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{i + 2}: {c} '{r[c]}' is not a number") from None
    return rows


def auroc(scores, labels):
    """Mann-Whitney AUROC, ties counted one half, as vigil-eval counts."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ref")
    ap.add_argument("cand")
    ap.add_argument("--name", default=None, help="what the line is about")
    ap.add_argument("--same-verdicts", action="store_true",
                    help="fail when any verdict differs")
    ap.add_argument("--max-diff", type=float, default=None,
                    help="fail when a score differs by more")
    a = ap.parse_args()
    try:
        ref, cand = read(a.ref), read(a.cand)
    except (OSError, ValueError) as e:
        print(f"compare-scores: {e}", file=sys.stderr)
        return 2
    if len(ref) != len(cand):
        print(f"compare-scores: {a.ref} has {len(ref)} parts, {a.cand} {len(cand)}",
              file=sys.stderr)
        return 2
    ids = [r.get("part_id") or c.get("part_id") or r.get("part") or str(i)
           for i, (r, c) in enumerate(zip(ref, cand))]
    differ = [ids[i] for i, (r, c) in enumerate(zip(ref, cand)) if r["verdict"] != c["verdict"]]
    broken = [ids[i] for i, (r, c) in enumerate(zip(ref, cand))
              if any(math.isfinite(r[k]) and not math.isfinite(c[k]) for k in SCORES)]
    worst = {k: max(abs(r[k] - c[k]) if not (math.isnan(r[k]) or math.isnan(c[k])) else math.inf
                    for r, c in zip(ref, cand)) for k in SCORES}
    line = (f"{a.name or a.cand}: {len(ref)} parts, verdicts differing {len(differ)}"
            + (f" ({' '.join(differ[:8])}{' ...' if len(differ) > 8 else ''})" if differ else "")
            + "; max |diff| " + ", ".join(f"{k} {worst[k]:.3g}" for k in SCORES))
    if broken:
        line += (f"; NOT FINITE in {len(broken)} parts ({' '.join(broken[:8])}"
                 f"{' ...' if len(broken) > 8 else ''})")
    label_rows = ref if "defect" in ref[0] else cand if "defect" in cand[0] else None
    if label_rows and not broken:
        labels = [r["defect"] == "1" for r in label_rows]
        ar = auroc([r["score"] for r in ref], labels)
        ac = auroc([c["score"] for c in cand], labels)
        line += f"; fused AUROC {ar:.4f} -> {ac:.4f} ({ac - ar:+.4f})"
    print(line)
    bad = broken or (a.same_verdicts and differ) or \
        (a.max_diff is not None and not all(worst[k] <= a.max_diff for k in SCORES))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
