"""Adversarial losses and the gradient penalty."""

from __future__ import annotations

import pytest
import torch

from medgan.synthesis.losses import accuracy, d_loss, g_loss, gradient_penalty


def test_hinge_values() -> None:
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert d_loss("hinge", real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert g_loss("hinge", fake).item() == pytest.approx(1.0)


def test_nonsaturating_and_wgan() -> None:
    real, fake = torch.zeros(3), torch.zeros(3)
    assert d_loss("nonsaturating", real, fake).item() == pytest.approx(
        2 * torch.log(torch.tensor(2.0)).item()
    )
    assert d_loss("wgan-gp", torch.ones(3), torch.zeros(3)).item() == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        d_loss("bogus", real, fake)


def test_gradient_penalty_of_a_linear_critic() -> None:
    w = torch.full((1, 1, 2, 2), 0.5)  # ||w|| = 1 -> penalty 0; scaled by 3 -> (3 - 1)^2 = 4

    def critic(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return (x * w * scale).sum(dim=(1, 2, 3))

    real, fake = torch.rand(4, 1, 2, 2), torch.rand(4, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    assert gradient_penalty(critic, real, fake, g).item() == pytest.approx(0.0, abs=1e-6)
    assert gradient_penalty(lambda x: critic(x, 3.0), real, fake, g).item() == pytest.approx(4.0, rel=1e-5)


def test_accuracy() -> None:
    assert tuple(float(a) for a in accuracy(torch.tensor([1.0, -1.0]), torch.tensor([-1.0, -2.0]))) == (
        0.5,
        1.0,
    )
