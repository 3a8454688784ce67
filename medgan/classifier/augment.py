"""Classical augmentation for the study's comparison arm, from MONAI transforms (seeded, per sample)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch


@contextlib.contextmanager
def untracked() -> Iterator[None]:
    """MONAI transforms inside return plain tensors, without ``MetaTensor`` bookkeeping: the same
    numbers, 2.2-2.4x faster per slice (``benchmarks.augment_speed``, docs/benchmarks.md), which is
    most of a classical arm's cost on a few thousand slices. The global setting is restored after."""
    from monai.data import get_track_meta, set_track_meta

    was = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(was)


def classical_augmentation(seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A batch transform: random flip, rotation (+-15 deg), scaling (+-10 %), translation (+-2 px),
    intensity scale and shift (+-10 %), as MONAI ``Rand*`` transforms with a fixed random state."""
    from monai.transforms import Compose, RandAffine, RandFlip, RandScaleIntensity, RandShiftIntensity

    t = Compose(
        [
            RandFlip(prob=0.5, spatial_axis=1),
            RandAffine(
                prob=0.8,
                rotate_range=(0.26,),
                scale_range=(0.1, 0.1),
                translate_range=(2, 2),
                padding_mode="border",
            ),
            RandScaleIntensity(factors=0.1, prob=0.5),
            RandShiftIntensity(offsets=0.1, prob=0.5),
        ]
    )
    t.set_random_state(seed)

    def apply(batch: torch.Tensor) -> torch.Tensor:
        with untracked():
            out = [torch.as_tensor(t(x)).as_subclass(torch.Tensor).float() for x in batch]
        return torch.stack(out).clamp_(-1.0, 1.0)

    return apply
