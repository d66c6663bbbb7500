#!/usr/bin/python3
"""Pieces of tools/train.py checked on hand-made inputs: the defect map
target keeps a crack one pixel wide in every map cell it crosses
(--map-target any) where the area rule loses some; the focal loss is plain
cross-entropy at gamma 0 and, at gamma > 0, gives a hard part more weight
against an easy one; calibrate() meets the false-reject target under both
marginal rules, and the tight rule catches the defective parts that
midway accepts.

usage: test_train_parts.py SOURCE_ROOT
"""
import importlib.util
import os
import sys

import numpy as np
import torch

root = sys.argv[1]
spec = importlib.util.spec_from_file_location("train", os.path.join(root, "tools", "train.py"))
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


# A diagonal crack one pixel wide, half covering each pixel it crosses (a
# thin crack after area downscaling), over a 32x32 input: 8x8 map cells.
mask = torch.zeros(1, 1, 32, 32)
for i in range(32):
    mask[0, 0, i, i] = 0.5
crossed = 8  # cells on the diagonal
any_t = train.defect_map_target(mask, 4, "any")
area_t = train.defect_map_target(mask, 4, "area")
if any_t.shape != (1, 1, 8, 8):
    fail(f"map target shape {tuple(any_t.shape)}, expected (1, 1, 8, 8)")
if int(any_t.sum()) != crossed or not all(any_t[0, 0, k, k] == 1 for k in range(8)):
    fail(f"any: {int(any_t.sum())} cells marked, expected the {crossed} the crack crosses")
# 4 pixels of 0.5 in 16: 12.5 % coverage, just over the area rule's 10 %.
if int(area_t.sum()) != crossed:
    fail(f"area: {int(area_t.sum())} cells marked, expected {crossed}")
# The same crack at a quarter coverage (fainter): the area rule loses it.
faint = mask / 2
if int(train.defect_map_target(faint, 4, "area").sum()) != 0:
    fail("area: a crack covering 6 % of its cells marked them")
if int(train.defect_map_target(faint, 4, "any").sum()) != crossed:
    fail("any: a quarter-covered crack lost its cells")
# A clean cell stays clean under both rules; a speck below a quarter is no defect.
speck = torch.zeros(1, 1, 32, 32)
speck[0, 0, 5, 5] = 0.2
for mode in ("any", "area"):
    if int(train.defect_map_target(speck, 4, mode).sum()) != 0:
        fail(f"{mode}: a 0.2-covered speck marked its cell")

# Focal loss: gamma 0 is the mean binary cross-entropy.
logit = torch.tensor([3.0, -0.2, 0.5, -4.0])
target = torch.tensor([1.0, 1.0, 0.0, 0.0])
bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, target)
if abs(float(train.focal_bce(logit, target, 0.0)) - float(bce)) > 1e-7:
    fail("focal loss at gamma 0 differs from binary cross-entropy")
# Gamma 1: per part, ce * (1 - p_true). An easy part (logit 3, defect) and
# a hard one (logit -0.2, defect): the hard one's share of the loss grows.
easy, hard = torch.tensor([3.0]), torch.tensor([-0.2])
one = torch.tensor([1.0])


def share(gamma):
    e = float(train.focal_bce(easy, one, gamma))
    h = float(train.focal_bce(hard, one, gamma))
    return h / (e + h)


if not share(1.0) > share(0.0) + 0.02:
    fail(f"focal gamma 1 gives the hard part {share(1.0):.3f} of the loss, "
         f"plain cross-entropy {share(0.0):.3f}")
ce_hard = float(torch.nn.functional.softplus(-hard))
expect = ce_hard * (1 - float(torch.sigmoid(hard)))
if abs(float(train.focal_bce(hard, one, 1.0)) - expect) > 1e-6:
    fail(f"focal gamma 1 of one part {float(train.focal_bce(hard, one, 1.0)):.6f}, "
         f"expected {expect:.6f}")
print(f"ok: map targets, focal loss (hard part's share {share(0.0):.3f} -> {share(1.0):.3f})")

# Calibration on hand-made fused logits: 200 good parts, so 1 % allows 2
# at or above marginal; defective parts in the gap between the 3rd and 2nd
# highest good part are caught by tight, accepted by midway.
good = np.concatenate([np.linspace(-6, 0, 197), [1.0, 4.0, 5.0]])
bad = np.array([1.5, 2.0, 3.0, 6.0])
logits = np.concatenate([good, bad])
defect = np.concatenate([np.zeros(len(good)), np.ones(len(bad))])
for rule, expect_marginal in (("midway", 2.5), ("tight", 1.0 + train.MARGIN_LOGIT)):
    reject, marginal = train.calibrate(logits, defect, 0.01, rule)
    lm = np.log(marginal / (1 - marginal))
    if abs(lm - expect_marginal) > 1e-9:
        fail(f"{rule}: marginal at logit {lm:.4f}, expected {expect_marginal}")
    if abs(np.log(reject / (1 - reject)) - 5.5) > 1e-9:
        fail(f"{rule}: reject at {reject}, expected the top good part + 0.5 logit")
    fr = int(np.sum(good >= lm))
    if fr > 2:
        fail(f"{rule}: {fr} good parts at or above marginal, the 1 % target allows 2")
    escapes = int(np.sum(bad < lm))
    if escapes != {"midway": 2, "tight": 0}[rule]:
        fail(f"{rule}: {escapes} defective parts below marginal")
# Tight never goes above midway when the good parts crowd together.
close = np.concatenate([np.linspace(-6, 0, 197), [1.0, 1.05, 5.0]])
_, m = train.calibrate(close, np.zeros(len(close)), 0.01, "tight")
if not 1.0 < np.log(m / (1 - m)) <= 1.025 + 1e-9:
    fail(f"tight: marginal at logit {np.log(m / (1 - m)):.4f}, outside (1.0, 1.025]")
# A marginal budget lowers reject until the band holds at most that share
# of all 204 parts; the marginal threshold, so escapes and false rejects,
# stay. Flagged under tight (logit >= 1.1): 1.5, 2, 3, 4 (good), 5 (good), 6.
def logit(p):
    return np.log(p / (1 - p))


for budget, expect_reject in ((None, 5.5), (0.01, 2.5), (0.0, 1.0 + train.MARGIN_LOGIT),
                              (0.5, 5.5)):
    reject, marginal = train.calibrate(logits, defect, 0.01, "tight", budget)
    if abs(logit(marginal) - (1.0 + train.MARGIN_LOGIT)) > 1e-9:
        fail(f"budget {budget}: marginal moved to logit {logit(marginal):.4f}")
    if abs(logit(reject) - expect_reject) > 1e-9:
        fail(f"budget {budget}: reject at logit {logit(reject):.4f}, expected {expect_reject}")
    band = int(np.sum((logits >= logit(marginal)) & (logits < logit(reject))))
    if budget is not None and band > budget * len(logits):
        fail(f"budget {budget}: {band} parts marginal of {len(logits)}")
# The bound on a rate: none seen in n has the closed form 1 - 0.05^(1/n);
# more seen, a higher bound, never below the rate seen.
for n in (10, 138, 1000):
    if abs(train.rate_upper_bound(0, n) - (1 - 0.05 ** (1 / n))) > 1e-9:
        fail(f"rate_upper_bound(0, {n}) = {train.rate_upper_bound(0, n)}")
b = [train.rate_upper_bound(k, 138) for k in range(5)]
if not all(b[k] < b[k + 1] and b[k] > k / 138 for k in range(4)) or \
        train.rate_upper_bound(138, 138) != 1.0:
    fail(f"rate_upper_bound over k of 138: {b}")
print("ok: calibration, midway and tight, marginal budget, rate bound")
