"""From a source config to a :class:`~medgan.data.slices.SliceSet`: one entry point for every format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medgan.config import (
    DataConfig,
    DicomSource,
    ImageFolderSource,
    MedMNISTSource,
    NiftiSource,
    VolumeOptions,
)
from medgan.data.slices import SliceSet, Volume, build_sliceset, volume_to_slices
from medgan.paths import display_path


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
    rows: list[dict] = []
    dropped = 0
    raw_lo, raw_hi = np.inf, -np.inf
    for vol in volumes:
        if src.patient_id:
            vol.patient_id = src.patient_id
        vol.sources = [display_path(s, data_dir) for s in vol.sources]
        if vol.mask_source:
            vol.mask_source = display_path(vol.mask_source, data_dir)
        imgs, r, d = volume_to_slices(vol, **_volume_kwargs(src))
        images.append(imgs)
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
        info=info,
        where=where,
    )


def load_source(data: DataConfig, data_dir: Path) -> SliceSet:
    """Read every slice a :class:`DataConfig` describes (paths resolved under ``data_dir``)."""
    src = data.source.resolved(data_dir)
    if isinstance(src, MedMNISTSource):
        from medgan.io.medmnist import load_medmnist

        return load_medmnist(src, data, data_dir)
    if isinstance(src, ImageFolderSource):
        from medgan.io.images import load_image_folder

        return load_image_folder(src, data, data_dir)
    if isinstance(src, DicomSource):
        from medgan.io.dicom import read_dicom_volumes

        volumes = read_dicom_volumes(src.path, series=src.series, mask=src.mask, segments=src.segments)
        return _from_volumes(volumes, src, data, data_dir, "dicom", str(src.path))
    if isinstance(src, NiftiSource):
        from medgan.io.nifti import read_case

        volumes = [read_case(c, axis=src.axis, volume_index=src.volume_index) for c in src.case_list()]
        where = str(src.case_list()[0].image)
        return _from_volumes(volumes, src, data, data_dir, "nifti", where)
    raise TypeError(f"unknown source {type(src).__name__}")
