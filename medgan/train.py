"""``medgan train``: read the train split a config describes and fit its synthesizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan import distributed
from medgan.config import RunConfig
from medgan.data.slices import SliceSet
from medgan.data.sources import RunData, load_source
from medgan.device import resolve_device
from medgan.errors import ConfigError, InputError
from medgan.metrics.selection import ValidationSelector
from medgan.seeding import seed_everything
from medgan.synthesis import registry
from medgan.training.checkpoint import best_checkpoint
from medgan.training.loop import fit


def data_meta(ss: SliceSet) -> dict[str, Any]:
    """What generation needs to know about the training data: intensity interval, geometry, modality."""
    m = ss.manifest

    def med(col: str) -> float | None:
        v = pd.to_numeric(m[col], errors="coerce").dropna()
        return float(np.median(v)) if len(v) else None

    modes = sorted(set(m["intensity_mode"].dropna().astype(str)))
    modality = m["modality"].dropna().astype(str)
    return {
        "source_format": ss.source_format,
        "n_train": len(ss),
        "intensity": {
            "mode": modes[0] if len(modes) == 1 else "mixed",
            "lo": med("intensity_lo"),
            "hi": med("intensity_hi"),
            "varies": bool(m["intensity_lo"].nunique() > 1 or m["intensity_hi"].nunique() > 1),
        },
        "spacing": [med("spacing_row"), med("spacing_col")],
        "thickness": med("slice_thickness"),
        "modality": modality.mode().iloc[0] if len(modality) else None,
    }


def train_split(cfg: RunConfig, data_dir: Path, source: SliceSet | None = None) -> SliceSet:
    """The labelled train split of the config's data (``source``: the data already loaded)."""
    ss = (source if source is not None else load_source(cfg.data, data_dir)).split("train")
    if len(ss) == 0:
        raise InputError("data", "the train split is empty")
    unlabelled = int((ss.manifest["label"] < 0).sum())
    if unlabelled:
        raise InputError(
            "data",
            f"{unlabelled} train slices are unlabelled; a conditional GAN needs classes (give a mask, or set unlabelled_class)",
        )
    return ss


def val_split(
    cfg: RunConfig, data_dir: Path, source: SliceSet | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The labelled validation slices checkpoint selection scores against (None when selection is off).

    ``source``: the config's data already loaded (read from ``data_dir`` otherwise).
    """
    if cfg.train.select.every <= 0:
        return None
    va = (source if source is not None else load_source(cfg.data, data_dir)).split("val")
    y = va.manifest["label"].to_numpy().astype(np.int64)
    keep = y >= 0  # unlabelled slices cannot be scored per class
    return va.images[keep], y[keep]


def training_slices(
    cfg: RunConfig, data_dir: Path, data: RunData | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The slices a config's synthesizer trains on: images, class labels and checkpoint metadata.

    The train split of ``data`` (``data``: the config's data already read); with ``data_b`` (a
    CycleGAN between two datasets), the train splits of both, labelled 0 (``data``) and 1 (``data_b``).
    """
    if cfg.data_b is None:
        ss = train_split(cfg, data_dir, data.data if data is not None else None)
        meta = {"classes": list(ss.classes), "shape": list(ss.shape), "data": data_meta(ss)}
        return ss.images, ss.manifest["label"].to_numpy().astype(np.int64), meta
    data = RunData.of(data, cfg, data_dir)
    assert data.data_b is not None
    sa, sb = data.data.split("train"), data.data_b.split("train")
    if sb.shape != sa.shape:
        raise ConfigError(
            "data_b", f"slices {sb.shape} differ from data's {sa.shape}; set the same size and channels"
        )
    images = np.concatenate([sa.images, sb.images])
    labels = np.concatenate([np.zeros(len(sa), np.int64), np.ones(len(sb), np.int64)])
    domains = {"mode": "datasets", "a": "data", "b": "data_b", "label_a": 0, "label_b": 1}
    meta = {"classes": list(sa.classes), "shape": list(sa.shape), "domains": domains, "data": data_meta(sa)}
    return images, labels, meta


def mask_sources(ss: SliceSet) -> list[str]:
    """Where each slice's mask came from: its mask file, with the slice's index in a volume."""
    m = ss.manifest
    out = []
    for src, z, own in zip(m["mask_source"], m["slice_index"], m["source"], strict=True):
        name = str(src) if isinstance(src, str) and src else str(own)
        out.append(f"{name}#z={int(z)}" if not pd.isna(z) and name.endswith(_VOLUME_SUFFIXES) else name)
    return out


_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".dcm")


def subset_masks(ss: SliceSet, idx: np.ndarray | None = None) -> registry.TrainMasks:
    """The lesion masks of slices ``idx`` of ``ss`` (all when None) with their sources, for a kind
    that draws from masks (the train split, or a study's subset of it)."""
    assert ss.masks is not None, "the slices have no masks"
    sources = mask_sources(ss)
    if idx is None:
        return registry.TrainMasks(ss.masks, sources)
    return registry.TrainMasks(ss.masks[idx], [sources[i] for i in idx])


def training_masks(cfg: RunConfig, data_dir: Path, data: RunData | None = None) -> registry.TrainMasks | None:
    """The train split's lesion masks (None when the data has none), for a kind that draws from masks."""
    if cfg.data_b is not None:
        return None
    ss = train_split(cfg, data_dir, data.data if data is not None else None)
    if ss.masks is None:
        return None
    return subset_masks(ss)


def checkpoint_meta(cfg: RunConfig, labels: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` (classes, shape, data) with what the kind adds to every checkpoint (a CycleGAN's
    domains, unless ``meta`` names two datasets, and their slice counts): what its task is built with."""
    meta = {**registry.get(cfg.model.kind).describe(cfg.model, list(meta["classes"])), **meta}
    if "domains" in meta:
        dom, y = meta["domains"], np.asarray(labels)
        meta = {**meta, "n_a": int((y == dom["label_a"]).sum()), "n_b": int((y == dom["label_b"]).sum())}
    return meta


def train_slices(
    cfg: RunConfig,
    images: np.ndarray,
    labels: np.ndarray,
    meta: dict[str, Any],
    run_dir: Path,
    resume: bool = False,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    masks: registry.TrainMasks | None = None,
) -> Path:
    """Fit the config's synthesizer (any ``model.kind``) on given slices, e.g. a study's real subset.

    Returns the checkpoint to use. ``meta`` (classes, shape, data description) goes into every
    checkpoint; the kind adds its own (a CycleGAN's domains: two classes, unless ``meta`` names
    two datasets). With ``train.select.every > 0`` the generator is scored against ``val``
    (validation slices and labels; never the test split) during training, and the best-scoring
    checkpoint is returned; otherwise the last one. ``masks``: the slices' lesion masks, which a
    kind that draws from masks (``pairs``) trains on and keeps to draw from.
    """
    entry = registry.get(cfg.model.kind)
    if cfg.train.select.every > 0 and not entry.selects:
        raise ConfigError(
            "train.select.every", f"model.kind {cfg.model.kind!r} has no checkpoint selection; set it to 0"
        )
    meta = checkpoint_meta(cfg, labels, meta)
    seed_everything(cfg.seed)
    device = distributed.local_device(resolve_device(cfg.train.device))
    try:
        task = entry.build_task(cfg, images, labels, meta, device, masks=masks if entry.pairs else None)
    except ValueError as exc:  # e.g. an image size the generator cannot reach by 2x upsampling
        raise ConfigError("data.size", str(exc)) from None
    selector = None
    if cfg.train.select.every > 0:
        if val is None:
            raise ConfigError("train.select.every", "checkpoint selection needs validation slices")
        if distributed.is_main():
            selector = ValidationSelector(
                cfg.train.select, val[0], val[1], len(meta["classes"]), device=device
            )
    last = fit(task, cfg, run_dir, meta, resume=resume, device=device, selector=selector)
    return best_checkpoint(Path(run_dir) / "checkpoints") or last


def train(cfg: RunConfig, run_dir: str | Path, data_dir: Path, resume: bool = False) -> Path:
    """Train the configured synthesizer on the train split; returns the checkpoint to use (best or last)."""
    data = RunData.load(cfg, data_dir)  # read once: train and validation slices
    images, labels, meta = training_slices(cfg, data_dir, data)
    val = val_split(cfg, data_dir, data.data)
    masks = training_masks(cfg, data_dir, data)
    return train_slices(cfg, images, labels, meta, Path(run_dir), resume, val, masks)
