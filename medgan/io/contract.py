"""What medgan's readers return and its writers accept: the I/O contract.

A reader takes plain arguments (paths, options: never a config object) and returns one of two
things, both in the file's own units, nothing normalised, resized, labelled by mask or split:

* **volumes** (DICOM series, NIfTI / NRRD / MHA): one :class:`Volume` per series or file, a
  (Z, C, H, W) stack in display orientation with its mask and per-slice geometry;
* **2-D images** (MedMNIST, image folders): one :class:`Images2D`, the class names plus
  :class:`ImageBatch` es of raw pixels, each with one manifest row per image.

:mod:`medgan.data.sources` is the only place that turns either into a
:class:`~medgan.data.slices.SliceSet` (intensity, labels, size, channels, hashes, splits).

Writers take a generated slice, (C, H, W) with C = 1 or 3 in [-1, 1], and check it with
:func:`as_chw`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from medgan.errors import InputError


@dataclass
class Volume:
    """A stack of 2-D slices from one file or series, in display orientation.

    ``data`` is (Z, C, H, W) in raw units (HU for CT after RescaleSlope/Intercept);
    ``mask`` is (Z, H, W) or None. Geometry follows DICOM's LPS patient convention.
    """

    data: np.ndarray
    source_format: str
    sources: list[str]
    slice_index: list[int]
    patient_id: str
    mask: np.ndarray | None = None
    mask_source: str | None = None
    positions: np.ndarray | None = None  # (Z, 3) mm, first pixel centre
    orientation: np.ndarray | None = None  # (6,) row then column direction cosines
    spacing: tuple[float, float] | None = None  # (between rows, between columns) mm
    thickness: float | None = None
    modality: str | None = None
    series_uid: str | None = None
    sop_uids: list[str | None] | None = None
    frames: list[int | None] | None = None
    window_hint: tuple[float, float] | None = None
    raw_dtype: str | None = None
    #: Named problems the reader tolerated (duplicate positions, slope 0, ...): one line each,
    #: shown by ``medgan data inspect`` and kept in ``SliceSet.info["warnings"]``.
    warnings: list[str] = field(default_factory=list)


@dataclass
class ImageBatch:
    """Raw 2-D images read from one file, with one manifest row per image.

    ``pixels`` is (n, C, H, W), C = 1 or 3, in the file's dtype (uint8, uint16, int32 or
    float32). Each row of ``rows`` holds ``label`` (index into the classes), ``label_name``,
    ``source`` (the file's path as read), ``source_format``, ``rows`` / ``cols`` (native size)
    and, when the source says so, ``split``, ``patient_id`` and ``slice_index``.
    """

    pixels: np.ndarray
    rows: list[dict]
    source: str
    #: (n, H, W) uint8 lesion masks (1 = lesion) aligned with ``pixels``, when the source has them.
    masks: np.ndarray | None = None


@dataclass
class Images2D:
    """What a 2-D reader returns: class names and batches of raw images with their rows.

    ``batches`` may be a generator that reads one file at a time, so that the data layer can
    shrink each image before the next is read. ``info`` holds facts about the source for
    :attr:`SliceSet.info <medgan.data.slices.SliceSet.info>` (e.g. ``file``: the one file the
    set came from; ``raw_range``, when the reader gives it; otherwise the data layer records
    the float min / max of all pixels). ``where`` is what errors about the whole set name.
    """

    classes: list[str]
    batches: Iterable[ImageBatch]
    source_format: str
    where: str
    info: dict = field(default_factory=dict)
    #: Named problems the reader tolerated, one line each (see :attr:`Volume.warnings`).
    warnings: list[str] = field(default_factory=list)


def check_finite(data: np.ndarray, where: str) -> None:
    """Raise :class:`InputError` when ``data`` has NaN or Inf values."""
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise InputError(where, f"contains {bad} NaN/Inf voxel(s); clean the file or mask them first")


def as_chw(image: np.ndarray) -> np.ndarray:
    """A slice to be written, as float64 (C, H, W) with C = 1 or 3; (H, W) counts as grey.

    Raises ``ValueError`` for other shapes, non-real dtypes and NaN / Inf values. Every writer
    (PNG, NIfTI, DICOM) checks its input through this one function.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"expected an image of shape (C, H, W) with C = 1 or 3, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"expected a real-valued image, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("image has NaN or infinite values")
    return arr
