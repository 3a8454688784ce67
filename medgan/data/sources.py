"""From a source config to a :class:`~medgan.data.slices.SliceSet`: one entry point for every format.

The readers of :mod:`medgan.io` take plain arguments and return one of the two contracts of
:mod:`medgan.io.contract`: :class:`~medgan.io.contract.Volume` objects (DICOM, NIfTI) or
:class:`~medgan.io.contract.Images2D` (MedMNIST, image folders). This module is where a config
becomes reader arguments and reader output becomes a SliceSet: :func:`_from_volumes` and
:func:`_from_images` choose the intensity interval, normalise to [-1, 1], label, show paths
relative to the data dir and hand everything to :func:`~medgan.data.slices.build_sliceset`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgan.config import (
    DataConfig,
    DicomSource,
    ImageFolderSource,
    IntensityConfig,
    MedMNISTSource,
    NiftiSource,
    RunConfig,
    VolumeOptions,
)
from medgan.data.slices import (
    SliceSet,
    build_sliceset,
    resize_batch,
    resize_masks,
    resolve_intensity,
    to_channels,
    volume_to_slices,
)
from medgan.intensity import normalize
from medgan.io.contract import Images2D, Volume, check_finite
from medgan.io.dicom import read_dicom_volumes
from medgan.io.images import read_image_folder
from medgan.io.limits import check_claim
from medgan.io.medmnist import read_medmnist
from medgan.io.nifti import read_case
from medgan.paths import display_path

#: MedMNIST files are uint8: their full range 0..255 maps onto [-1, 1].
MEDMNIST_INTENSITY = IntensityConfig(mode="dtype")


def _volume_kwargs(src: VolumeOptions) -> dict:
    return {
        "classes": src.classes,
        "min_lesion_px": src.min_lesion_px,
        "empty_threshold": src.empty_threshold,
        "min_body_fraction": src.min_body_fraction,
        "intensity_mode": src.intensity.mode,
        "window": src.intensity.window,
        "percentiles": src.intensity.percentiles,
        "unlabelled_class": src.unlabelled_class,
    }


def _from_volumes(
    volumes: list[Volume], src: VolumeOptions, data: DataConfig, data_dir: Path, fmt: str, where: str
) -> SliceSet:
    images: list[np.ndarray] = []
    masks: list[np.ndarray | None] = []
    rows: list[dict] = []
    dropped = 0
    raw_lo, raw_hi = np.inf, -np.inf
    for vol in volumes:
        if src.patient_id:
            vol.patient_id = src.patient_id
        vol.sources = [display_path(s, data_dir) for s in vol.sources]
        if vol.mask_source:
            vol.mask_source = display_path(vol.mask_source, data_dir)
        imgs, r, d, kept = volume_to_slices(vol, **_volume_kwargs(src), return_kept=True)
        images.append(imgs)
        masks.append(None if vol.mask is None else (vol.mask[kept] > 0).astype(np.uint8))
        rows.extend(r)
        dropped += d
        raw_lo, raw_hi = min(raw_lo, float(vol.data.min())), max(raw_hi, float(vol.data.max()))
    classes = list(src.classes)  # unlabelled slices (no mask) carry label -1
    info = {
        "n_volumes": len(volumes),
        "n_patients": len({v.patient_id for v in volumes}),
        "n_dropped_empty": dropped,
        "raw_range": [raw_lo, raw_hi],
        "has_mask": any(v.mask is not None for v in volumes),
        "warnings": [w for v in volumes for w in v.warnings],
    }
    return build_sliceset(
        images,
        rows,
        classes,
        fmt,
        size=data.hw(),
        channels=data.channels,
        fractions=(data.splits.train, data.splits.val, data.splits.test),
        seed=data.splits.seed,
        allow_patient_overlap=data.splits.allow_patient_overlap,
        info=info,
        where=where,
        masks=masks,
        near_duplicates=data.splits.near_duplicates == "on",
    )


def _auto_mode(mode: str, window: object | None, dtype: np.dtype) -> str:
    """For 2-D images, ``auto`` means the dtype range for 8/16-bit files and min-max otherwise."""
    if mode != "auto" or window is not None:
        return mode
    return "dtype" if dtype in (np.uint8, np.uint16) else "minmax"


def _from_images(images: Images2D, intensity: IntensityConfig, data: DataConfig, data_dir: Path) -> SliceSet:
    """Normalise each batch of raw 2-D images on its own, then resize it at once (memory follows
    the target size, not the files') and convert channels; paths are shown relative to ``data_dir``."""
    size = data.hw()
    arrays: list[np.ndarray] = []
    masks: list[np.ndarray | None] = []
    rows: list[dict] = []
    shown: dict[str, str] = {}
    raw_lo, raw_hi = math.inf, -math.inf
    for batch in images.batches:
        raw = batch.pixels
        if not len(raw):
            continue
        check_finite(raw, batch.source)
        mode = _auto_mode(intensity.mode, intensity.window, raw.dtype)
        rng = resolve_intensity(
            raw, mode, intensity.window, tuple(intensity.percentiles), raw_dtype=raw.dtype.name
        )
        img = normalize(raw, rng)
        if data.channels is not None:
            img = to_channels(img, data.channels)
        if size is not None:
            check_claim(batch.source, (len(img), img.shape[1], *size), what=f"data.size {size[0]}x{size[1]}")
            img = resize_batch(img, size)
        arrays.append(img)
        masks.append(
            None if batch.masks is None else resize_masks(batch.masks, size or batch.masks.shape[1:])
        )
        raw_lo, raw_hi = min(raw_lo, float(raw.min())), max(raw_hi, float(raw.max()))
        for row in batch.rows:
            src = row["source"]
            if src not in shown:
                shown[src] = display_path(src, data_dir)
            row.update(source=shown[src], intensity_mode=rng.mode, intensity_lo=rng.lo, intensity_hi=rng.hi)
            if row.get("mask_source"):
                row["mask_source"] = display_path(row["mask_source"], data_dir)
            rows.append(row)
    info = dict(images.info)
    if "file" in info:
        info["file"] = display_path(info["file"], data_dir)
    info.setdefault("raw_range", [raw_lo, raw_hi])
    info["warnings"] = [*info.get("warnings", []), *images.warnings]
    return build_sliceset(
        arrays,
        rows,
        images.classes,
        images.source_format,
        size=size,
        channels=data.channels,
        fractions=(data.splits.train, data.splits.val, data.splits.test),
        seed=data.splits.seed,
        allow_patient_overlap=data.splits.allow_patient_overlap,
        info=info,
        where=images.where,
        masks=masks,
        near_duplicates=data.splits.near_duplicates == "on"
        or (data.splits.near_duplicates == "auto" and images.source_format == "images"),
    )


def load_source(data: DataConfig, data_dir: Path) -> SliceSet:
    """Read every slice a :class:`DataConfig` describes (paths resolved under ``data_dir``)."""
    src = data.source.resolved(data_dir)
    if isinstance(src, MedMNISTSource):
        images = read_medmnist(src.name, data_dir, src.path, src.download)
        return _from_images(images, MEDMNIST_INTENSITY, data, data_dir)
    if isinstance(src, ImageFolderSource):
        images = read_image_folder(src.labels_csv, src.root, src.classes)
        return _from_images(images, src.intensity, data, data_dir)
    if isinstance(src, DicomSource):
        volumes = read_dicom_volumes(src.path, series=src.series, mask=src.mask, segments=src.segments)
        return _from_volumes(volumes, src, data, data_dir, "dicom", str(src.path))
    if isinstance(src, NiftiSource):
        volumes = [
            read_case(c.image, c.mask, patient_id=c.patient_id, axis=src.axis, volume_index=src.volume_index)
            for c in src.case_list()
        ]
        where = str(src.case_list()[0].image)
        return _from_volumes(volumes, src, data, data_dir, "nifti", where)
    raise TypeError(f"unknown source {type(src).__name__}")


@dataclass(frozen=True)
class RunData:
    """A run config's data, read once: ``data`` and, for a synthesizer between two datasets, ``data_b``.

    ``medgan run`` reads its sources into one of these and hands it to every stage (training,
    evaluation, translation, the study), so no stage reads the files again.
    """

    data: SliceSet
    data_b: SliceSet | None = None

    @classmethod
    def load(cls, cfg: RunConfig, data_dir: Path) -> RunData:
        """Read ``cfg.data`` (and ``cfg.data_b`` when set)."""
        data_b = load_source(cfg.data_b, data_dir) if cfg.data_b is not None else None
        return cls(load_source(cfg.data, data_dir), data_b)

    @classmethod
    def of(cls, given: RunData | None, cfg: RunConfig, data_dir: Path) -> RunData:
        """``given`` when a caller read the data already, else :meth:`load`."""
        return given if given is not None else cls.load(cfg, data_dir)
