"""``medgan train``: read the train split a config describes and fit its synthesizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

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


def train_split(cfg: RunConfig, data_dir: Path) -> SliceSet:
    """The labelled train split of the config's data."""
    ss = load_source(cfg.data, data_dir).split("train")
    if len(ss) == 0:
        raise InputError("data", "the train split is empty")
    unlabelled = int((ss.manifest["label"] < 0).sum())
    if unlabelled:
        raise InputError(
            "data",
            f"{unlabelled} train slices are unlabelled; a conditional GAN needs classes (give a mask, or set unlabelled_class)",
        )
    return ss


def train(cfg: RunConfig, run_dir: str | Path, data_dir: Path, resume: bool = False) -> Path:
    """Train the configured synthesizer on the train split; returns the last checkpoint path."""
    from medgan.synthesis.cgan import ConditionalGAN

    seed_everything(cfg.seed)
    device = resolve_device(cfg.train.device)
    ss = train_split(cfg, data_dir)
    try:
        task = ConditionalGAN(cfg.model, cfg.train, len(ss.classes), ss.shape, device, cfg.seed)
    except ValueError as exc:  # e.g. an image size the generator cannot reach by 2x upsampling
        raise ConfigError("data.size", str(exc)) from None
    task.attach_data(
        torch.tensor(ss.images), torch.tensor(np.array(ss.manifest["label"], dtype=np.int64)), cfg.seed
    )
    meta = {"classes": list(ss.classes), "shape": list(ss.shape), "data": data_meta(ss)}
    return fit(task, cfg, run_dir, meta, resume=resume, device=device)
