"""Scores of synthetic (image, mask) pairs: mask fidelity and the segmentation CAS (issue 28).

- **Mask fidelity**: a segmentation network trained on the real training pairs (weights chosen on
  the validation pairs) segments the synthetic images; its Dice against the mask each image was
  drawn from, beside its Dice on the real test pairs. The segmentation analogue of label
  agreement: a lesion drawn where the mask says is found there. Target: synthetic Dice at least
  0.9 x the real test Dice.
- **Segmentation CAS**: the same network trained on synthetic pairs only (as many as the real
  training pairs, in their class mix; weights chosen on the real validation pairs), Dice on the
  real test pairs, beside the real-trained network's. Target: at least 0.8 x.

Dice and HD95 are over images with a lesion (:func:`medgan.segmenter.train.score_masks`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medgan.config import SegmenterConfig
from medgan.segmenter.train import score_masks, segment, train_segmenter

FIDELITY_TARGET = 0.9
CAS_TARGET = 0.8

Pairs = tuple[np.ndarray, np.ndarray]  # images (N, C, H, W) in [-1, 1], masks (N, 1, H, W)


def _ratio(a: float, b: float) -> float | None:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else None


def pair_scores(
    train: Pairs, val: Pairs, test: Pairs, synthetic: Pairs, cas: Pairs | None, cfg: SegmenterConfig
) -> dict[str, Any]:
    """Mask fidelity of ``synthetic`` and (with ``cas``: synthetic training pairs) the segmentation CAS."""
    real_net, real_val = train_segmenter(*train, *val, cfg, "segmenter on real pairs")
    on_test = score_masks(segment(real_net, test[0]), test[1])
    on_syn = score_masks(segment(real_net, synthetic[0]), synthetic[1])
    ratio = _ratio(on_syn.dice, on_test.dice)
    out: dict[str, Any] = {
        "segmenter": cfg.model_dump(mode="json"),
        "real_segmenter": {"val_dice": real_val, "test": on_test.as_dict()},
        "mask_fidelity": {
            "synthetic": on_syn.as_dict(),
            "real_test_dice": on_test.dice,
            "ratio": ratio,
            "target": FIDELITY_TARGET,
            "met": ratio is not None and ratio >= FIDELITY_TARGET,
        },
    }
    if cas is not None:
        syn_net, syn_val = train_segmenter(*cas, *val, cfg, "segmenter on synthetic pairs")
        on_real = score_masks(segment(syn_net, test[0]), test[1])
        r = _ratio(on_real.dice, on_test.dice)
        out["seg_cas"] = {
            "n_train": len(cas[0]),
            "val_dice": syn_val,
            "test": on_real.as_dict(),
            "real_only_test_dice": on_test.dice,
            "ratio": r,
            "target": CAS_TARGET,
            "met": r is not None and r >= CAS_TARGET,
        }
    return out


def describe(scores: dict[str, Any]) -> str:
    """One line for the run log: fidelity and CAS Dice against their references and targets."""
    f = scores["mask_fidelity"]
    text = (
        f"mask fidelity Dice {f['synthetic']['dice']:.3f} vs {f['real_test_dice']:.3f} on real test"
        f" (x{f['ratio'] or float('nan'):.2f}, target x{f['target']})"
    )
    c = scores.get("seg_cas")
    if c is not None:
        text += (
            f"; segmentation CAS Dice {c['test']['dice'] or float('nan'):.3f} vs real-only {c['real_only_test_dice']:.3f}"
            f" (x{c['ratio'] or float('nan'):.2f}, target x{c['target']})"
        )
    return text
