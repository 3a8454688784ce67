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
