"""Seeds and generators (medgan.seeding): global seeding, dedicated generators, derived seeds."""

from __future__ import annotations

import random

import numpy as np
import torch

from medgan.seeding import derive_seed, make_generator, noise_for_seeds, seed_everything


def test_seed_everything_seeds_python_numpy_and_torch() -> None:
    seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(123)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    seed_everything(2**40 + 5)  # NumPy takes the seed modulo 2**32, the others as given
    big = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(2**40 + 5)
    np.random.seed(5)
    torch.manual_seed(2**40 + 5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == big


def test_make_generator_is_independent_of_the_global_state() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, generator=make_generator(7))
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3, generator=make_generator(7)), x)


def test_derive_seed_is_pinned_and_63_bit() -> None:
    s = derive_seed(7, 1, 1)
    assert s == derive_seed(7, 1, 1) and 0 <= s < 2**63
    assert len({derive_seed(0, c, k) for c in range(3) for k in range(100)}) == 300
    assert derive_seed(-1) == derive_seed(2**64 - 1)  # parts are taken modulo 2**64


def test_noise_for_seeds_shape_and_dtype() -> None:
    z = noise_for_seeds([1, 2, 3], 5)
    assert z.shape == (3, 5) and z.dtype == torch.float32
    assert torch.equal(noise_for_seeds(torch.tensor([2]), 5)[0], z[1])
