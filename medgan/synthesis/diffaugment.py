"""Differentiable augmentation (Zhao et al., NeurIPS 2020) for every discriminator input, vectorised.

Each op draws its parameters per sample from a caller-supplied ``torch.Generator`` (so training
is reproducible and resumable) and is applied to real and generated batches alike; gradients
flow through to the generator. No per-sample Python loops.

* ``translation``: integer shifts up to 1/8 of the size, the uncovered border filled with -1
  (black, the usual background of a medical slice, rather than the original's 0 = mid-grey).
* ``cutout``: one square of half the size per image set to 0, as in the original.
* ``color``: brightness ``x + U(-0.5, 0.5)`` and contrast ``(x - mean) * U(0.5, 1.5) + mean``
  (and saturation for RGB), as in the original.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

POLICIES = ("translation", "cutout", "color")

#: Below this many training images ``auto`` adds ``color`` (the DiffAugment authors' advice for
#: datasets of "hundreds of images"); from it on, ``translation`` + ``cutout`` (their default).
AUTO_COLOR_BELOW = 1000


def resolve_policy(policy: str | Sequence[str], n_images: int) -> list[str]:
    """The ops to apply: ``policy`` itself, or for ``"auto"`` the policy for ``n_images`` training images."""
    if isinstance(policy, str):
        if policy != "auto":
            raise ValueError(f"unknown DiffAugment policy {policy!r}")
        ops = ["translation", "cutout"]
        return [*ops, "color"] if n_images < AUTO_COLOR_BELOW else ops
    return list(policy)


def _rand(n: int, gen: torch.Generator, device: torch.device, *shape: int) -> torch.Tensor:
    return torch.rand((n, *shape), generator=gen, device=gen.device).to(device)


def color(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random brightness, saturation (RGB only) and contrast per sample."""
    n = x.shape[0]
    x = x + (_rand(n, gen, x.device, 1, 1, 1).to(x.dtype) - 0.5)
    if x.shape[1] == 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_rand(n, gen, x.device, 1, 1, 1).to(x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(n, gen, x.device, 1, 1, 1).to(x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by whole pixels (up to ``ratio`` of its size); fill with -1."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n,), generator=gen, device=gen.device).to(x.device)
    dx = torch.randint(-sw, sw + 1, (n,), generator=gen, device=gen.device).to(x.device)
    rows = torch.arange(h, device=x.device)[None, :] - dy[:, None]  # (n, h) source row per output row
    cols = torch.arange(w, device=x.device)[None, :] - dx[:, None]
    valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    r = rows.clamp(0, h - 1)[:, None, :, None].expand(n, x.shape[1], h, w)
    out = torch.gather(x, 2, r)
    c = cols.clamp(0, w - 1)[:, None, None, :].expand(n, x.shape[1], h, w)
    out = torch.gather(out, 3, c)
    return torch.where(valid[:, None], out, torch.full_like(out, -1.0))


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square of ``ratio`` x size per image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n,), generator=gen, device=gen.device).to(x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n,), generator=gen, device=gen.device).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :] - (oy[:, None] - ch // 2)
    xs = torch.arange(w, device=x.device)[None, :] - (ox[:, None] - cw // 2)
    inside = ((ys >= 0) & (ys < ch))[:, :, None] & ((xs >= 0) & (xs < cw))[:, None, :]
    return x * (~inside)[:, None].to(x.dtype)


def diff_augment(x: torch.Tensor, policy: Sequence[str], gen: torch.Generator) -> torch.Tensor:
    """Apply the ops of ``policy`` in the canonical order color -> translation -> cutout."""
    for op in POLICIES if policy else ():
        if op not in policy:
            continue
        x = {"color": color, "translation": translation, "cutout": cutout}[op](x, gen)
    return x
