"""Which slices are the same image, whatever path, config or spelling they were read through.

Two sides of an evaluation (or a CAS training set and the split it is scored on) must not hold
the same images. Comparing how they were *named* misses the same test split given once as
``SOURCE:test`` and once as the ``.npz`` path, a config file or a CSV: identity has to come from
the pixels. :func:`slice_digests` hashes every slice on the 8-bit grid the files are written in
(so PNG, NPZ and in-memory copies of one image agree), and :func:`shared_slices` counts the
slices of one set that another holds. Constant slices (blank background, an all-black output)
carry no identity and are never matched.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Two sets are the same data when at least this share of either is pixel-identical to the other's
#: slices. Real datasets hold some duplicates across their splits (BUSI ~19 %, MedMNIST a few), so
#: a split compared with another split of the same source shares a minority; the same split under
#: another name shares all of it.
SHARED_LIMIT = 0.5


def slice_digests(images: np.ndarray) -> list[str | None]:
    """One digest per slice of (N, C, H, W) images in [-1, 1], on the 8-bit grid; None for a constant slice."""
    x = np.asarray(images, dtype=np.float32)
    q = np.rint((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    out: list[str | None] = []
    for s in q:
        if s.size == 0 or s.min() == s.max():
            out.append(None)
            continue
        h = hashlib.sha1(str(s.shape).encode())
        h.update(np.ascontiguousarray(s).tobytes())
        out.append(h.hexdigest())
    return out


@dataclass(frozen=True)
class Shared:
    """How many of ``n`` slices of one set are pixel-identical to slices of another."""

    count: int
    n: int

    @property
    def share(self) -> float:
        """``count / n`` (0 for an empty set)."""
        return self.count / self.n if self.n else 0.0

    @property
    def same_data(self) -> bool:
        """At least :data:`SHARED_LIMIT` of the set (and at least one slice) is in the other set."""
        return self.count > 0 and self.share >= SHARED_LIMIT


def shared_slices(images: np.ndarray | list[str | None], other: np.ndarray | list[str | None]) -> Shared:
    """How many slices of ``images`` are pixel-identical (8-bit grid) to a non-constant slice of
    ``other``; either side may be given as its :func:`slice_digests` (to hash a set once)."""
    mine = images if isinstance(images, list) else slice_digests(images)
    theirs = {d for d in (other if isinstance(other, list) else slice_digests(other)) if d is not None}
    return Shared(sum(d is not None and d in theirs for d in mine), len(mine))


#: Near-duplicate images: the cosine similarity of their mean-removed 32 x 32 grey thumbnails is at
#: least this. Measured on BUSI at 64 px: pairs above it are frames of one scan (the same lesion,
#: shifted or re-cropped); pairs from 0.80 to 0.90 on the full 64 px slices are different scans.
#: 318 of BUSI's 780 images have a near-duplicate at 0.95 (0.93: 322; 0.90: 367, with 60 pairs
#: below 0.90 at 64 px).
NEAR_DUPLICATE_COSINE = 0.95
#: Above this many slices the all-pairs search is skipped (with a warning): its cost grows as N^2.
NEAR_DUPLICATE_MAX_SLICES = 20_000


def near_duplicate_groups(images: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE) -> list[str]:
    """A group key per slice of (N, C, H, W) images: slices whose thumbnails match at ``threshold``
    or above (directly or through a chain) share a key; a slice with no near-duplicate gets ``""``.

    The thumbnail is the grey mean of the channels, area-resized to 32 x 32, mean removed and unit
    length, so brightness and contrast changes do not hide a duplicate; a constant slice never matches.
    """
    n = len(images)
    if n < 2:
        return [""] * n
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).mean(1, keepdim=True)
    t = F.interpolate(x, size=(32, 32), mode="area").reshape(n, -1).double()
    t = t - t.mean(1, keepdim=True)
    norm = t.norm(dim=1, keepdim=True)
    flat = norm[:, 0] < 1e-6
    t = t / norm.clamp_min(1e-12)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for s in range(0, n, 1024):
        sim = t[s : s + 1024] @ t.T
        for a, b in torch.nonzero(sim >= threshold).tolist():
            a += s
            if a < b and not flat[a] and not flat[b]:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = [find(i) for i in range(n)]
    sizes: dict[int, int] = {}
    for r in roots:
        sizes[r] = sizes.get(r, 0) + 1
    return [f"near{r}" if sizes[r] > 1 else "" for r in roots]
