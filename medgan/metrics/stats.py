"""Distribution metrics on feature vectors: FID, KID, precision/recall, bootstrap confidence intervals.

All functions take two float arrays of shape (N, D) (rows = images). FID uses the exact
low-rank form of trace(sqrtm(S1 S2)) when N < D (the usual case for medical sets), which equals
the ``scipy.linalg.sqrtm`` route but costs O(N^2 D) instead of O(D^3), so a bootstrap CI is
affordable on a CPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from medgan.errors import InputError


def check_features(f: np.ndarray, name: str) -> np.ndarray:
    """Validate a feature array: 2-D, at least 2 rows, finite; returns float64."""
    a = np.asarray(f)
    if a.ndim != 2:
        raise InputError(name, f"features must be a 2-D array (N, D), got shape {a.shape}")
    if a.shape[0] < 2:
        raise InputError(name, f"needs at least 2 samples, got {a.shape[0]}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise InputError(name, f"{int(np.size(a) - np.isfinite(a).sum())} NaN/Inf feature values")
    return a


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = check_features(a, "features (set 1)"), check_features(b, "features (set 2)")
    if a.shape[1] != b.shape[1]:
        raise InputError("features", f"dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Fréchet distance between Gaussians: ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2))``."""
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = float(np.sqrt(np.clip(eig.real, 0, None)).sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets (unbiased covariances, ddof = 1)."""
    a, b = _pair(a, b)
    mu1, mu2 = a.mean(0), b.mean(0)
    x1, x2 = a - mu1, b - mu2
    n1, n2, d = len(a), len(b), a.shape[1]
    if min(n1, n2) > d:
        return frechet_distance(mu1, np.cov(a, rowvar=False), mu2, np.cov(b, rowvar=False))
    # eigenvalues of S1 S2 are those of (X1^T X2)(X2^T X1) / ((n1-1)(n2-1)): an n1 x n1 symmetric PSD matrix
    c = x1 @ x2.T
    lam = np.linalg.eigvalsh(c @ c.T / ((n1 - 1) * (n2 - 1)))
    tr_sqrt = float(np.sqrt(np.clip(lam, 0, None)).sum())
    tr1 = float((x1**2).sum() / (n1 - 1))
    tr2 = float((x2**2).sum() / (n2 - 1))
    return float(((mu1 - mu2) ** 2).sum() + tr1 + tr2 - 2.0 * tr_sqrt)


def _poly_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def kid(
    a: np.ndarray, b: np.ndarray, subset_size: int | None = None, n_subsets: int = 100, seed: int = 0
) -> tuple[float, float, int]:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel ``(x.y / d + 1)^3``.

    Averaged over ``n_subsets`` random subsets of ``subset_size`` (default ``min(1000, N_a, N_b)``,
    so small medical sets use all they have). Returns (mean, std, subset size).
    """
    a, b = _pair(a, b)
    m = int(subset_size or min(1000, len(a), len(b)))
    m = max(2, min(m, len(a), len(b)))
    rng = np.random.default_rng(seed)
    vals = [
        _poly_mmd2(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
        for _ in range(n_subsets)
    ]
    return float(np.mean(vals)), float(np.std(vals)), m


def _knn_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): k-NN balls around each set's points."""
    real, fake = _pair(real, fake)
    if min(len(real), len(fake)) <= k:
        raise InputError("precision/recall", f"needs more than k = {k} samples per set")
    r, f = torch.from_numpy(real), torch.from_numpy(fake)
    rr, rf = _knn_radius(r, k), _knn_radius(f, k)
    d = torch.cdist(f, r)  # (n_fake, n_real)
    precision = float((d <= rr[None, :]).any(dim=1).double().mean())
    recall = float((rf[None, :] >= d.T).any(dim=1).double().mean())
    return precision, recall


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap interval of ``metric(a, b)``: the resamples' percentile spread, shifted onto the estimate.

    Resampling with replacement duplicates images, which inflates FID-like statistics (fewer
    distinct samples), so the plain percentile interval may not even contain the estimate ``t``.
    The interval returned is ``[t - (mean - q_lo), t + (q_hi - mean)]``: the sampling spread at
    this N around ``t``. (FID is also biased by N itself; compare only at equal N, see the floor.)
    """
    t = metric(a, b)

    def resampled(ia: np.ndarray, ib: np.ndarray) -> float:
        return metric(a[ia], b[ib])

    # scipy.stats.bootstrap draws the resamples (one at a time, a's indices then b's: the same draws as
    # before); its own percentile interval is not the one wanted here, so only the distribution is used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        if n_boot < 2:  # scipy's (unused) standard error of a single resample divides by zero
            warnings.simplefilter("ignore", RuntimeWarning)
        vals = stats.bootstrap(
            (np.arange(len(a)), np.arange(len(b))),
            resampled,
            n_resamples=n_boot,
            batch=1,
            vectorized=False,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).bootstrap_distribution
    q_lo, q_hi = np.percentile(vals, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    mean = float(np.mean(vals))
    return float(t - (mean - q_lo)), float(t + (q_hi - mean))


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al., ICML 2020), with k-NN balls around the **real** points only.

    Density: the mean number of real balls that contain a synthetic point, divided by k (about 1
    when the two sets match; above 1 when samples crowd dense real regions). Coverage: the share of
    real points whose ball holds at least one synthetic point (0-1). Both are more robust to real
    outliers than k-NN precision / recall, which matters at the small N of medical sets.
    """
    real, fake = _pair(real, fake)
    if len(real) <= k:
        raise InputError("density/coverage", f"needs more than k = {k} real samples")
    r, f = torch.from_numpy(real), torch.from_numpy(fake)
    rr = _knn_radius(r, k)
    inside = torch.cdist(r, f) <= rr[:, None]  # (n_real, n_fake)
    density = float(inside.double().sum() / (k * len(fake)))
    coverage = float(inside.any(dim=1).double().mean())
    return density, coverage


def proportional_counts(labels: np.ndarray, n: int, n_classes: int) -> list[int]:
    """``n`` split over classes in the proportions of ``labels`` (largest remainder).

    Every class present in ``labels`` gets at least one slice when ``n`` allows it (taken from the
    largest count).
    """
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n_classes).astype(np.float64)
    if counts.sum() == 0:
        raise ValueError("no labels to take proportions from")
    exact = counts / counts.sum() * n
    out = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - out), kind="stable")[: n - int(out.sum())]:
        out[i] += 1
    present = counts > 0
    while n >= int(present.sum()) and (out[present] == 0).any():  # a rare class still gets one slice
        out[np.flatnonzero(present & (out == 0))[0]] += 1
        out[int(np.argmax(out))] -= 1
    return out.tolist()
