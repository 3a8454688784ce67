"""Seeded splits: stratified by label, grouped by patient, duplicates never straddle splits."""

from __future__ import annotations

import numpy as np

from medgan.data.splits import assign_splits


def _data(n_patients: int = 40, per: int = 5, seed: int = 0) -> tuple[list[int], list[str], list[str]]:
    rng = np.random.default_rng(seed)
    labels, pids, hashes = [], [], []
    for p in range(n_patients):
        lab = int(rng.random() < 0.3)
        for s in range(per):
            labels.append(lab)
            pids.append(f"p{p}")
            hashes.append(f"h{p}-{s}")
    return labels, pids, hashes


def test_no_patient_in_two_splits_and_fractions_roughly_met() -> None:
    labels, pids, hashes = _data()
    splits = assign_splits(labels, pids, hashes, (0.6, 0.2, 0.2), seed=1)
    by_patient: dict[str, set] = {}
    for p, s in zip(pids, splits, strict=True):
        by_patient.setdefault(p, set()).add(s)
    assert all(len(v) == 1 for v in by_patient.values())
    frac = {s: float(np.mean(splits == s)) for s in ("train", "val", "test")}
    assert abs(frac["train"] - 0.6) < 0.1 and abs(frac["val"] - 0.2) < 0.1 and abs(frac["test"] - 0.2) < 0.1


def test_label_stratification() -> None:
    labels, pids, hashes = _data(n_patients=60)
    splits = assign_splits(labels, pids, hashes, (0.7, 0.15, 0.15), seed=0)
    lab = np.asarray(labels)
    overall = lab.mean()
    for s in ("train", "val", "test"):
        assert abs(lab[splits == s].mean() - overall) < 0.12


def test_seeded_and_deterministic() -> None:
    labels, pids, hashes = _data()
    a = assign_splits(labels, pids, hashes, seed=3)
    b = assign_splits(labels, pids, hashes, seed=3)
    c = assign_splits(labels, pids, hashes, seed=4)
    assert (a == b).all()
    assert not (a == c).all()


def test_identical_images_of_different_patients_share_a_split() -> None:
    labels, pids, hashes = _data(n_patients=30, per=2)
    hashes[0] = hashes[-1] = "same-image"  # patient 0 and patient 29 share one image
    for seed in range(10):
        splits = assign_splits(labels, pids, hashes, seed=seed)
        assert splits[0] == splits[-1]
        # and so every slice of both patients is in that split
        assert set(splits[[0, 1, len(pids) - 2, len(pids) - 1]]) == {splits[0]}


def test_single_patient_goes_to_train() -> None:
    splits = assign_splits([0, 1, 0], ["a", "a", "a"], ["x", "y", "z"])
    assert list(splits) == ["train"] * 3


def test_group_numbering_follows_union_find_roots() -> None:
    """Pinned: a duplicate image linking two patients keeps the later-seen patient's root (not the first slice)."""
    from medgan.data.splits import _components

    # slices 0 and 5 are patient P, 2 and 3 patient Q; slices 3 and 5 are the same image: one group {0, 2, 3, 5}
    pids = ["P", "", "Q", "Q", "", "P"]
    hashes = ["a", "b", "c", "H", "d", "H"]
    assert _components(pids, hashes).tolist() == [1, 0, 1, 1, 2, 1]  # root 2 sorts after slice 1's group
