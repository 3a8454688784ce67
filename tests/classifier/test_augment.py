"""Classical augmentation: seeded, plain tensors, and the same numbers with MONAI's metadata off."""

from __future__ import annotations

import contextlib

import pytest
import torch
from monai.data import get_track_meta

from medgan.classifier import augment
from medgan.classifier.augment import classical_augmentation, untracked


def test_untracked_gives_the_tracked_numbers_and_restores_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = torch.linspace(-1, 1, 6 * 20 * 24).reshape(6, 1, 20, 24)  # asymmetric: flips and turns show
    fast = classical_augmentation(7)(x)
    monkeypatch.setattr(augment, "untracked", contextlib.nullcontext)  # MONAI's MetaTensors throughout
    slow = classical_augmentation(7)(x)
    assert type(fast) is torch.Tensor and fast.shape == x.shape and fast.dtype == torch.float32
    assert torch.equal(fast, slow) and not torch.equal(fast, x)
    assert torch.equal(fast, classical_augmentation(7)(x)) and not torch.equal(
        fast, classical_augmentation(8)(x)
    )
    assert get_track_meta()
    with pytest.raises(RuntimeError), untracked():
        assert not get_track_meta()
        raise RuntimeError
    assert get_track_meta()  # restored even when the work inside fails
