"""How much a file header may claim before a reader allocates memory for it.

A header states the size of the data that follows (DICOM Rows x Columns x frames, NIfTI
``dim``, the shape in a ``.npy`` header, PNG width x height). A broken or hostile file can claim
terabytes in a few bytes, so every reader checks the claim *before* allocating:

* the number of values must not exceed :func:`max_voxels` (``$MEDGAN_MAX_VOXELS``, default
  2**30, i.e. 4 GiB as float32), and
* the data must be able to fit in the file: uncompressed data must be present in full, and
  zlib-compressed data cannot expand more than :data:`ZLIB_MAX_RATIO` times.

A refused claim raises a one-line :class:`~medgan.errors.InputError` naming the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from medgan.errors import ConfigError, InputError

#: Environment variable that sets the limit on the values one header may claim.
MAX_VOXELS_ENV = "MEDGAN_MAX_VOXELS"
#: Default limit: 2**30 values (4 GiB as float32), above any single real volume or MedMNIST array.
DEFAULT_MAX_VOXELS = 2**30
#: Deflate (zlib, gzip, zip) expands at most 1032:1 (RFC 1951: 258 bytes from a 2-bit code, 1 bit amortised).
ZLIB_MAX_RATIO = 1032


def max_voxels() -> int:
    """The largest number of values (voxels x channels) one file header may claim."""
    raw = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_VOXELS
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        raise ConfigError(MAX_VOXELS_ENV, f"must be a positive whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(MAX_VOXELS_ENV, f"must be a positive whole number, got {raw!r}")
    return value


def check_claim(
    path: str | Path,
    shape: Sequence[int],
    *,
    what: str = "the header",
    itemsize: float | None = None,
    available: int | None = None,
    compressed: int | None = None,
) -> int:
    """Refuse a claimed array ``shape`` before it is allocated; returns its number of values.

    ``itemsize`` is bytes per value (fractions for packed bits). With ``available`` (bytes of
    uncompressed data the file holds) the claim must fit in them; with ``compressed`` (bytes of
    zlib-compressed data) it must fit in ``ZLIB_MAX_RATIO`` times them. Raises a one-line
    :class:`InputError` naming ``path`` when the shape has a negative size, exceeds
    :func:`max_voxels`, or cannot fit in the file.
    """
    dims = [int(d) for d in shape]
    shown = "x".join(str(d) for d in dims) or "()"
    if any(d < 0 for d in dims):
        raise InputError(path, f"{what} claims a negative size ({shown})")
    count = math.prod(dims)
    limit = max_voxels()
    if count > limit:
        raise InputError(
            path,
            f"{what} claims {shown} = {count:,} values, more than the limit of {limit:,} "
            f"(raise {MAX_VOXELS_ENV} if the file is genuine)",
        )
    if itemsize is not None:
        need = math.ceil(count * itemsize)
        if available is not None and need > available:
            raise InputError(
                path, f"{what} claims {shown} ({need:,} bytes) but the file holds {max(available, 0):,} bytes"
            )
        if compressed is not None and need > ZLIB_MAX_RATIO * max(compressed, 0) + 1024:
            raise InputError(
                path,
                f"{what} claims {shown} ({need:,} bytes), more than {compressed:,} compressed bytes can hold",
            )
    return count
