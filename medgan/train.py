"""``medgan train``: read the train split a config describes and fit its synthesizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medgan import distributed
from medgan.config import RunConfig
from medgan.data.slices import SliceSet
from medgan.data.sources import load_source
from medgan.errors import ConfigError, InputError
from medgan.training.loop import fit
from medgan.training.seeding import resolve_device, seed_everything


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


def _domain_index(value: str | int, classes: list[str], key: str) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit() and value not in classes):
        i = int(value)
        if 0 <= i < len(classes):
            return i
    elif value in classes:
        return classes.index(value)
    raise ConfigError(key, f"{value!r} is not one of the data's classes {classes}")


def cyclegan_domains(
    cfg: RunConfig, data_dir: Path
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], SliceSet]:
    """Train images of domain A and B and their description: two labels of one dataset, or two datasets."""
    ss = load_source(cfg.data, data_dir).split("train")
    if cfg.data_b is not None:
        sb = load_source(cfg.data_b, data_dir).split("train")
        if sb.shape != ss.shape:
            raise ConfigError(
                "data_b", f"slices {sb.shape} differ from data's {ss.shape}; set the same size and channels"
            )
        a, b = ss.images, sb.images
        domains = {"mode": "datasets", "a": "data", "b": "data_b"}
    else:
        mc = cfg.model
        ia = _domain_index(mc.domain_a, ss.classes, "model.domain_a")
        ib = _domain_index(mc.domain_b, ss.classes, "model.domain_b")
        if ia == ib:
            raise ConfigError("model.domain_b", "must differ from model.domain_a")
        labels = ss.manifest["label"].to_numpy()
        a, b = ss.images[labels == ia], ss.images[labels == ib]
        domains = {"mode": "labels", "a": ss.classes[ia], "b": ss.classes[ib], "label_a": ia, "label_b": ib}
    for name, arr in (("A", a), ("B", b)):
        if len(arr) == 0:
            raise InputError("data", f"domain {name} ({domains[name.lower()]}) has no train slices")
    return a, b, domains, ss


def _check_enough(n: int, what: str) -> None:
    """Under ``torchrun`` every rank needs at least one training image of its own."""
    if n < distributed.world_size():
        raise InputError(
            "data", f"{n} {what} slices cannot be shared by {distributed.world_size()} processes"
        )


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


def train_cgan_arrays(
    cfg: RunConfig,
    images: np.ndarray,
    labels: np.ndarray,
    meta: dict[str, Any],
    run_dir: Path,
    resume: bool = False,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Fit the conditional GAN on given slices (e.g. a study's real subset); returns the checkpoint to use.

    With ``train.select.every > 0`` the EMA generator is scored against ``val`` (validation slices
    and labels; never the test split) during training, and the best-scoring checkpoint is
    returned; otherwise the last one.
    """
    from medgan.synthesis.cgan import ConditionalGAN
    from medgan.training.checkpoint import best_checkpoint

    _check_enough(len(images), "train")
    seed_everything(cfg.seed)
    device = distributed.local_device(resolve_device(cfg.train.device))
    try:
        task = ConditionalGAN(cfg.model, cfg.train, len(meta["classes"]), images.shape[1:], device, cfg.seed)
    except ValueError as exc:  # e.g. an image size the generator cannot reach by 2x upsampling
        raise ConfigError("data.size", str(exc)) from None
    task.attach_data(torch.tensor(images), torch.tensor(np.asarray(labels, dtype=np.int64)), cfg.seed)
    selector = None
    if cfg.train.select.every > 0:
        from medgan.metrics.selection import ValidationSelector

        if val is None:
            raise ConfigError("train.select.every", "checkpoint selection needs validation slices")
        if distributed.is_main():
            selector = ValidationSelector(
                cfg.train.select, val[0], val[1], len(meta["classes"]), device=device
            )
    last = fit(task, cfg, run_dir, meta, resume=resume, device=device, selector=selector)
    return best_checkpoint(Path(run_dir) / "checkpoints") or last


def train_cyclegan_arrays(
    cfg: RunConfig, a: np.ndarray, b: np.ndarray, meta: dict[str, Any], run_dir: Path, resume: bool = False
) -> Path:
    """Fit the CycleGAN on given domain-A and domain-B slices; returns the last checkpoint."""
    from medgan.synthesis.cyclegan import CycleGAN

    _check_enough(len(a), "domain A")
    _check_enough(len(b), "domain B")
    seed_everything(cfg.seed)
    device = distributed.local_device(resolve_device(cfg.train.device))
    try:
        task = CycleGAN(cfg.model, cfg.train, a.shape[1:], device, cfg.seed)
    except ValueError as exc:
        raise ConfigError("data.size", str(exc)) from None
    task.attach_data(torch.tensor(a), torch.tensor(b), cfg.seed)
    return fit(task, cfg, run_dir, meta, resume=resume, device=device)


def train(cfg: RunConfig, run_dir: str | Path, data_dir: Path, resume: bool = False) -> Path:
    """Train the configured synthesizer on the train split; returns the checkpoint to use (best or last)."""
    if cfg.model.kind == "cyclegan":
        a, b, domains, ss = cyclegan_domains(cfg, data_dir)
        meta = {
            "classes": list(ss.classes),
            "shape": list(ss.shape),
            "domains": domains,
            "n_a": len(a),
            "n_b": len(b),
            "data": data_meta(ss),
        }
        return train_cyclegan_arrays(cfg, a, b, meta, Path(run_dir), resume)
    full = load_source(cfg.data, data_dir)  # read once: train and validation slices
    ss = train_split(cfg, data_dir, full)
    meta = {"classes": list(ss.classes), "shape": list(ss.shape), "data": data_meta(ss)}
    return train_cgan_arrays(
        cfg,
        ss.images,
        ss.manifest["label"].to_numpy(),
        meta,
        Path(run_dir),
        resume,
        val_split(cfg, data_dir, full),
    )
