"""FID / KID / precision-recall against closed forms and torchmetrics; clear errors for bad features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgan.errors import InputError
from medgan.metrics.stats import bootstrap_ci, fid, frechet_distance, kid, precision_recall


def test_fid_of_a_set_with_itself_is_zero() -> None:
    a = np.random.default_rng(0).normal(size=(200, 64))
    assert abs(fid(a, a)) < 1e-6


def test_fid_of_gaussians_matches_closed_form() -> None:
    # N(mu1, s1^2 I) vs N(mu2, s2^2 I): |mu1 - mu2|^2 + d (s1 - s2)^2
    rng = np.random.default_rng(1)
    d, n = 8, 200_000
    a = rng.normal(0.0, 1.0, size=(n, d))
    b = rng.normal(0.5, 2.0, size=(n, d))
    expected = d * 0.5**2 + d * (1.0 - 2.0) ** 2
    assert fid(a, b) == pytest.approx(expected, rel=0.02)


def test_low_rank_path_equals_full_sqrtm_and_torchmetrics() -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(2)
    a = rng.normal(size=(120, 300))
    b = rng.normal(size=(90, 300)) * 1.3 + 0.2
    ours = fid(a, b)  # n < d: the low-rank path
    full = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert ours == pytest.approx(full, rel=1e-6)

    class Identity(torch.nn.Module):
        num_features = 300

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    tm = FrechetInceptionDistance(feature=Identity())
    tm.update(torch.from_numpy(a), real=True)
    tm.update(torch.from_numpy(b), real=False)
    assert ours == pytest.approx(float(tm.compute()), rel=1e-3)


def test_kid_near_zero_for_one_distribution() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 32)), rng.normal(size=(300, 32))
    mean, std, m = kid(a, b, subset_size=100, n_subsets=50)
    assert abs(mean) < 3 * std + 1e-3 and m == 100
    far, _, _ = kid(a, b + 1.0, subset_size=100, n_subsets=20)
    assert far > 10 * abs(mean)


def test_precision_recall() -> None:
    rng = np.random.default_rng(4)
    real = rng.normal(size=(300, 8))
    p, r = precision_recall(real, rng.normal(size=(300, 8)))
    assert p > 0.8 and r > 0.8
    p, r = precision_recall(real, rng.normal(size=(300, 8)) * 0.1)  # collapsed: precise, poor recall
    assert p > 0.9 and r < 0.3


def test_bootstrap_interval_contains_the_estimate() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(100, 16)), rng.normal(size=(100, 16)) + 0.3
    lo, hi = bootstrap_ci(fid, a, b, n_boot=50)
    assert lo < fid(a, b) < hi


def test_bad_features() -> None:
    a = np.zeros((10, 4))
    with pytest.raises(InputError, match="at least 2 samples"):
        fid(a, a[:1])
    with pytest.raises(InputError, match="2-D"):
        fid(a, np.zeros(10))
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fid(a, bad)
    with pytest.raises(InputError, match="dimensions differ"):
        fid(a, np.zeros((10, 5)))
