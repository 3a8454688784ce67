"""Seeds and random-number generators: global seeding, dedicated generators, derived seeds, per-seed noise.

A leaf module (it imports nothing else from medgan), so any layer can use it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators.

    Not ``monai.utils.set_determinism``: that also turns cuDNN's deterministic mode on and its
    benchmark mode off for the whole process, and folds every seed modulo 2**32, so a run's kernels
    (and, for seeds outside [0, 2**32), its random draws) would change.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A dedicated ``torch.Generator`` on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (e.g. run seed, label, index) with NumPy's SeedSequence."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(
        1, dtype=np.uint64
    )
    return int(state[0] >> np.uint64(1))


_GOLDEN = 0x9E3779B97F4A7C15 - 2**64  # SplitMix64 constants as signed int64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64


def _mix64(z: torch.Tensor) -> torch.Tensor:
    """The SplitMix64 finaliser on int64 tensors (wrapping multiply, logical shifts)."""
    z = (z ^ ((z >> 30) & ((1 << 34) - 1))) * _MIX1
    z = (z ^ ((z >> 27) & ((1 << 37) - 1))) * _MIX2
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def noise_for_seeds(seeds: Sequence[int], z_dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """One standard-normal vector per seed, a pure function of (seed, z_dim): independent of batching.

    Counter-based and vectorised (no per-seed Python loop, so it keeps up with a GPU): the j-th
    uniform of seed s is SplitMix64(SplitMix64(s) + j x golden ratio), 53 bits, and pairs of
    uniforms become normals by Box-Muller in float64. Integer hashing is exact everywhere, so
    CPU and CUDA draw the same vectors (float64 transcendentals agree to well below float32).
    """
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):  # float64 is not available everywhere (e.g. MPS)
        return noise_for_seeds(seeds, z_dim, "cpu").to(dev)
    s = torch.as_tensor(list(seeds) if not isinstance(seeds, torch.Tensor) else seeds, dtype=torch.int64)
    s = s.to(dev)
    half = (z_dim + 1) // 2
    j = torch.arange(1, 2 * half + 1, dtype=torch.int64, device=dev)
    x = _mix64(_mix64(s)[:, None] + j[None, :] * _GOLDEN)
    u = (((x >> 11) & ((1 << 53) - 1)).double() + 0.5) * (1.0 / 2**53)  # in (0, 1)
    r = torch.sqrt(-2.0 * torch.log(u[:, :half]))
    theta = (2.0 * torch.pi) * u[:, half:]
    return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)[:, :z_dim].float()
