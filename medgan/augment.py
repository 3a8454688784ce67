"""``medgan augment``: a ready-to-train augmented dataset on disk, with a MONAI datalist.

From a run config's ``data`` (the real slices and their splits) and ``augment`` section (the
sampler checkpoint(s) (a conditional GAN, a diffusion model), the mixing policy or per-class counts, the format), it writes::

    OUT/
      real/{train,val,test}/<label>-<class>/<slice_id>.png|.nii.gz   real slices (train: those kept)
      synthetic/<k>-<label>-<class>/images/...                      ``medgan generate`` output per
                                                                    (checkpoint k, class), each with
                                                                    its own manifest.csv
      manifest.csv    one row per file: path, split, label, source = real | synthetic, and for
                      synthetic files the checkpoint, its SHA-256 and the seed; for real files
                      where they came from (source file, slice index)
      datalist.json   MONAI Decathlon-style datalist: "training" (real + synthetic),
                      "validation" and "test" (real only), loadable with
                      ``monai.data.load_decathlon_datalist``

With masks (the real slices have lesion masks and every checkpoint draws from masks,
``model.kind: spade``) it is a segmentation dataset: each image's mask is written beside it
(``.../masks/<same name>``: PNG 0 / 255, or a uint8 NIfTI label map), the manifest gains a
``mask`` column, and each datalist entry is ``{"image": ..., "label": <mask path>, "class":
<class index>}``, MONAI's segmentation convention.
      augment.json    the parameters, for resuming and for refusing a different dataset

Every file is written atomically and skipped when it already exists, so an interrupted run
resumes where it stopped; the same config gives the same dataset (seeded selection, per-image
seeds as in ``medgan generate``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan.config import RunConfig
from medgan.data.sources import load_source
from medgan.errors import ConfigError, InputError
from medgan.generate import generate
from medgan.io.atomic import atomic_write_text
from medgan.io.images import write_mask_png, write_png
from medgan.io.nifti import write_nifti, write_nifti_mask
from medgan.io.output import OutputFolder
from medgan.mixing import plan_mix
from medgan.paths import slug
from medgan.progress import progress
from medgan.synthesis import registry
from medgan.train import data_meta

DATALIST = "datalist.json"
MANIFEST = "manifest.csv"
RECORD = "augment.json"
SPLIT_KEYS = {"train": "training", "val": "validation", "test": "test"}
_EXT = {"png": ".png", "nifti": ".nii.gz"}


def _checkpoints(cfg: RunConfig, classes: list[str], shape: tuple[int, ...]) -> list[Any]:
    if not cfg.augment.checkpoints:
        raise ConfigError(
            "augment.checkpoints",
            f"name at least one sampler checkpoint: a {registry.kinds_that('samples')}",
        )
    out = []
    seen: dict[str, str] = {}
    for ck in cfg.augment.checkpoints:
        synth = registry.load_sampler(ck, "cpu")
        if synth.sha256 in seen:  # the same weights under two spellings: the same images twice
            raise InputError(
                ck,
                f"is the checkpoint {seen[synth.sha256]} again (sha256 {synth.sha256[:12]}); "
                "its images would be added twice; list each checkpoint once in augment.checkpoints",
            )
        seen[synth.sha256] = ck
        if list(synth.classes) != list(classes):
            raise InputError(ck, f"was trained on classes {synth.classes}, the data has {classes}")
        if tuple(synth.shape) != tuple(shape):
            raise InputError(ck, f"generates slices {tuple(synth.shape)}, the data has {tuple(shape)}")
        out.append(synth)
    return out


def synthetic_counts(
    cfg: RunConfig, labels: np.ndarray, classes: list[str]
) -> tuple[np.ndarray, dict[int, int]]:
    """(indices of the real training slices kept, {class index: synthetic count}) for ``cfg.augment``."""
    ac = cfg.augment
    if ac.n_per_class is not None:
        unknown = sorted(set(ac.n_per_class) - set(classes))
        if unknown:
            raise ConfigError("augment.n_per_class", f"unknown class(es) {unknown}; the data has {classes}")
        return np.arange(len(labels)), {classes.index(c): int(n) for c, n in ac.n_per_class.items()}
    return plan_mix(labels, ac.ratio, ac.policy, np.random.default_rng(ac.seed))


def _split_counts(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


def _real_row(rel: str, split: str, lab: int, classes: list[str], m: pd.Series) -> dict[str, Any]:
    return {
        "path": rel,
        "split": split,
        "label": lab,
        "label_name": classes[lab],
        "source": "real",
        "checkpoint": "",
        "checkpoint_sha256": "",
        "seed": -1,  # not generated; -1 keeps the column integer (a blank would make pandas read 64-bit seeds as float)
        "origin": str(m["source"]),
        "origin_slice_index": m["slice_index"],
    }


def _write_real(
    ss: Any, keep: np.ndarray, out: Path, cfg: RunConfig, pairs: bool = False
) -> list[dict[str, Any]]:
    """The real slices (the kept train slices, all of val and test) as files (with their masks when
    ``pairs``); their manifest rows."""
    ac, classes = cfg.augment, list(ss.classes)
    inten = data_meta(ss.split("train"))["intensity"]
    intensity = (inten["lo"], inten["hi"]) if inten["lo"] is not None and inten["hi"] is not None else None
    jobs: list[tuple[str, int, Any]] = []  # (split, row in the split, slice set)
    for split in ("train", "val", "test"):
        part = ss.split(split)
        idx = keep if split == "train" else np.arange(len(part))
        jobs += [(split, int(i), part) for i in idx]
    rows = []
    for split, i, part in progress(jobs, "real slices"):
        m = part.manifest.iloc[i]
        lab = int(m["label"])
        folder = f"real/{split}/{lab:02d}-{slug(classes[lab])}"
        rel = f"{folder}/{int(m['slice_id']):06d}{_EXT[ac.format]}"
        path = out / rel
        sr, sc = m["spacing_row"], m["spacing_col"]
        spacing = (float(sr), float(sc)) if pd.notna(sr) and pd.notna(sc) else None
        thickness = float(m["slice_thickness"]) if pd.notna(m["slice_thickness"]) else None
        row = _real_row(rel, split, lab, classes, m)
        if pairs:  # the mask first: an image on disk means its pair is whole
            row["mask"] = f"{folder}/masks/{int(m['slice_id']):06d}{_EXT[ac.format]}"
            mpath = out / row["mask"]
            if not mpath.is_file() or not path.is_file():
                mpath.parent.mkdir(parents=True, exist_ok=True)
                if ac.format == "png":
                    write_mask_png(mpath, part.masks[i])
                else:
                    write_nifti_mask(mpath, part.masks[i], spacing=spacing, thickness=thickness)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            if ac.format == "png":
                write_png(path, part.images[i], bits=ac.bits)
            else:
                write_nifti(
                    path,
                    part.images[i],
                    spacing=spacing,
                    thickness=thickness,
                    intensity=intensity,
                    description="real slice (medgan augment)",
                )
        rows.append(row)
    return rows


def _write_synthetic(
    cfg: RunConfig, synths: list[Any], take: dict[int, int], out: Path, classes: list[str]
) -> list[dict[str, Any]]:
    """Each class's synthetic count split between the checkpoints, generated into ``synthetic/``."""
    ac, rows = cfg.augment, []
    for k, (ck, synth) in enumerate(zip(ac.checkpoints, synths, strict=True)):
        for c, n_all in sorted(take.items()):
            n = _split_counts(n_all, len(synths))[k]
            if n == 0:
                continue
            folder = f"synthetic/{k}-{c:02d}-{slug(classes[c])}"
            gm = generate(
                ck,
                out / folder,
                n,
                classes=[classes[c]],
                fmt=ac.format,
                seed=ac.seed,
                batch_size=ac.batch_size,
                bits=ac.bits,
                device=cfg.train.device,
            )
            rows += [
                {
                    "path": f"{folder}/{r.path}",
                    "split": "train",
                    "label": int(r.label),
                    "label_name": str(r.label_name),
                    "source": "synthetic",
                    "checkpoint": str(ck),
                    "checkpoint_sha256": synth.sha256,
                    "seed": int(r.seed),
                    "origin": "",
                    "origin_slice_index": pd.NA,
                    **({"mask": f"{folder}/{r.mask}"} if "mask" in gm.columns else {}),
                }
                for r in gm.itertuples(index=False)
            ]
    return rows


def augment(cfg: RunConfig, out: str | Path, data_dir: Path, *, overwrite: bool = False) -> pd.DataFrame:
    """Write the augmented dataset described by ``cfg`` into ``out``; returns the manifest."""
    ss = load_source(cfg.data, data_dir)
    classes = list(ss.classes)
    synths = _checkpoints(cfg, classes, tuple(ss.shape))
    labels = ss.split("train").manifest["label"].to_numpy().astype(np.int64)
    keep, take = synthetic_counts(cfg, labels, classes)
    pairs = ss.masks is not None and all(registry.get(s.meta.kind).pairs for s in synths)
    params = {
        "config_name": cfg.name,
        "data": cfg.data.model_dump(mode="json"),
        "checkpoints_sha256": [s.sha256 for s in synths],
        "augment": cfg.augment.model_dump(mode="json", exclude={"checkpoints", "batch_size"}),
    }
    folder = OutputFolder(
        out,
        record=RECORD,
        what="augmented dataset",
        command=f"medgan augment {cfg.name}",
        overwrite=overwrite,
    )
    folder.check_writable()
    with folder:
        folder.claim(params)
        out = folder.path
        rows = _write_real(ss, keep, out, cfg, pairs) + _write_synthetic(cfg, synths, take, out, classes)
        manifest = pd.DataFrame(rows)
        atomic_write_text(out / MANIFEST, manifest.to_csv(index=False))
        atomic_write_text(out / DATALIST, json.dumps(datalist(manifest, classes, cfg.name), indent=1) + "\n")
        return manifest


def datalist(manifest: pd.DataFrame, classes: list[str], name: str) -> dict[str, Any]:
    """The MONAI Decathlon-style datalist of a manifest (paths relative to the dataset folder).

    A manifest with a ``mask`` column is a segmentation set: ``"label"`` is the mask's path and
    ``"class"`` the class index (MONAI's segmentation convention); otherwise ``"label"`` is the class.
    """
    out: dict[str, Any] = {
        "name": name,
        "description": "real slices plus synthetic slices (training only), written by medgan augment",
        "labels": {str(i): c for i, c in enumerate(classes)},
        "numTraining": int((manifest["split"] == "train").sum()),
        "numSynthetic": int((manifest["source"] == "synthetic").sum()),
    }
    for split, key in SPLIT_KEYS.items():
        part = manifest[manifest["split"] == split]
        if "mask" in part.columns:
            out[key] = [
                {"image": p, "label": str(mk), "class": int(lab), "synthetic": bool(s == "synthetic")}
                for p, mk, lab, s in zip(
                    part["path"], part["mask"], part["label"], part["source"], strict=True
                )
            ]
        else:
            out[key] = [
                {"image": p, "label": int(lab), "synthetic": bool(s == "synthetic")}
                for p, lab, s in zip(part["path"], part["label"], part["source"], strict=True)
            ]
    return out
