"""DiffAugment: seeded, differentiable, per-sample parameters, no change without a policy."""

from __future__ import annotations

import torch

from medgan.synthesis.diffaugment import cutout, diff_augment, translation


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_same_seed_same_augmentation_and_gradients_flow() -> None:
    x = torch.rand(4, 1, 16, 16, requires_grad=True)
    a = diff_augment(x, ["translation", "cutout", "color"], _gen(1))
    b = diff_augment(x, ["translation", "cutout", "color"], _gen(1))
    assert torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_empty_policy_is_identity() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(diff_augment(x, [], _gen()), x)


def test_translation_shifts_whole_pixels_and_fills_black() -> None:
    x = torch.arange(64.0).reshape(1, 1, 8, 8) / 64
    for seed in range(10):
        y = translation(x, _gen(seed))
        # every value is either an original pixel value or the -1 fill
        assert torch.isin(y[y != -1], x).all()


def test_cutout_zeroes_a_quarter_at_most() -> None:
    x = torch.ones(16, 1, 16, 16)
    y = cutout(x, _gen(3))
    frac = (y == 0).float().mean(dim=(1, 2, 3))
    assert (frac > 0).all() and (frac <= 0.25 + 1e-6).all()


def test_parameters_differ_per_sample() -> None:
    x = torch.ones(8, 1, 16, 16)
    y = cutout(x, _gen(5))
    assert len({tuple(torch.nonzero(y[i, 0] == 0)[0].tolist()) for i in range(8)}) > 1
