"""Adversarial losses for the conditional GAN: hinge (default), non-saturating, WGAN-GP."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss from scores on real and fake batches (WGAN-GP: without the penalty)."""
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "nonsaturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "wgan-gp":
        return fake.mean() - real.mean()
    raise ValueError(f"unknown loss {kind!r}")


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss from the discriminator's scores on generated images."""
    if kind == "nonsaturating":
        return F.softplus(-fake).mean()
    if kind in ("hinge", "wgan-gp"):
        return -fake.mean()
    raise ValueError(f"unknown loss {kind!r}")


def gradient_penalty(
    score: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """Gulrajani et al.'s penalty ``(||grad D(x_hat)||_2 - 1)^2`` on random interpolates of real and fake."""
    eps = torch.rand((real.shape[0], 1, 1, 1), generator=gen, device=gen.device).to(real.device, real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = score(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def accuracy(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Share of real scored > 0 and of fake scored < 0 (the decision boundary of every loss here).

    0-d tensors on the scores' device, so that a training step does not wait for the GPU.
    """
    return (real > 0).float().mean(), (fake < 0).float().mean()
