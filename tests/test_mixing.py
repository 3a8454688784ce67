"""Mixing policies, loss weights, confidence filtering and stratified subsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medgan.errors import ConfigError, InputError
from medgan.mixing import (
    MixedDataset,
    _check_mix_args,
    _pick_synthetic,
    _real_labels,
    filter_by_confidence,
    stratified_subsample,
)


def _set(counts: dict[int, int], value: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([np.full(n, c) for c, n in counts.items()])
    images = (
        np.full((len(labels), 1, 4, 4), value, np.float32)
        + np.arange(len(labels))[:, None, None, None] * 1e-3
    )
    return images, labels


REAL = _set({0: 30, 1: 10}, -0.5)
SYN = _set({0: 100, 1: 100}, 0.5)


def test_add_keeps_real_and_class_proportions() -> None:
    ds = MixedDataset(REAL, SYN, ratio=0.5, policy="add", seed=1)
    assert ds.n_real == 40 and ds.n_synthetic == 20
    assert ds.class_counts() == {"real": {0: 30, 1: 10}, "synthetic": {0: 15, 1: 5}}


def test_balance_fills_minority_up_to_majority() -> None:
    ds = MixedDataset(REAL, SYN, policy="balance")
    counts = ds.class_counts()
    assert counts["synthetic"] == {1: 20} and counts["real"] == {0: 30, 1: 10}


def test_replace_swaps_a_fraction() -> None:
    ds = MixedDataset(REAL, SYN, ratio=0.5, policy="replace", seed=2)
    assert ds.class_counts() == {"real": {0: 15, 1: 5}, "synthetic": {0: 15, 1: 5}}
    assert len(ds) == 40


def test_items_weights_and_loader() -> None:
    ds = MixedDataset(REAL, SYN, ratio=1.0, synthetic_weight=0.3)
    batch = next(iter(DataLoader(ds, batch_size=80)))
    assert batch["image"].shape == (80, 1, 4, 4)
    syn = batch["synthetic"]
    assert (
        torch.allclose(batch["weight"][syn].float(), torch.tensor(0.3))
        and (batch["weight"][~syn] == 1.0).all()
    )
    assert (batch["image"][syn] > 0).all() and (batch["image"][~syn] < 0).all()


def test_deterministic_for_a_seed() -> None:
    a = MixedDataset(REAL, SYN, ratio=1.0, seed=5)
    b = MixedDataset(REAL, SYN, ratio=1.0, seed=5)
    c = MixedDataset(REAL, SYN, ratio=1.0, seed=6)
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)


def test_no_synthetic_is_real_only() -> None:
    ds = MixedDataset(REAL, None)
    assert ds.n_synthetic == 0 and len(ds) == 40


def test_bad_mixing() -> None:
    with pytest.raises(ConfigError, match="ratio: must be > 0"):
        MixedDataset(REAL, SYN, ratio=0)
    with pytest.raises(ConfigError, match="policy"):
        MixedDataset(REAL, SYN, policy="stack")
    with pytest.raises(ConfigError, match="<= 1"):
        MixedDataset(REAL, SYN, ratio=2, policy="replace")
    with pytest.raises(InputError, match="only 100 were generated"):
        MixedDataset(REAL, SYN, ratio=5)


def test_mix_args_and_real_labels_checked() -> None:
    _check_mix_args(1.0, "replace", 0.0)
    with pytest.raises(ConfigError, match="policy: must be one of add, balance, replace"):
        _check_mix_args(1.0, "swap", 1.0)
    with pytest.raises(ConfigError, match="ratio must be <= 1"):
        _check_mix_args(1.5, "replace", 1.0)
    ry, rx = _real_labels(REAL)
    assert rx is not None and rx.shape == (40, 1, 4, 4) and ry.dtype == np.int64
    ry, rx = _real_labels([{"label": 1}, {"label": 0}])
    assert rx is None and ry.tolist() == [1, 0]
    with pytest.raises(InputError, match="real: 40 images but 39 labels"):
        _real_labels((REAL[0], REAL[1][:-1]))
    with pytest.raises(InputError, match="real: the dataset is empty"):
        _real_labels([])


def test_pick_synthetic_counts_and_cap() -> None:
    sy = np.array([0, 0, 0, 1, 1])
    idx, lab, short = _pick_synthetic(sy, {0: 2, 1: 1}, np.random.default_rng(0), cap=False)
    assert short == {} and list(idx) == sorted(idx) and np.bincount(sy[idx]).tolist() == [2, 1]
    assert lab.tolist() == sy[idx].tolist()
    # the same pool given as contiguous class ranges (a lazy SyntheticDataset) draws the same items
    ranged = _pick_synthetic({0: (0, 3), 1: (3, 2)}, {0: 2, 1: 1}, np.random.default_rng(0), cap=False)
    assert ranged[0].tolist() == idx.tolist() and ranged[1].tolist() == lab.tolist()
    idx, lab, short = _pick_synthetic(sy, {0: 1, 1: 4}, np.random.default_rng(0), cap=True)
    assert short == {1: 2} and np.bincount(sy[idx]).tolist() == [1, 2]  # class 1 gives all it has
    with pytest.raises(InputError, match="class 1 needs 4 synthetic slices but only 2 were generated"):
        _pick_synthetic(sy, {0: 1, 1: 4}, np.random.default_rng(0), cap=False)


def test_stratified_subsample() -> None:
    labels = np.array([0] * 80 + [1] * 20)
    idx = stratified_subsample(labels, 0.25, seed=0)
    assert (labels[idx] == 0).sum() == 20 and (labels[idx] == 1).sum() == 5
    assert not np.array_equal(idx, stratified_subsample(labels, 0.25, seed=1))
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        stratified_subsample(labels, 1.5, seed=0)
    with pytest.raises(InputError, match="class 1 keeps 1"):
        stratified_subsample(labels, 0.05, seed=0)


def test_filter_by_confidence() -> None:
    images, labels = np.zeros((4, 1, 2, 2)), np.array([0, 1, 0, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])
    mask = filter_by_confidence(images, labels, lambda x: proba, 0.5)
    assert mask.tolist() == [True, False, False, True]
