"""Diversity (within-class MS-SSIM, mean pairwise feature distance) and memorization (nearest real neighbours)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

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


def memorization(
    syn_images: np.ndarray,
    syn_features: np.ndarray,
    train_images: np.ndarray,
    train_features: np.ndarray,
    percentile: float = 1.0,
) -> dict[str, object]:
    """Nearest real training image of each synthetic one, in feature and in pixel space.

    A synthetic image is flagged as a copy when, in either space, its distance is 0 or below the
    ``percentile``-th percentile of the real training images' own nearest-neighbour distances.
    """
    px_s, px_t = syn_images.reshape(len(syn_images), -1), train_images.reshape(len(train_images), -1)
    out: dict[str, object] = {}
    flags = np.zeros(len(syn_images), bool)
    for space, s, t in (("feature", syn_features, train_features), ("pixel", px_s, px_t)):
        d, i = nearest(s, t)
        ref, _ = nearest(t, t, exclude_self=True)
        thr = float(np.percentile(ref, percentile))
        f = (d < thr) | (d == 0)
        flags |= f
        out[space] = {"threshold": thr, "flagged": int(f.sum()), "nn_distance": d, "nn_index": i}
    out["flagged"] = flags
    out["count"] = int(flags.sum())
    return out


def closest_pairs_grid(
    syn_images: np.ndarray,
    train_images: np.ndarray,
    dist: np.ndarray,
    idx: np.ndarray,
    path: Path,
    k: int = 8,
) -> Path:
    """PNG grid of the ``k`` synthetic images closest to a training image: top row synthetic, bottom row its neighbour."""
    order = np.argsort(dist)[:k]
    tiles = np.concatenate([syn_images[order], train_images[idx[order]]]).astype(np.float32)
    grid = make_grid(tiles, len(order))
    if grid.shape[0] not in (1, 3):
        grid = grid[:1]
    return write_png(path, grid)
