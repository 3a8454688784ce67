"""Diversity (within-class MS-SSIM, mean pairwise feature distance) and memorization (nearest real neighbours)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import binom

from medgan.grids import make_grid
from medgan.io.images import write_png

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_params(hw: tuple[int, int], kernel_size: int = 3) -> tuple[int, tuple[float, ...]]:
    """Kernel size and scale weights valid for ``hw``: as many of the standard 5 scales as fit.

    MONAI's ``MultiScaleSSIMMetric`` needs ``min(H, W) > (kernel - 1) * 2^(scales - 1)``; at 28 px
    with a 3x3 kernel that allows 4 scales. The standard weights are truncated and renormalised.
    """
    n = 5
    while n > 1 and min(hw) <= (kernel_size - 1) * 2 ** (n - 1):
        n -= 1
    w = np.asarray(MSSSIM_WEIGHTS[:n])
    return kernel_size, tuple(float(v) for v in w / w.sum())


def within_class_ms_ssim(
    images: np.ndarray, labels: np.ndarray, n_pairs: int = 200, seed: int = 0
) -> dict[str, float]:
    """Mean MS-SSIM of random same-class pairs (1 = identical images; lower = more diverse), per class and overall."""
    from monai.metrics import MultiScaleSSIMMetric

    k, weights = ms_ssim_params(tuple(images.shape[2:]))
    metric = MultiScaleSSIMMetric(
        spatial_dims=2, data_range=2.0, kernel_size=k, weights=weights, reduction="none"
    )
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    vals_all = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        i = rng.choice(idx, n_pairs)
        j = rng.choice(idx, n_pairs)
        keep = i != j
        if not keep.any():
            continue
        a = torch.from_numpy(np.ascontiguousarray(images[i[keep]], dtype=np.float32))
        b = torch.from_numpy(np.ascontiguousarray(images[j[keep]], dtype=np.float32))
        v = metric(a, b).flatten().numpy()
        out[str(int(c))] = float(v.mean())
        vals_all.append(v)
    out["mean"] = float(np.concatenate(vals_all).mean()) if vals_all else float("nan")
    return out


def mean_pairwise_distance(
    features: np.ndarray, labels: np.ndarray, max_n: int = 2000, seed: int = 0
) -> float:
    """Mean L2 distance between feature vectors of different images of the same class."""
    rng = np.random.default_rng(seed)
    vals = []
    for c in np.unique(labels):
        f = features[labels == c]
        if len(f) < 2:
            continue
        if len(f) > max_n:
            f = f[rng.choice(len(f), max_n, replace=False)]
        d = torch.cdist(torch.from_numpy(f), torch.from_numpy(f))
        n = len(f)
        vals.append(float(d.sum() / (n * (n - 1))))
    return float(np.mean(vals)) if vals else float("nan")


def nearest(query: np.ndarray, ref: np.ndarray, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Distance to and index of each query row's nearest ``ref`` row (L2), in chunks."""
    r = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float64))
    dist, idx = [], []
    for s in range(0, len(query), 512):
        q = torch.from_numpy(np.ascontiguousarray(query[s : s + 512], dtype=np.float64))
        d = torch.cdist(q, r)
        if exclude_self:
            d[torch.arange(len(q)), torch.arange(s, s + len(q))] = float("inf")
        v, i = d.min(dim=1)
        dist.append(v.numpy())
        idx.append(i.numpy())
    return np.concatenate(dist), np.concatenate(idx)


#: Pearson correlation at or above which a slice counts as an exact copy of a training slice (identical
#: up to 8-bit rounding or a global brightness / contrast change).
EXACT_CORRELATION = 0.99995


def _standardised(images: np.ndarray) -> torch.Tensor:
    """Each image as a zero-mean, unit-norm float64 vector (Pearson correlation becomes a dot product)."""
    v = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float64).reshape(len(images), -1))
    v = v - v.mean(dim=1, keepdim=True)
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest_correlation(
    query: np.ndarray, ref: np.ndarray, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of each query image with its most correlated ``ref`` image, and that image's index.

    Correlation ignores a global brightness or contrast change; Akbar et al. (2025) found it shows
    diffusion models copying training images where FID does not.
    """
    r = _standardised(ref)
    sims, idx = [], []
    for s in range(0, len(query), 512):
        c = _standardised(query[s : s + 512]) @ r.T
        if exclude_self:
            c[torch.arange(len(c)), torch.arange(s, s + len(c))] = -float("inf")
        v, i = c.max(dim=1)
        sims.append(v.numpy())
        idx.append(i.numpy())
    return np.concatenate(sims), np.concatenate(idx)


def memorization(
    syn_images: np.ndarray,
    syn_features: np.ndarray,
    train_images: np.ndarray,
    train_features: np.ndarray,
    heldout_images: np.ndarray | None = None,
    heldout_features: np.ndarray | None = None,
    alpha: float = 0.01,
    confidence: float = 0.99,
) -> dict[str, Any]:
    """Near-copies of training images among the synthetic ones, calibrated on real held-out slices.

    Each synthetic image's nearest training image is found in pixel space (Pearson correlation) and
    in feature space (L2). The thresholds come from **real slices the synthesizer never saw**
    (``heldout_*``: the evaluation split; without it, each training slice against the others): a
    synthetic image is flagged when it is more correlated with a training slice than all but
    ``alpha`` of the held-out slices are, or closer to one in feature space than all but ``alpha``
    of them. Held-out slices that are exact duplicates of training slices (correlation >=
    :data:`EXACT_CORRELATION`: a data set's own duplicates) are set aside for the thresholds and
    counted (``reference_duplicates``).

    New real slices would be flagged at the held-out rate ``reference_rate`` (about ``2 alpha``), so
    ``count`` flags of N are compared with ``allowed``, the ``confidence`` quantile of
    Binomial(N, ``reference_rate``): ``excess`` = the flags beyond it, and never fewer than the
    ``exact`` copies (an exact copy is no chance event). ``excess`` is what the ``memorized_max``
    gate counts.
    """
    heldout = heldout_images is not None and heldout_features is not None and len(heldout_images) >= 2
    if heldout:
        assert heldout_images is not None and heldout_features is not None
        ref_sim, _ = nearest_correlation(heldout_images, train_images)
        ref_dist, _ = nearest(heldout_features, train_features)
    else:
        ref_sim, _ = nearest_correlation(train_images, train_images, exclude_self=True)
        ref_dist, _ = nearest(train_features, train_features, exclude_self=True)
    dup = ref_sim >= EXACT_CORRELATION
    keep = ~dup if (~dup).sum() >= 2 else np.ones_like(dup)
    sim_thr = float(np.quantile(ref_sim[keep], 1.0 - alpha))
    dist_thr = float(np.quantile(ref_dist[keep], alpha))
    ref_rate = float(((ref_sim[keep] > sim_thr) | (ref_dist[keep] < dist_thr)).mean())

    sim, sim_idx = nearest_correlation(syn_images, train_images)
    dist, dist_idx = nearest(syn_features, train_features)
    exact = (sim >= EXACT_CORRELATION) | (dist == 0)
    by_pixel, by_feature = sim > sim_thr, dist < dist_thr
    flags = by_pixel | by_feature | exact
    n = len(syn_images)
    allowed = int(binom.ppf(confidence, n, ref_rate)) if n else 0
    count = int(flags.sum())
    return {
        "pixel": {
            "measure": "Pearson correlation with the most correlated training slice",
            "threshold": sim_thr,
            "flagged": int(by_pixel.sum()),
            "nn_similarity": sim,
            "nn_index": sim_idx,
        },
        "feature": {
            "measure": "L2 distance to the nearest training slice",
            "threshold": dist_thr,
            "flagged": int(by_feature.sum()),
            "nn_distance": dist,
            "nn_index": dist_idx,
        },
        "flagged": flags,
        "count": count,
        "exact": int(exact.sum()),
        "reference": "held-out real slices" if heldout else "training slices (leave one out)",
        "n_reference": len(ref_sim),
        "reference_duplicates": int(dup.sum()),
        "reference_rate": ref_rate,
        "alpha": alpha,
        "allowed": allowed,
        "excess": max(count - allowed, int(exact.sum())),
    }


def closest_pairs_grid(
    syn_images: np.ndarray,
    train_images: np.ndarray,
    dist: np.ndarray,
    idx: np.ndarray,
    path: Path,
    k: int = 8,
) -> Path:
    """PNG grid of the ``k`` synthetic images closest to a training image (smallest ``dist``): top row
    synthetic, bottom row its neighbour."""
    order = np.argsort(dist)[:k]
    tiles = np.concatenate([syn_images[order], train_images[idx[order]]]).astype(np.float32)
    grid = make_grid(tiles, len(order))
    if grid.shape[0] not in (1, 3):
        grid = grid[:1]
    return write_png(path, grid)
