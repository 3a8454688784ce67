"""What every synthesizer's inference object offers: the typed protocols callers use.

A checkpoint loads (:func:`medgan.synthesis.registry.load`) into an object of one of two shapes:

- a :class:`Sampler` makes slices from a class and a seed (the conditional GAN, the diffusion
  model): ``generate(labels, seeds)``, ``sample_counts(counts, seed)``;
- a :class:`PairSampler` is a sampler whose slices come with their lesion masks (mask-conditioned
  synthesis): ``generate_pairs(labels, seeds)``;
- a :class:`Translator` turns real slices into the other domain (the CycleGAN):
  ``translate(images, direction)``, ``translate_labelled(images, labels)``.

Both carry the checkpoint's typed metadata (``meta``), its SHA-256, the slice shape and the
device. A sampler whose network can be written as TorchScript also offers ``export()``
(:class:`Exportable`), which ``medgan export-bundle`` uses. :class:`SamplerBase` holds what
every sampler shares (class lookup, per-class sample sets), so a kind writes only ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from medgan.errors import InputError
from medgan.seeding import derive_seed
from medgan.training.checkpoint import CheckpointMeta


@runtime_checkable
class Synthesizer(Protocol):
    """A trained synthesizer loaded from a checkpoint."""

    meta: CheckpointMeta
    sha256: str
    shape: tuple[int, int, int]
    device: torch.device


@runtime_checkable
class Sampler(Synthesizer, Protocol):
    """Makes slices from a class and a seed; image i is a pure function of (checkpoint, labels[i], seeds[i])."""

    classes: list[str]

    def label_index(self, name_or_index: str | int) -> int:
        """Class index from a class name or index; one-line error when the checkpoint has no such class."""
        ...

    def generate(
        self,
        labels: Sequence[int],
        seeds: Sequence[int],
        batch_size: int | None = None,
        precision: str = "fp32",
    ) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] on the CPU."""
        ...

    def sample_counts(
        self, counts: Sequence[int], seed: int, precision: str = "fp32"
    ) -> tuple[np.ndarray, np.ndarray]:
        """``counts[c]`` samples of each class ``c`` (grouped by class) and their labels."""
        ...


@runtime_checkable
class Translator(Synthesizer, Protocol):
    """Translates real slices between two domains (A and B)."""

    domains: dict[str, Any]

    def translate(self, images: torch.Tensor, direction: str, batch_size: int = 64) -> torch.Tensor:
        """(N, C, H, W) images in [-1, 1] translated ``A2B`` or ``B2A``."""
        ...

    def translate_labelled(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every slice of either domain translated into the other, labelled with its target."""
        ...


@dataclass(frozen=True)
class Pairs:
    """Synthetic slices with the masks they were drawn from (a :class:`PairSampler`'s output)."""

    images: torch.Tensor  # (N, C, H, W) float32 in [-1, 1], on the CPU
    masks: torch.Tensor  # (N, 1, H, W) uint8, 1 = lesion
    mask_sources: list[str]  # the mask each one was drawn from (a training mask or a file of a mask folder)
    mask_transforms: list[str]  # how it was moved (flip, rotation, scale, shift, elastic), one line each


@runtime_checkable
class PairSampler(Sampler, Protocol):
    """A sampler whose slices are drawn where a mask says: each image comes with its lesion mask."""

    def generate_pairs(
        self,
        labels: Sequence[int],
        seeds: Sequence[int],
        batch_size: int | None = None,
        precision: str = "fp32",
    ) -> Pairs:
        """Images and their masks; pair i is a pure function of (checkpoint, labels[i], seeds[i])."""
        ...

    def draw_masks(
        self, labels: Sequence[int], seeds: Sequence[int]
    ) -> tuple[torch.Tensor, list[str], list[str]]:
        """The masks (N, 1, H, W) uint8 that pairs (labels[i], seeds[i]) are drawn on, with each
        one's source and transform, without running the network."""
        ...

    def use_masks(self, folder: str | Path) -> None:
        """Draw masks from a folder of mask images instead of the training masks."""
        ...

    def masks_digest(self) -> str:
        """SHA-256 of the masks drawn from (the training masks or a folder's), for records."""
        ...


@dataclass
class Export:
    """A sampler as a self-contained TorchScript module, for ``medgan export-bundle``.

    ``module.forward(seeds, labels)`` takes int64 tensors of equal length and returns float32
    images (N, C, H, W) in [-1, 1], equal to :meth:`Sampler.generate` for the same pairs.
    """

    module: torch.jit.ScriptModule
    weights: dict[str, torch.Tensor]  # the network's weights (safetensors beside the TorchScript file)
    what: str  # e.g. "class-conditional GAN generator"
    noise: str  # how the module draws each seed's noise
    network: dict[str, Any] = field(default_factory=dict)  # sampler settings for the metadata
    references: list[str] = field(default_factory=list)
    tolerance: float = 1e-5  # how far the module may be from ``generate`` (max abs difference)


@runtime_checkable
class Exportable(Protocol):
    """A sampler that can be written as TorchScript."""

    def export(self) -> Export:
        """The module, its weights and what the bundle's metadata says about it."""
        ...


class SamplerBase:
    """What every sampler shares: class lookup by name or index, and per-class sample sets."""

    classes: list[str]

    def generate(
        self,
        labels: Sequence[int],
        seeds: Sequence[int],
        batch_size: int | None = None,
        precision: str = "fp32",
    ) -> torch.Tensor:  # pragma: no cover - every sampler defines it
        """Images (N, C, H, W) in [-1, 1] on the CPU."""
        raise NotImplementedError

    def label_index(self, name_or_index: str | int) -> int:
        """Class index from a class name or index; one-line error when absent from the checkpoint."""
        if isinstance(name_or_index, int) or (
            str(name_or_index).isdigit() and str(name_or_index) not in self.classes
        ):
            i = int(name_or_index)
            if 0 <= i < len(self.classes):
                return i
        elif str(name_or_index) in self.classes:
            return self.classes.index(str(name_or_index))
        raise InputError(f"class {name_or_index!r}", f"not in the checkpoint's classes {self.classes}")

    def sample_counts(
        self, counts: Sequence[int], seed: int, precision: str = "fp32"
    ) -> tuple[np.ndarray, np.ndarray]:
        """``counts[c]`` samples of each class ``c``, grouped by class; image ``k`` of class ``c`` comes
        from ``derive_seed(seed, c, k)`` (as ``medgan generate``), so a larger count extends a smaller one.
        ``precision``: as :meth:`generate` (``bf16`` where the device runs it natively)."""
        labels = [c for c, n in enumerate(counts) for _ in range(n)]
        seeds = [derive_seed(seed, c, k) for c, n in enumerate(counts) for k in range(n)]
        return self.generate(labels, seeds, precision=precision).numpy(), np.asarray(labels, np.int64)
