"""Exponential moving average of a network's weights (used for the generator)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` in eval mode, to be updated with :func:`update_ema`."""
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for parameters; buffers are copied."""
    ema_params = dict(ema.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    # one fused multi-tensor kernel instead of one launch per parameter
    torch._foreach_lerp_(
        [ema_params[n] for n in names], [p.detach() for _, p in model.named_parameters()], 1.0 - decay
    )
    ema_buffers = dict(ema.named_buffers())
    for name, b in model.named_buffers():
        ema_buffers[name].copy_(b)


def ema_beta(
    decay: float, kimg: float | None, rampup: float | None, images_seen: int, batch_size: int
) -> float:
    """The EMA decay for this step.

    ``kimg`` None: the fixed ``decay``. Otherwise StyleGAN2-ADA's schedule (Karras et al. 2020):
    the EMA's half-life is ``kimg`` thousand images, capped during ramp-up at ``rampup`` x the
    images seen so far, so the average forgets its random start quickly and then settles:
    ``beta = 0.5 ** (batch_size / half_life_images)``.
    """
    if kimg is None:
        return decay
    nimg = kimg * 1000.0
    if rampup is not None:
        nimg = min(nimg, images_seen * rampup)
    return 0.5 ** (batch_size / max(nimg, 1e-8))
