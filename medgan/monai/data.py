"""``SyntheticDataset``: a sampler's slices (any kind that samples) as a lazy, index-deterministic MONAI dataset."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensity
from torch.utils.data import Dataset

from medgan.device import resolve_device
from medgan.errors import InputError
from medgan.seeding import derive_seed
from medgan.synthesis import registry
from medgan.synthesis.protocols import PairSampler, Sampler

#: How the plug-in maps generator output to intensities: ``minmax`` rescales each image to
#: ``value_range`` (what ``ScaleIntensity(d)`` does to real slices), ``fixed`` maps [-1, 1]
#: linearly onto it (what ``ScaleIntensityRange(d)`` with the training range does).
INTENSITY_MODES: tuple[str, ...] = ("minmax", "fixed")


def to_range(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Map generator output in [-1, 1] linearly to ``value_range`` (``(-1, 1)`` leaves it as is)."""
    lo, hi = value_range
    if (lo, hi) == (-1.0, 1.0):
        return images
    return (images + 1.0) * ((hi - lo) / 2.0) + lo


def check_intensity(intensity: str, value_range: Sequence[float]) -> tuple[float, float]:
    """Refuse an unknown intensity mode or a range that is not two finite numbers ``(lo, hi)`` with lo < hi."""
    if intensity not in INTENSITY_MODES:
        raise InputError("intensity", f"must be one of {', '.join(INTENSITY_MODES)} (got {intensity!r})")
    try:
        values = list(value_range)
        ok = len(values) == 2 and not any(isinstance(v, bool) for v in values)
        lo, hi = (float(v) for v in values) if ok else (math.nan, math.nan)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(
            "value_range", f"must be two finite numbers (lo, hi) with lo < hi (got {value_range!r})"
        )
    return lo, hi


def check_count(name: str, value: Any) -> int:
    """A count of images: a whole number >= 0 (not a boolean, not 2.5), as an int."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(name, f"must be a whole number of images (got {value!r})")
    if value < 0:
        raise InputError(name, f"counts must be >= 0 (got {value})")
    return int(value)


def check_class(name: str, value: Any) -> str | int:
    """A class given by name (str) or index (a whole number, not a boolean or a float)."""
    if isinstance(value, bool) or not isinstance(value, str | int | np.integer):
        raise InputError(name, f"{value!r} is not a class name or index")
    return value if isinstance(value, str) else int(value)


def to_monai(images: torch.Tensor, intensity: str, value_range: tuple[float, float]) -> torch.Tensor:
    """Generator output (N, C, H, W) in [-1, 1] as MONAI's readers would give the written slices.

    The spatial axes are swapped to (N, C, W, H): MONAI's ``LoadImage`` reads a PNG (and the
    NIfTI slices medgan writes) with the first spatial axis along the image's columns. Intensities
    follow ``intensity`` (:data:`INTENSITY_MODES`); ``minmax`` uses MONAI's own
    ``ScaleIntensity`` on each image, so a constant image behaves as it does for real slices.
    """
    lo, hi = value_range
    if intensity == "minmax":
        scale = ScaleIntensity(minv=lo, maxv=hi)
        images = torch.stack([torch.as_tensor(scale(img)) for img in images]) if len(images) else images
    else:
        images = to_range(images, value_range)
    return images.transpose(-1, -2).contiguous()


def masks_to_monai(masks: torch.Tensor) -> torch.Tensor:
    """Masks (N, 1, H, W) uint8 as MONAI's ``LoadImaged`` gives the uint8 NIfTI label maps medgan
    writes: float32 0 / 1, spatial axes (W, H) like :func:`to_monai`'s images."""
    return (masks > 0).to(torch.float32).transpose(-1, -2).contiguous()


def load_synthesizer(
    checkpoint: Any, device: str | torch.device | None = None, pairs: bool = False
) -> Sampler:
    """A :class:`~medgan.synthesis.protocols.Sampler` from a checkpoint path (or pass a loaded one through);
    a checkpoint of a kind that only translates is refused with one line naming ``model.kind``.
    With ``pairs`` it must be a :class:`~medgan.synthesis.protocols.PairSampler` (slices with masks)."""
    if isinstance(checkpoint, Sampler):
        if pairs and not isinstance(checkpoint, PairSampler):
            raise InputError("pairs", f"{type(checkpoint).__name__} makes slices without masks")
        return checkpoint
    dev = resolve_device(str(device) if device is not None else "auto")
    return registry.load_pair_sampler(checkpoint, dev) if pairs else registry.load_sampler(checkpoint, dev)


class SyntheticDataset(Dataset):
    """Synthetic slices from a sampler checkpoint (a conditional GAN or a diffusion model) as MONAI dicts,
    generated lazily in batches.

    Item ``i`` is ``{"image": MetaTensor (C, W, H) float32, "label": int, "synthetic": True,
    "seed": int}`` (then ``transform``, a MONAI dictionary transform, if given): the tensor MONAI's
    ``LoadImaged`` + ``EnsureChannelFirstd`` + ``ScaleIntensityd`` give for the PNG that
    ``medgan generate`` writes for the same (checkpoint, label, seed), up to 8-bit rounding
    (see :func:`to_monai`). The plan is the one
    ``medgan generate --seed S`` uses: class-major, image ``k`` of class ``c`` seeded with
    ``derive_seed(S, c, k)``, so ``SyntheticDataset(ckpt, n_per_class=n, seed=S)[i]`` is the
    ``i``-th image that command writes.

    With ``pairs=True`` (a mask-conditioned checkpoint, ``model.kind: spade``) an item is a
    segmentation pair in MONAI's convention: ``{"image": MetaTensor (C, W, H), "label":
    MetaTensor (1, W, H) float32 0 / 1 (the lesion mask, as ``LoadImaged`` gives the NIfTI mask
    ``medgan generate --format nifti`` writes; its PNG mask is the same x 255), "class": int,
    "synthetic": True, "seed": int, "mask_source": str}``.

    Images are computed a batch at a time (fixed slices of the
    plan, so an item does not depend on access order); the last ``max_cached_batches`` batches
    are kept in memory.

    Args:
        checkpoint: a sampler checkpoint (file or run folder) or a loaded sampler.
        n_per_class: images per class: an int for every class, or ``{class name or index: n}``.
        labels: instead of ``n_per_class``, one label (name or index) per item.
        transform: applied to each item dict.
        seed: the generation seed ``S``.
        intensity: ``minmax`` (each image rescaled to ``value_range``, as ``ScaleIntensityd``
            does to real slices) or ``fixed`` ([-1, 1] mapped linearly onto ``value_range``, as
            ``ScaleIntensityRanged`` over the training range does).
        value_range: intensity range of the images; ``(0, 1)`` matches ``ScaleIntensityd``'s
            default, ``(-1, 1)`` with ``fixed`` is medgan's native range.
        device: ``auto`` (GPU when present), ``cpu`` or ``cuda[:N]``. With a GPU, use
            ``num_workers=0`` (CUDA cannot start in forked DataLoader workers) or write the set
            to disk once with ``medgan augment``.
        batch_size: images per generator call.
        pairs: items are (image, mask) pairs with the mask under ``"label"`` and the class under
            ``"class"`` (a checkpoint that draws from masks; others are refused).
        masks: with ``pairs``, a folder of mask images to draw lesions on instead of the training masks.
    """

    def __init__(
        self,
        checkpoint: Any,
        n_per_class: int | Mapping[str | int, int] | None = None,
        labels: Sequence[str | int] | None = None,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        seed: int = 0,
        value_range: tuple[float, float] = (0.0, 1.0),
        device: str | torch.device | None = None,
        batch_size: int = 256,
        intensity: str = "minmax",
        max_cached_batches: int = 64,
        pairs: bool = False,
        masks: str | Any | None = None,
    ) -> None:
        if (n_per_class is None) == (labels is None):
            raise InputError("SyntheticDataset", "give exactly one of n_per_class and labels")
        if check_count("batch_size", batch_size) < 1:
            raise InputError("batch_size", "must be at least 1")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise InputError("seed", f"must be a whole number (got {seed!r})")
        self.value_range = check_intensity(intensity, value_range)
        self.intensity = intensity
        if masks is not None and not pairs:
            raise InputError("masks", "draws the lesions of (image, mask) pairs; give pairs=True")
        self.pairs = bool(pairs)
        self.synth = load_synthesizer(checkpoint, device, pairs=self.pairs)
        if masks is not None:
            self.synth.use_masks(masks)  # type: ignore[attr-defined]
        self.classes: list[str] = list(self.synth.classes)
        self.seed, self.batch_size = int(seed), batch_size
        self.transform = transform
        # the plan: explicit (label, k) arrays, or per-class counts read lazily (a pool of any size)
        self._lab: np.ndarray | None = None
        self._k: np.ndarray | None = None
        if labels is not None:
            lab = [self.synth.label_index(check_class(f"labels[{i}]", v)) for i, v in enumerate(labels)]
            counters: dict[int, int] = {}
            ks = []
            for c in lab:
                ks.append(counters.get(c, 0))
                counters[c] = ks[-1] + 1
            self._lab, self._k = np.asarray(lab, np.int64), np.asarray(ks, np.int64)
            want: dict[int, int] = {}
        elif isinstance(n_per_class, Mapping):
            want = {
                self.synth.label_index(check_class("n_per_class", c)): check_count(f"n_per_class[{c!r}]", n)
                for c, n in n_per_class.items()
            }
        else:
            want = dict.fromkeys(range(len(self.classes)), check_count("n_per_class", n_per_class))
        self._plan_classes = np.asarray(sorted(want), np.int64)
        self._ends = np.cumsum([want[c] for c in sorted(want)], dtype=np.int64)
        self.max_cached_batches = max_cached_batches
        self._cache: OrderedDict[int, tuple[torch.Tensor, torch.Tensor | None, list[str]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lab) if self._lab is not None else int(self._ends[-1]) if len(self._ends) else 0

    def _label_k(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels, index within the class) of plan positions ``idx``."""
        if self._lab is not None and self._k is not None:
            return self._lab[idx], self._k[idx]
        pos = np.searchsorted(self._ends, idx, side="right")
        starts = np.concatenate([[0], self._ends[:-1]])
        return self._plan_classes[pos], idx - starts[pos]

    def _seeds_of(self, labels: np.ndarray, ks: np.ndarray) -> list[int]:
        return [derive_seed(self.seed, int(c), int(k)) for c, k in zip(labels, ks, strict=True)]

    def class_ranges(self) -> dict[int, tuple[int, int]] | None:
        """``{class: (first index, count)}`` of a pool made from per-class counts (None for a list
        of labels): :class:`~medgan.mixing.MixedDataset` draws from it without listing the items."""
        if self._lab is not None:
            return None
        starts = np.concatenate([[0], self._ends[:-1]])
        return {
            int(c): (int(a), int(e - a))
            for c, a, e in zip(self._plan_classes, starts, self._ends, strict=True)
        }

    @property
    def labels(self) -> np.ndarray:
        """Every item's class index (computed on first use from the per-class counts)."""
        return self._label_k(np.arange(len(self), dtype=np.int64))[0]

    @property
    def seeds(self) -> np.ndarray:
        """Every item's generation seed ``derive_seed(S, c, k)`` (computed when asked)."""
        lab, ks = self._label_k(np.arange(len(self), dtype=np.int64))
        return np.asarray(self._seeds_of(lab, ks), np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> SyntheticDataset:
        """The items at ``indices`` as a dataset of their own (same synthesizer, batches re-formed).

        :class:`~medgan.mixing.MixedDataset` uses it so that only the selected slices are ever
        generated, a batch at a time. An image depends only on its (label, seed) up to floating
        point rounding, which can differ with batch composition.
        """
        idx = np.asarray(indices, dtype=np.int64)
        sub = copy.copy(self)
        sub._lab, sub._k = self._label_k(idx)
        sub._cache = OrderedDict()
        return sub

    def _batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
        if b in self._cache:
            self._cache.move_to_end(b)
            return self._cache[b]
        idx = np.arange(b * self.batch_size, min(len(self), (b + 1) * self.batch_size), dtype=np.int64)
        lab, ks = self._label_k(idx)
        if self.pairs:
            drawn = self.synth.generate_pairs(lab.tolist(), self._seeds_of(lab, ks), self.batch_size)  # type: ignore[attr-defined]
            entry = (
                to_monai(drawn.images, self.intensity, self.value_range),
                masks_to_monai(drawn.masks),
                list(drawn.mask_sources),
            )
        else:
            imgs = self.synth.generate(lab.tolist(), self._seeds_of(lab, ks), self.batch_size)
            entry = (to_monai(imgs, self.intensity, self.value_range), None, [])
        self._cache[b] = entry
        while len(self._cache) > max(1, self.max_cached_batches):
            self._cache.popitem(last=False)
        return self._cache[b]

    def __getitem__(self, i: int) -> Any:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        b, r = divmod(i, self.batch_size)
        images, masks, sources = self._batch(b)
        img = images[r].clone()
        lab, ks = self._label_k(np.asarray([i], np.int64))
        label, seed = int(lab[0]), self._seeds_of(lab, ks)[0]
        meta = {
            "filename_or_obj": f"synthetic:{self.synth.sha256[:12]}:{label}:{seed}",
            "synthetic": True,
            "checkpoint_sha256": self.synth.sha256,
        }
        item: dict[str, Any] = {
            "image": MetaTensor(img, meta=meta),
            "label": label,
            "synthetic": True,
            "seed": seed,
        }
        if masks is not None:
            item["class"] = label
            item["label"] = MetaTensor(
                masks[r].clone(), meta={**meta, "filename_or_obj": meta["filename_or_obj"] + ":mask"}
            )
            item["mask_source"] = sources[r]
        return self.transform(item) if self.transform is not None else item
