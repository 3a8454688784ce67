"""Seeded train/val/test splits: stratified by label, grouped by patient, duplicates kept together."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPLITS = ("train", "val", "test")


def _components(patient_ids: Sequence[str], hashes: Sequence[str], *more: Sequence[str]) -> np.ndarray:
    """Group index per slice: slices sharing a patient, an identical image or a key of ``more``
    (near-duplicate groups) share a group (union-find).

    Groups are numbered in the order of their union-find roots, and that numbering feeds the seeded
    group order of :func:`assign_splits`. Kept hand-written: ``scipy.sparse.csgraph.connected_components``
    finds the same groups but numbers them by their first slice, which differs once a duplicate image
    links two patients (43 of 300 random sets) and then moves slices between splits (9 of 300).
    """
    n = len(patient_ids)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for keys in (patient_ids, hashes, *more):
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k is None or k == "":
                continue
            if k in first:
                a, b = find(i), find(first[k])
                if a != b:
                    parent[a] = b
            else:
                first[k] = i
    roots = np.array([find(i) for i in range(n)])
    _, group = np.unique(roots, return_inverse=True)
    return group


def assign_splits(
    labels: Sequence[int],
    patient_ids: Sequence[str],
    hashes: Sequence[str],
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    near: Sequence[str] | None = None,
) -> np.ndarray:
    """Assign each slice to train / val / test.

    Whole groups (a patient, together with every slice whose image is byte-identical to one of
    theirs, or in one ``near``-duplicate group with one: :func:`medgan.data.identity.near_duplicate_groups`)
    go to one split. Groups are visited in a seeded random order, largest first, and each
    goes to the split that is furthest below its target share, measured per label so that the
    label mix of every split follows the whole set. Deterministic for a given seed.
    """
    n = len(labels)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    labels_arr = np.asarray(labels)
    group = _components(list(patient_ids), list(hashes), *([list(near)] if near is not None else []))
    n_groups = int(group.max()) + 1
    classes, lab_idx = np.unique(labels_arr, return_inverse=True)
    counts = np.zeros((n_groups, len(classes)))
    np.add.at(counts, (group, lab_idx), 1)
    frac = np.asarray(fractions, dtype=float)
    target = frac[:, None] * counts.sum(0)[None, :]  # (3, n_classes)
    have = np.zeros_like(target)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-counts[order].sum(1), kind="stable")]
    split_of_group = np.zeros(n_groups, dtype=int)
    for g in order:
        c = counts[g]
        # how far below target each split is for this group's labels, relative to the target size
        need = ((target - have) * c[None, :]).sum(1) / np.maximum((target * c[None, :]).sum(1), 1e-9)
        need[frac <= 0] = -np.inf
        s = int(np.argmax(need))
        split_of_group[g] = s
        have[s] += c
    for i, s in enumerate(split_of_group[group]):
        out[i] = SPLITS[s]
    return out
