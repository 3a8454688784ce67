"""The segmentation network the pair scores use: it learns a lesion, its scores follow the convention."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.config import SegmenterConfig
from medgan.errors import InputError
from medgan.segmenter.train import score_masks, segment, train_segmenter

TINY = SegmenterConfig(channels=[8, 16], res_units=0, epochs=25, batch_size=16, patience=25, lr=3e-3)


def lesion_pairs(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Noisy grey slices, every other one with a bright asymmetric L-shaped lesion and its mask."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.9, -0.2, (n, 1, size, size)).astype(np.float32)
    m = np.zeros((n, 1, size, size), np.uint8)
    for i in range(1, n, 2):
        r, c = rng.integers(1, size - 7, 2)
        m[i, 0, r : r + 6, c : c + 2] = 1
        m[i, 0, r + 4 : r + 6, c : c + 5] = 1
    x[m > 0] = rng.uniform(0.5, 0.9, int(m.sum()))
    return x, m


def test_scores_follow_the_lesion_convention() -> None:
    t = np.zeros((3, 1, 4, 4), np.uint8)
    t[0, 0, :2, :2] = 1  # a lesion, found by half
    t[1, 0, 2:, 2:] = 1  # a lesion, missed
    p = np.zeros_like(t)
    p[0, 0, :2, :1] = 1
    p[2, 0, 0, 0] = 1  # no lesion, but one predicted
    s = score_masks(p, t)
    assert s.n_lesion == 2 and s.n_missed == 1
    assert s.dice == pytest.approx((2 * 2 / 6 + 0.0) / 2)
    assert s.false_positive_rate == 1.0 and np.isnan(s.dice_per_image[2])


def test_a_segmenter_learns_the_lesion_and_is_seeded() -> None:
    x, m = lesion_pairs(48, 0)
    vx, vm = lesion_pairs(16, 1)
    tx, tm = lesion_pairs(16, 2)
    net, val_dice = train_segmenter(x, m, vx, vm, TINY)
    s = score_masks(segment(net, tx), tm)
    assert val_dice > 0.7 and s.dice > 0.7 and s.false_positive_rate <= 0.25
    net2, _ = train_segmenter(x, m, vx, vm, TINY)
    assert np.array_equal(segment(net2, tx), segment(net, tx))  # same seed, same network


def test_augmented_training_is_the_same_without_monai_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pair augmentation runs on plain tensors for speed; the weights equal those of MetaTensors."""
    import contextlib

    import torch

    from medgan.segmenter import train as seg_train

    x, m = lesion_pairs(16, 0)
    cfg = TINY.model_copy(update={"epochs": 1, "augment": True})
    fast, _ = train_segmenter(x, m, x, m, cfg)
    monkeypatch.setattr(seg_train, "untracked", contextlib.nullcontext)
    slow, _ = train_segmenter(x, m, x, m, cfg)
    a, b = fast.state_dict(), slow.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_pairs_are_refused_in_one_line() -> None:
    x, m = lesion_pairs(4, 0)
    with pytest.raises(InputError, match="segmenter: train: images"):
        train_segmenter(x, m[:, :, :8], x, m, TINY)
    with pytest.raises(InputError, match="validation pairs hold no lesion"):
        train_segmenter(x, m, x[::2], m[::2], TINY)
