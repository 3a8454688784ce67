"""Adversarial losses and regularisers for the conditional GAN.

Losses: hinge (default), non-saturating, WGAN-GP, and ``rpgan`` — the relativistic pairing loss
of R3GAN (Huang et al. 2025): ``softplus(D(fake) - D(real))`` for D and the mirror for G, each
fake paired with a real of the same batch position. Regularisers: R1 / R2 gradient penalties
(Mescheder et al. 2018; R3GAN uses both) and LeCam (Tseng et al. 2021).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss from scores on real and fake batches (WGAN-GP: without the penalty)."""
    if kind == "rpgan":
        return F.softplus(fake - real).mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "nonsaturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "wgan-gp":
        return fake.mean() - real.mean()
    raise ValueError(f"unknown loss {kind!r}")


def g_loss(kind: str, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """Generator loss from the discriminator's scores on generated images (``rpgan`` also needs the real scores)."""
    if kind == "rpgan":
        if real is None:
            raise ValueError("the rpgan loss pairs fake with real scores: pass real")
        return F.softplus(real - fake).mean()
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


def grad_penalty_at(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``E ||grad_x D(x)||^2`` at the given points (R1 at real images, R2 at generated ones)."""
    x = x.detach().requires_grad_(True)
    out = score(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.float().flatten(1).pow(2).sum(1).mean()


class LeCam:
    """LeCam regulariser (Tseng et al., CVPR 2021): pulls D's scores towards EMAs of its scores on the other kind.

    ``reg = E[relu(D(real) - ema_fake)^2] + E[relu(ema_real - D(fake))^2]``; it bounds how far the
    discriminator can separate real from fake, which keeps it from overfitting a small training set.
    The two EMAs are state (saved in checkpoints, restored on resume).
    """

    def __init__(self, decay: float = 0.99, device: torch.device | str = "cpu") -> None:
        self.decay = decay
        self.ema = torch.zeros(2, device=device)  # (real, fake)
        self.started = torch.zeros((), dtype=torch.bool, device=device)

    @torch.no_grad()
    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """Fold this step's mean scores into the EMAs (the first step sets them)."""
        cur = torch.stack([real.mean(), fake.mean()]).float()
        d = torch.where(
            self.started, torch.tensor(self.decay, device=cur.device), torch.zeros((), device=cur.device)
        )
        self.ema.copy_(d * self.ema + (1 - d) * cur)
        self.started.fill_(True)

    def __call__(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The regulariser for this step's scores (call :meth:`update` first)."""
        return F.relu(real - self.ema[1]).pow(2).mean() + F.relu(self.ema[0] - fake).pow(2).mean()
