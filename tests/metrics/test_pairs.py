"""Mask fidelity and the segmentation CAS: a lesion drawn where its mask says scores near the real
pairs; masks that do not match their images score low and miss the target."""

from __future__ import annotations

import numpy as np

from medgan.metrics.pairs import describe, pair_scores
from tests.segmenter.test_train import TINY, lesion_pairs


def test_pairs_that_match_score_like_real_ones_and_moved_masks_do_not() -> None:
    train, val, test = lesion_pairs(48, 0), lesion_pairs(16, 1), lesion_pairs(16, 2)
    good = lesion_pairs(16, 3)
    moved = (good[0], np.roll(good[1], 7, axis=-1))  # each mask 7 px off its lesion
    s = pair_scores(train, val, test, good, lesion_pairs(48, 4), TINY)
    f = s["mask_fidelity"]
    assert f["ratio"] > 0.9 and f["met"] and s["seg_cas"]["ratio"] > 0.8 and s["seg_cas"]["met"]
    bad = pair_scores(train, val, test, moved, moved, TINY)
    assert bad["mask_fidelity"]["ratio"] < 0.5 and not bad["mask_fidelity"]["met"]
    assert not bad["seg_cas"]["met"]
    assert "mask fidelity Dice" in describe(s) and "segmentation CAS" in describe(s)
