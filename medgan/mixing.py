"""Mixing synthetic slices into real training sets: policies, loss weights, confidence filtering, subsampling.

:class:`MixedDataset` is the one place where real and synthetic training samples meet (the
study and, later, the MONAI plug-in use it). Policies:

* ``add``: real plus ``ratio`` x |real| synthetic, drawn per class in the real class proportions;
* ``balance``: synthetic samples of the minority classes up to the majority count (``ratio``
  scales the gap: 1 closes it);
* ``replace``: a fraction ``ratio`` of each class's real samples is swapped for synthetic ones.

Each item carries ``synthetic`` and a loss ``weight`` (``synthetic_weight`` for synthetic
samples, 1 for real), so a training loop can down-weight synthetic data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medgan.errors import ConfigError, InputError

POLICIES = ("add", "balance", "replace")


def stratified_subsample(
    labels: np.ndarray, fraction: float, seed: int, min_per_class: int = 2
) -> np.ndarray:
    """Indices of a seeded, class-stratified subsample keeping ``fraction`` of each class (sorted)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError("fraction", f"must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(round(fraction * len(idx)), 0)
        if n < min_per_class:
            raise InputError(
                "data",
                f"class {int(c)} keeps {n} slices at fraction {fraction:g} (needs at least {min_per_class})",
            )
        keep.append(rng.choice(idx, n, replace=False))
    return np.sort(np.concatenate(keep))


def filter_by_confidence(
    images: np.ndarray, labels: np.ndarray, predict_proba: Callable[[np.ndarray], np.ndarray], min_prob: float
) -> np.ndarray:
    """Boolean mask of synthetic samples whose intended class a real-trained classifier gives >= ``min_prob``."""
    p = predict_proba(images)
    return p[np.arange(len(labels)), labels] >= min_prob


def plan_mix(
    labels: np.ndarray, ratio: float, policy: str, rng: np.random.Generator
) -> tuple[np.ndarray, dict[int, int]]:
    """Which real samples stay and how many synthetic ones each class gets, under ``policy``.

    Returns (sorted indices of the real samples kept, {class: number of synthetic samples}).
    ``add``: all real, ``round(ratio * n_c)`` synthetic; ``balance``: all real,
    ``round(ratio * (n_max - n_c))`` synthetic; ``replace``: ``round(ratio * n_c)`` real samples
    of each class (drawn with ``rng``) are dropped and as many synthetic ones take their place.
    """
    if policy not in POLICIES:
        raise ConfigError("policy", f"must be one of {', '.join(POLICIES)} (got {policy!r})")
    labels = np.asarray(labels).astype(np.int64)
    real_idx = np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    if policy == "add":
        return real_idx, {int(c): round(ratio * n) for c, n in zip(classes, counts, strict=True)}
    if policy == "balance":
        top = counts.max()
        return real_idx, {int(c): round(ratio * (top - n)) for c, n in zip(classes, counts, strict=True)}
    take: dict[int, int] = {}
    drop = []
    for c, n in zip(classes, counts, strict=True):
        k = round(ratio * n)
        take[int(c)] = k
        drop.append(rng.choice(np.flatnonzero(labels == c), k, replace=False))
    return np.setdiff1d(real_idx, np.concatenate(drop)), take


def labels_of(source: Any, name: str, label_key: str = "label") -> np.ndarray:
    """Class indices of every sample of ``source`` without loading images where possible.

    ``source`` is ``(images, labels)``, a dataset with a ``labels`` array (``SyntheticDataset``),
    a MONAI ``Dataset`` / ``CacheDataset`` (labels read from its ``data`` list of dicts, before
    any transform), or any sequence of dicts (each item is loaded once).
    """
    if isinstance(source, tuple):
        y = np.asarray(source[1]).reshape(-1)
        if (
            y.dtype == bool
            or y.dtype.kind not in "iuf"
            or (y.dtype.kind == "f" and not (np.isfinite(y) & (y == np.round(y))).all())
        ):
            raise InputError(name, f"labels must be whole class indices (got dtype {y.dtype})")
        return y.astype(np.int64)
    if hasattr(source, "labels") and not callable(source.labels):
        return np.asarray(source.labels).astype(np.int64).reshape(-1)
    rows = getattr(source, "data", None)
    if (
        not isinstance(rows, Sequence)
        or len(rows) != len(source)
        or not all(isinstance(r, Mapping) for r in rows)
    ):
        rows = [source[i] for i in range(len(source))]
    out = []
    for i, r in enumerate(rows):
        if label_key not in r:
            raise InputError(name, f"item {i} has no {label_key!r} key")
        out.append(class_index(r[label_key], f"{name} item {i}"))
    return np.asarray(out, dtype=np.int64)


def class_index(value: Any, where: str, n_classes: int | None = None) -> int:
    """The class index a sample's label means: an int (or 0-d / one-element integer array or
    tensor) or a one-hot vector (``n_classes`` long when given). A boolean, a fractional or
    non-finite number, or a one-hot vector of another length is a one-line error naming ``where``."""
    if isinstance(value, str):
        raise InputError(where, f"label {value!r} is a name; give the class index")
    arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    if arr.dtype == bool or arr.dtype.kind not in "iuf" or arr.size == 0:
        raise InputError(where, f"label {value!r} is not a class index (an int or a one-hot vector)")
    flat = arr.reshape(-1).astype(np.float64)
    if not np.isfinite(flat).all():
        raise InputError(where, f"label {value!r} is not finite")
    if flat.size > 1:  # one-hot
        if n_classes is not None and flat.size != n_classes:
            raise InputError(where, f"a one-hot label of length {flat.size} for {n_classes} classes")
        return int(flat.argmax())
    if flat[0] != round(flat[0]):
        raise InputError(where, f"label {flat[0]:g} is not a whole class index")
    return int(flat[0])


def label_like(template: Any, label: int) -> Any:
    """``label`` in the form of ``template``, a real sample's label: an int stays an int; a
    numpy array or tensor keeps its type, dtype and shape ((), (1,) or a one-hot vector).

    So synthetic and real dicts collate together whatever label shape the user's data has.
    """
    if isinstance(template, torch.Tensor | np.ndarray):
        n = int(np.prod(template.shape)) if template.shape else 1
        values = np.zeros(n, dtype=np.float64)
        if n > 1:
            if not 0 <= label < n:
                raise InputError(
                    "label", f"class {label} does not fit the real samples' one-hot labels of length {n}"
                )
            values[label] = 1.0  # one-hot
        else:
            values[0] = label
        arr = values.reshape(tuple(template.shape))
        if isinstance(template, torch.Tensor):
            return torch.as_tensor(arr, dtype=template.dtype)
        return arr.astype(template.dtype)
    if isinstance(template, np.generic):
        return template.dtype.type(label)
    return int(label)


def _label_template(source: Any, label_key: str = "label") -> Any:
    """The first sample's label as the user stored it (None for arrays: their labels are ints)."""
    if isinstance(source, tuple) or len(source) == 0:
        return None
    rows = getattr(source, "data", None)
    first = (
        rows[0] if isinstance(rows, Sequence) and len(rows) and isinstance(rows[0], Mapping) else source[0]
    )
    return first.get(label_key) if isinstance(first, Mapping) else None


def _check_mix_args(ratio: float, policy: str, synthetic_weight: float) -> None:
    """A known policy, a positive ratio (at most 1 for ``replace``), a non-negative synthetic weight."""
    if policy not in POLICIES:
        raise ConfigError("policy", f"must be one of {', '.join(POLICIES)} (got {policy!r})")
    for name, v in (("ratio", ratio), ("synthetic_weight", synthetic_weight)):
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float | np.integer | np.floating)
            or not math.isfinite(v)
        ):
            raise ConfigError(name, f"must be a finite number (got {v!r})")
    if ratio <= 0:
        raise ConfigError("ratio", f"must be > 0 (got {ratio})")
    if policy == "replace" and ratio > 1:
        raise ConfigError(
            "ratio", f"'replace' swaps a fraction of the real data: ratio must be <= 1 (got {ratio})"
        )
    if synthetic_weight < 0:
        raise ConfigError("synthetic_weight", "must be >= 0")


def _real_labels(real: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``(labels, images)`` of the real source (images only for an ``(images, labels)`` tuple), not empty."""
    ry = labels_of(real, "real")
    rx = None
    if isinstance(real, tuple):
        rx = np.asarray(real[0])
        if len(rx) != len(ry) or len(rx) == 0:
            raise InputError("real", f"{len(rx)} images but {len(ry)} labels")
    elif len(ry) == 0:
        raise InputError("real", "the dataset is empty")
    return ry, rx


def _class_pools(synthetic: Any) -> dict[int, tuple[int, int]] | np.ndarray:
    """Each class's synthetic items: ``{class: (first index, count)}`` for a lazy pool whose
    classes are contiguous (a :class:`~medgan.monai.SyntheticDataset` of per-class counts, read
    without listing its items), else every item's label."""
    ranges = getattr(synthetic, "class_ranges", None)
    if callable(ranges):
        found = ranges()
        if found is not None:
            return found
    return labels_of(synthetic, "synthetic")


def _pick_synthetic(
    pools: dict[int, tuple[int, int]] | np.ndarray,
    syn_take: dict[int, int],
    rng: np.random.Generator,
    cap: bool,
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Draw ``syn_take[c]`` synthetic samples of each class ``c`` from ``pools`` (:func:`_class_pools`):
    (sorted indices, their labels, shortfall).

    With ``cap`` a class whose pool is too small gives all it has and ``shortfall`` records how
    many were missing; without it, that raises. A contiguous pool draws the same items as the
    same pool listed label by label.
    """
    shortfall: dict[int, int] = {}
    picks, labs = [], []
    for c, k in syn_take.items():
        if isinstance(pools, dict):
            start, n = pools.get(c, (0, 0))
        else:
            pool = np.flatnonzero(pools == c)
            start, n = 0, len(pool)
        if k > n and cap:
            shortfall[c] = k - n
            k = n
        if k > n:
            raise InputError("synthetic", f"class {c} needs {k} synthetic slices but only {n} were generated")
        chosen = rng.choice(n, k, replace=False)
        picks.append(start + chosen if isinstance(pools, dict) else pool[chosen])
        labs.append(np.full(k, c, np.int64))
    idx = np.concatenate(picks).astype(np.int64) if picks else np.zeros(0, np.int64)
    lab = np.concatenate(labs) if labs else np.zeros(0, np.int64)
    order = np.argsort(idx, kind="stable")
    return idx[order], lab[order], shortfall


class MixedDataset(Dataset):
    """Real and synthetic slices under a mixing policy; items are MONAI-style dicts.

    ``real`` and ``synthetic`` are ``(images (N, C, H, W) float32 in [-1, 1], labels (N,))``, or
    datasets of dicts with an ``"image"`` and a ``"label"`` key: a MONAI ``Dataset`` /
    ``CacheDataset`` (with its transforms), a :class:`~medgan.monai.SyntheticDataset`, any
    sequence of dicts. Items: the source's dict (or, for arrays, ``{"image": Tensor (C, H, W),
    "label": int}``) plus ``"synthetic": bool`` and ``"weight": float``. The selection is
    fixed at construction (seeded), so every epoch sees the same mixture; with datasets only the
    labels are read for it (from a MONAI dataset's ``data`` list when it has one). With ``cap``, a
    class whose synthetic pool is too small contributes all it has (``shortfall`` records how
    many were missing) instead of raising. ``images`` exists when both sources are arrays.
    """

    def __init__(
        self,
        real: tuple[np.ndarray, np.ndarray] | Sequence[Mapping[str, Any]],
        synthetic: tuple[np.ndarray, np.ndarray] | Sequence[Mapping[str, Any]] | None,
        ratio: float = 1.0,
        policy: str = "add",
        synthetic_weight: float = 1.0,
        seed: int = 0,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cap: bool = False,
    ) -> None:
        _check_mix_args(ratio, policy, synthetic_weight)
        arrays = isinstance(real, tuple) and (synthetic is None or isinstance(synthetic, tuple))
        self._sources = (real, synthetic)
        ry, rx = _real_labels(real)
        self.transform = transform
        self.shortfall: dict[int, int] = {}
        rng = np.random.default_rng(seed)
        real_idx = np.arange(len(ry))
        syn_take: dict[int, int] = {}
        if synthetic is not None:
            real_idx, syn_take = plan_mix(ry, ratio, policy, rng)
        sx = None
        syn_idx, syn_y = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if synthetic is not None and sum(syn_take.values()) > 0:
            pools = _class_pools(synthetic)
            if arrays:
                sx = np.asarray(synthetic[0])
                if sx.shape[1:] != rx.shape[1:]:
                    raise InputError("synthetic", f"slices {sx.shape[1:]} differ from real {rx.shape[1:]}")
            syn_idx, syn_y, self.shortfall = _pick_synthetic(pools, syn_take, rng, cap)
        if arrays:
            self.images = np.concatenate(
                [rx[real_idx]] + ([sx[syn_idx]] if sx is not None and len(syn_idx) else [])
            )
        self.labels = np.concatenate([ry[real_idx], syn_y])
        self.source_index = np.concatenate([real_idx, syn_idx]).astype(np.int64)
        if synthetic is not None and hasattr(synthetic, "subset") and len(syn_idx):
            # a lazy synthetic dataset: generate only the selected slices, in batches of their own
            self._sources = (real, synthetic.subset(syn_idx))
            self.source_index[len(real_idx) :] = np.arange(len(syn_idx))
        n_real = len(real_idx)
        self.synthetic = np.arange(len(self.labels)) >= n_real
        self.weights = np.where(self.synthetic, float(synthetic_weight), 1.0).astype(np.float32)
        self.n_real, self.n_synthetic = n_real, int(self.synthetic.sum())
        self._label_template = _label_template(real)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        syn = bool(self.synthetic[i])
        if hasattr(self, "images"):
            item: dict[str, Any] = {
                "image": torch.from_numpy(np.ascontiguousarray(self.images[i], dtype=np.float32)),
                "label": int(self.labels[i]),
            }
        else:
            src = self._sources[1 if syn else 0]
            j = int(self.source_index[i])
            if isinstance(src, tuple):
                item = {
                    "image": torch.from_numpy(np.ascontiguousarray(src[0][j], dtype=np.float32)),
                    "label": int(np.asarray(src[1])[j]),
                }
            else:
                got = src[j]
                if not isinstance(got, Mapping):
                    raise InputError("synthetic" if syn else "real", f"item {j} is not a dict")
                item = dict(got)
                if syn and self._label_template is not None:
                    item["label"] = label_like(self._label_template, int(self.labels[i]))
            item.setdefault("seed", -1)  # real samples: so real and synthetic dicts collate together
        item["synthetic"] = syn
        item["weight"] = np.float32(self.weights[i])  # collates to float32, the dtype of a model's loss
        return self.transform(item) if self.transform is not None else item

    def class_counts(self) -> dict[str, dict[int, int]]:
        """Per-class counts of real and synthetic samples."""
        out: dict[str, dict[int, int]] = {"real": {}, "synthetic": {}}
        for name, mask in (("real", ~self.synthetic), ("synthetic", self.synthetic)):
            vals, cnt = np.unique(self.labels[mask], return_counts=True)
            out[name] = {int(v): int(c) for v, c in zip(vals, cnt, strict=True)}
        return out
