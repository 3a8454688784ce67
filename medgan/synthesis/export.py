"""Synthesizers as TorchScript: modules that draw each seed's noise themselves, for ``medgan export-bundle``.

:func:`seeded_noise` is :func:`medgan.seeding.noise_for_seeds` written so that TorchScript can
compile it (the same integer hashing and float64 Box-Muller, op for op), so a scripted module
gives the images ``medgan generate`` gives for the same (label, seed).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

# TorchScript cannot read module globals, so the SplitMix64 constants of medgan.synthesis.cgan
# (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB as signed int64), the bit masks,
# 2**-53 and 2*pi are written out as literals below; tests/test_bundle.py checks that the noise
# equals noise_for_seeds bit for bit.


def _mix64_ts(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ ((z >> 30) & 17179869183)) * -4658895280553007687
    z = (z ^ ((z >> 27) & 137438953471)) * -7723592293110705685
    return z ^ ((z >> 31) & 8589934591)


def seeded_noise(seeds: torch.Tensor, z_dim: int) -> torch.Tensor:
    """TorchScript-compatible :func:`~medgan.synthesis.cgan.noise_for_seeds`: (N,) int64 seeds -> (N, z_dim) float32.

    Same integer hashing and float64 Box-Muller, op for op, so the vectors are bit-identical.
    """
    s = seeds.to(torch.int64)
    half = (z_dim + 1) // 2
    j = torch.arange(1, 2 * half + 1, dtype=torch.int64, device=s.device)
    x = _mix64_ts(_mix64_ts(s).unsqueeze(1) + j.unsqueeze(0) * -7046029254386353131)
    u = (((x >> 11) & 9007199254740991).double() + 0.5) * 1.1102230246251565e-16
    r = torch.sqrt(-2.0 * torch.log(u[:, :half]))
    theta = 6.283185307179586 * u[:, half:]
    return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)[:, :z_dim].float()


class SeededGenerator(nn.Module):
    """``forward(seeds, labels)``: a conditional generator that draws its own per-seed noise; images in [-1, 1]."""

    def __init__(self, generator: nn.Module, z_dim: int, n_classes: int) -> None:
        super().__init__()
        self.generator = generator
        self.z_dim = z_dim
        self.n_classes = n_classes

    def forward(self, seeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) int64 seeds and class indices -> (N, C, H, W) float32 images in [-1, 1]."""
        if seeds.dim() != 1 or labels.dim() != 1 or seeds.size(0) != labels.size(0):
            raise ValueError("seeds and labels must be 1-D tensors of the same length")
        if labels.numel() > 0 and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError("labels must be class indices in [0, n_classes)")
        z = seeded_noise(seeds, self.z_dim)
        return self.generator(z, labels.to(torch.int64).to(z.device)).float()


def script_generator(generator: nn.Module, z_dim: int, n_classes: int) -> torch.jit.ScriptModule:
    """A CPU, eval-mode, gradient-free TorchScript :class:`SeededGenerator` around ``generator`` (scripted, else traced)."""
    g = copy.deepcopy(generator).cpu().eval().to(memory_format=torch.contiguous_format)
    for p in g.parameters():
        p.requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still supported
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            inner: nn.Module = torch.jit.script(g)
        except Exception:  # a generator TorchScript cannot compile: trace it (shapes stay dynamic in N)
            z = torch.zeros(2, z_dim)
            inner = torch.jit.trace(g, (z, torch.zeros(2, dtype=torch.int64)), check_trace=False)
        module = torch.jit.script(SeededGenerator(inner, z_dim, n_classes))
    return module.eval()
