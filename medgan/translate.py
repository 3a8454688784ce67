"""``medgan generate --translate A2B|B2A``: real slices through a CycleGAN, traced to their sources,
with a label-preservation check by a classifier trained on the real train split.

CycleGAN can add or remove findings that the labels do not show (Cohen, Luck & Honari, MICCAI
2018), so every output is scored by a MONAI classifier (:mod:`medgan.classifier`) trained on
the real train split to tell domain A from domain B (validation split for early stopping). The
share of outputs classified as the target domain — next to the same share for the untranslated
sources — goes into ``metrics.json``; ``--min-target-prob p`` drops outputs below ``p``. With
``--features`` it also holds FID, precision / recall and density / coverage of the translations
against the real target-domain slices of the test split, each beside its real-real floor
(:func:`translation_scores`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medgan.classifier import TrainedClassifier, train_classifier
from medgan.config import RunConfig
from medgan.data.detect import source_from_spec
from medgan.data.slices import SliceSet
from medgan.data.sources import RunData, load_source
from medgan.device import resolve_device
from medgan.errors import InputError
from medgan.generate import FORMATS, RECORD, OutputWriter
from medgan.io.atomic import atomic_write_text
from medgan.io.output import OutputFolder
from medgan.metrics.evaluate import cached_features, distribution_scores
from medgan.metrics.features import FeatureExtractor, get_extractor
from medgan.metrics.stats import check_features
from medgan.paths import slug
from medgan.progress import progress
from medgan.synthesis import registry
from medgan.synthesis.protocols import Translator
from medgan.synthesis.registry import cyclegan_domains
from medgan.train import training_slices
from medgan.training.checkpoint import CheckpointMeta, list_checkpoints, resolve_checkpoint

CLASSIFIER_DIR = "classifier"
MANIFEST_COLUMNS = [
    "path",
    "row_in_shard",
    "direction",
    "target_domain",
    "target_prob",
    "source_target_prob",
    "source",
    "source_slice_id",
    "source_slice_index",
    "source_frame",
    "source_sop_instance_uid",
    "source_label_name",
    "source_split",
    "checkpoint_sha256",
    "format",
]


def _run_dir(checkpoint: Path) -> Path:
    p = Path(checkpoint)
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def domain_split(
    cfg: RunConfig, data_dir: Path, split: str, domains: dict[str, Any], data: RunData | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Domain-A and domain-B slices of one split of a CycleGAN config's data (two labels, or data / data_b).

    ``data``: the config's data already read (else it is read here).
    """
    data = RunData.of(data, cfg, data_dir)
    sa = data.data.split(split)
    if domains["mode"] == "datasets":
        assert data.data_b is not None
        return sa.images, data.data_b.split(split).images
    lab = sa.manifest["label"].to_numpy()
    return sa.images[lab == domains["label_a"]], sa.images[lab == domains["label_b"]]


def domain_train_sets(
    cfg: RunConfig, data_dir: Path, data: RunData | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Domain-A and domain-B train slices of a CycleGAN config, and its domains (as in its checkpoints)."""
    images, labels, meta = training_slices(cfg, data_dir, data)
    dom = meta.get("domains") or cyclegan_domains(cfg.model, meta["classes"])  # type: ignore[arg-type]
    return images[labels == dom["label_a"]], images[labels == dom["label_b"]], dom


def translation_scores(
    translated: np.ndarray,
    target_eval: np.ndarray,
    target_train: np.ndarray,
    extractor: FeatureExtractor,
    *,
    tag: str,
    target_prob: np.ndarray | None = None,
    seed: int = 0,
    cache: Path | None = None,
) -> dict[str, Any]:
    """How close translations come to real slices of their target domain, with the real-real floor.

    FID, precision / recall and density / coverage of ``translated`` against ``target_eval`` (the
    real target-domain slices of the evaluation split), and the same against a random subset of
    ``target_train`` (real target-domain train slices) of the translations' N: the floor. With
    ``target_prob`` (the label-preservation classifier's probability of the target domain), also
    the share of translations it accepts as the target class. ``tag`` names the real sets in the
    feature cache.
    """

    if len(translated) < 2 or len(target_eval) < 2:
        raise InputError(
            "translation scores",
            f"need at least 2 translations and 2 real target slices (got {len(translated)}, {len(target_eval)})",
        )
    f_t = check_features(extractor(translated), "translation features")
    f_e = check_features(
        cached_features(extractor, target_eval, f"{tag}:eval-target", cache), "real features"
    )
    out: dict[str, Any] = {
        "features": extractor.name,
        "n_translated": len(translated),
        "n_real_target": len(target_eval),
    }
    out.update(distribution_scores(f_e, f_t))
    n = min(len(translated), len(target_train))
    if n >= 2:
        f_tr = cached_features(extractor, target_train, f"{tag}:train-target", cache)
        idx = np.sort(np.random.default_rng(seed).choice(len(f_tr), n, replace=False))
        out.update(distribution_scores(f_e, f_tr[idx], "floor_"))
        out["floor_n"] = n
    else:
        out["floor_fid"] = None
    if target_prob is not None:
        out["share_classified_as_target"] = float((np.asarray(target_prob) > 0.5).mean())
    return out


def domain_classifier(
    checkpoint: Path, meta: CheckpointMeta, data_dir: Path, fallback: Path, data: RunData | None = None
) -> tuple[Any, Path]:
    """The run's A-vs-B classifier (``<run>/classifier``), trained on the real train split the first time.

    ``data``: the checkpoint config's data already read (else it is read here, once).
    """

    for folder in (_run_dir(checkpoint) / CLASSIFIER_DIR, fallback / CLASSIFIER_DIR):
        if list_checkpoints(folder):
            return TrainedClassifier.load(folder), folder
    cfg = RunConfig.model_validate(meta.run_config())
    data = RunData.of(data, cfg, data_dir)
    a, b, domains = domain_train_sets(cfg, data_dir, data)
    va, vb = domain_split(cfg, data_dir, "val", domains, data)
    if len(va) == 0 or len(vb) == 0:
        raise InputError(
            "data",
            "the validation split lacks one of the domains; the label-preservation classifier needs both",
        )
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(len(a), np.int64), np.ones(len(b), np.int64)])
    vx = np.concatenate([va, vb])
    vy = np.concatenate([np.zeros(len(va), np.int64), np.ones(len(vb), np.int64)])
    clf = train_classifier(x, y, vx, vy, 2, cfg.classifier, classes=[str(domains["a"]), str(domains["b"])])
    target = _run_dir(checkpoint) / CLASSIFIER_DIR
    if not os.access(_run_dir(checkpoint), os.W_OK):
        target = fallback / CLASSIFIER_DIR
    clf.save(target)
    return clf, target


def _check_translate_options(
    direction: str, fmt: str, split: str, min_target_prob: float | None, eval_split: str
) -> None:
    """One-line errors for options out of range."""
    checks = (
        ("direction", direction in ("A2B", "B2A"), f"must be A2B or B2A (got {direction!r})"),
        ("format", fmt in FORMATS, f"must be one of {', '.join(FORMATS)} (got {fmt!r})"),
        (
            "--split",
            split in ("train", "val", "test", "all"),
            f"must be train, val, test or all (got {split!r})",
        ),
        (
            "--min-target-prob",
            min_target_prob is None or 0.0 <= min_target_prob <= 1.0,
            "must be between 0 and 1",
        ),
        (
            "eval_split",
            eval_split in ("train", "val", "test"),
            f"must be train, val or test (got {eval_split!r})",
        ),
    )
    for key, ok, problem in checks:
        if not ok:
            raise InputError(key, problem)


def _source_slices(
    tr: Translator, direction: str, source: str | SliceSet, data_dir: Path, split: str
) -> tuple[Any, bool]:
    """The slices to translate: ``source`` (``split``) at the checkpoint's size, only the source domain's
    when its classes name the domains; and whether that filter applied. ``source`` is a spec
    (``SOURCE``) or slices already read (they must have the checkpoint's shape)."""
    c, h, w = tr.shape
    if isinstance(source, SliceSet):
        if tuple(source.shape) != (c, h, w):
            raise InputError(
                "source", f"slices {tuple(source.shape)} differ from the checkpoint's {(c, h, w)}"
            )
        ss = source
    else:
        data = source_from_spec(source, data_dir).model_copy(update={"size": (h, w), "channels": c})
        ss = load_source(data, data_dir)
    if split != "all":
        ss = ss.split(split)
    src_name = tr.domains["a"] if direction == "A2B" else tr.domains["b"]
    filtered = False
    if tr.domains.get("mode") == "labels" and str(src_name) in ss.classes:
        keep = (ss.manifest["label_name"].astype(str) == str(src_name)).to_numpy()
        ss.images, ss.manifest = ss.images[keep], ss.manifest[keep].reset_index(drop=True)
        filtered = True
    if len(ss) == 0:
        raise InputError(source, f"no {split} slices of domain {src_name!r} to translate")
    return ss, filtered


def _manifest_row(
    row: pd.Series,
    rel: str,
    j: int,
    direction: str,
    dst_name: str,
    p_out: float,
    p_src: float,
    sha: str,
    fmt: str,
    keep_source_ids: bool = False,
) -> dict[str, Any]:
    """The manifest row of one translation, traced to its source slice (by file and slice; its
    SOP Instance UID only with ``keep_source_ids``)."""
    return {
        "path": rel,
        "row_in_shard": j if fmt == "npz" else None,
        "direction": direction,
        "target_domain": dst_name,
        "target_prob": round(p_out, 6),
        "source_target_prob": round(p_src, 6),
        "source": row["source"],
        "source_slice_id": int(row["slice_id"]),
        "source_slice_index": row["slice_index"],
        "source_frame": row["frame"],
        "source_sop_instance_uid": row["sop_instance_uid"] if keep_source_ids else None,
        "source_label_name": row["label_name"],
        "source_split": row["split"],
        "checkpoint_sha256": sha,
        "format": fmt,
    }


def _write_one(
    writer: OutputWriter,
    rel: str,
    row: pd.Series,
    image: np.ndarray,
    j: int,
    direction: str,
    names: tuple[str, str],
    sha: str,
    data_dir: Path,
    keep_source_ids: bool = False,
) -> None:
    """Write one translated slice with its source's geometry and intensity interval (and, with
    ``keep_source_ids``, a DICOM reference to the source instance)."""

    def pair(a: str, b: str) -> tuple[float, float] | None:
        return (float(row[a]), float(row[b])) if pd.notna(row[a]) and pd.notna(row[b]) else None

    src_name, dst_name = names
    writer.write(
        rel,
        image,
        uid_key=(direction, row["source"], int(row["slice_id"])),
        instance_number=j + 1,
        series_number=1 if direction == "A2B" else 2,
        series_description=f"medgan CycleGAN {direction} {dst_name}",
        derivation=(
            f"medgan CycleGAN {direction} ({src_name} -> {dst_name}); checkpoint sha256 {sha}; "
            f"source {row['source']} slice {row['slice_index']}"
        ),
        spacing=pair("spacing_row", "spacing_col"),
        thickness=None if pd.isna(row["slice_thickness"]) else float(row["slice_thickness"]),
        intensity=pair("intensity_lo", "intensity_hi"),
        source_images=_source_reference(row, data_dir) if keep_source_ids else (),
    )


def _write_translations(
    writer: OutputWriter,
    ss: Any,
    translated: np.ndarray,
    probs: tuple[np.ndarray, np.ndarray],
    kept: np.ndarray,
    direction: str,
    names: tuple[str, str],
    data_dir: Path,
    keep_source_ids: bool = False,
) -> pd.DataFrame:
    """Write the kept translations (files, or one NPZ shard) and return their manifest."""
    p_out, p_src = probs
    fmt, sha, m = writer.fmt, writer.sha, ss.manifest
    keep_idx = np.flatnonzero(kept)
    shard = f"shards/translated-{direction}.npz"
    if fmt == "npz" and not (writer.out / shard).is_file():
        writer.write_shard(
            shard,
            images=translated[keep_idx].astype(np.float32),
            source_slice_id=m["slice_id"].to_numpy()[keep_idx].astype(np.int64),
            target_prob=p_out[keep_idx].astype(np.float32),
        )
    ext = {"png": ".png", "nifti": ".nii.gz", "dicom": ".dcm", "npz": ".npz"}[fmt]
    rows = []
    for j, i in enumerate(progress(list(keep_idx), "writing", minimum=200)):
        row = m.iloc[i]
        rel = (
            shard
            if fmt == "npz"
            else f"images/{direction}-{slug(str(names[1]))}-{int(row['slice_id']):06d}{ext}"
        )
        if fmt != "npz" and not (writer.out / rel).is_file():
            _write_one(writer, rel, row, translated[i], j, direction, names, sha, data_dir, keep_source_ids)
        rows.append(
            _manifest_row(
                row, rel, j, direction, names[1], float(p_out[i]), float(p_src[i]), sha, fmt, keep_source_ids
            )
        )
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def translate(
    checkpoint: str | Path,
    out: str | Path,
    direction: str,
    source: str | SliceSet,
    data_dir: Path,
    *,
    split: str = "train",
    fmt: str = "png",
    bits: int = 8,
    batch_size: int = 64,
    device: str = "auto",
    min_target_prob: float | None = None,
    overwrite: bool = False,
    features: str | None = None,
    eval_split: str = "test",
    cache: Path | None = None,
    data: RunData | None = None,
    keep_source_ids: bool = False,
) -> pd.DataFrame:
    """Translate the slices of ``source`` (``split``) with a CycleGAN checkpoint; returns the manifest.

    ``source`` is a spec (``SOURCE``: a config, a file, ``medmnist:name``) or slices already read.
    ``metrics.json`` says which share of the translations the label-preservation classifier
    accepts as the target domain. With ``features`` (an extractor name, as ``medgan evaluate
    --features``), it also holds :func:`translation_scores` under ``quality``: the translations
    against the real target-domain slices of the checkpoint config's ``eval_split``, with the floor.
    ``data``: the checkpoint config's own data already read (``medgan run``), for the classifier
    and the scores; read here otherwise. The outputs trace each translation to its source file and
    slice; ``keep_source_ids`` adds the source's DICOM SOP Instance UID (manifest and
    SourceImageSequence), an identifier, as ``medgan data prepare --keep-source-ids`` does.
    """
    _check_translate_options(direction, fmt, split, min_target_prob, eval_split)
    ckpt = resolve_checkpoint(checkpoint)
    tr = registry.load_translator(ckpt, resolve_device(device))
    ss, filtered = _source_slices(tr, direction, source, data_dir, split)
    names = (tr.domains["a"], tr.domains["b"]) if direction == "A2B" else (tr.domains["b"], tr.domains["a"])
    folder = OutputFolder(
        out,
        record=RECORD,
        what="generation",
        command=f"medgan generate --translate {direction}",
        overwrite=overwrite,
    )
    folder.check_writable()
    params = {
        "checkpoint_sha256": tr.sha256,
        "translate": direction,
        "source": source if isinstance(source, str) else f"slices of {source.source_format} data",
        "split": split,
        "format": fmt,
        "bits": bits if fmt == "png" else None,
        "min_target_prob": min_target_prob,
        "batch_size": batch_size,
        **({"keep_source_ids": True} if keep_source_ids else {}),
    }
    with folder:
        rec = folder.claim(params)
        out = folder.path
        translated = tr.translate(
            torch.from_numpy(np.ascontiguousarray(ss.images)), direction, batch_size
        ).numpy()
        clf, clf_dir = domain_classifier(ckpt, tr.meta, data_dir, out, data)
        target_col = 1 if direction == "A2B" else 0
        p_out = clf.predict_proba(translated)[:, target_col]
        p_src = clf.predict_proba(ss.images)[:, target_col]
        kept = np.ones(len(ss), bool) if min_target_prob is None else p_out >= min_target_prob
        modality = tr.meta.data.modality
        writer = OutputWriter(out, fmt, bits, tr.sha256, rec["created_utc"], 0, modality)
        manifest = _write_translations(
            writer, ss, translated, (p_out, p_src), kept, direction, names, data_dir, keep_source_ids
        )
        atomic_write_text(out / "manifest.csv", manifest.to_csv(index=False))
        metrics = {
            "direction": direction,
            "source_domain": names[0],
            "target_domain": names[1],
            "n_sources": len(ss),
            "filtered_to_source_domain": filtered,
            "share_classified_as_target": float((p_out > 0.5).mean()),
            "mean_target_prob": float(p_out.mean()),
            "share_sources_classified_as_target": float((p_src > 0.5).mean()),
            "min_target_prob": min_target_prob,
            "n_dropped": int((~kept).sum()),
            "n_written": int(kept.sum()),
            "classifier": {
                "path": str(clf_dir),
                "arch": clf.arch,
                "val_auc": clf.val_auc,
                "val_acc": clf.val_acc,
            },
        }
        if features is not None:
            metrics["quality"] = _quality(
                tr, translated, p_out, direction, data_dir, features, clf_dir, device, eval_split, cache, data
            )
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str))
        return manifest


def _quality(
    tr: Any,
    translated: np.ndarray,
    p_out: np.ndarray,
    direction: str,
    data_dir: Path,
    features: str,
    clf_dir: Path,
    device: str,
    eval_split: str,
    cache: Path | None,
    data: RunData | None = None,
) -> dict[str, Any]:
    """:func:`translation_scores` against the target domain of the checkpoint's own data."""

    cfg = RunConfig.model_validate(tr.meta.run_config())
    data = RunData.of(data, cfg, data_dir)
    a, b, domains = domain_train_sets(cfg, data_dir, data)
    ea, eb = domain_split(cfg, data_dir, eval_split, domains, data)
    target_eval, target_train = (eb, b) if direction == "A2B" else (ea, a)
    ext = get_extractor(features, resolve_device(device), clf_dir if features == "domain" else None)
    tag = "translation:" + (str(domains["b"]) if direction == "A2B" else str(domains["a"]))
    scores = translation_scores(
        translated, target_eval, target_train, ext, tag=tag, target_prob=p_out, cache=cache
    )
    return {**scores, "eval_split": eval_split}


def _source_reference(row: pd.Series, data_dir: Path) -> tuple[tuple[str, str], ...]:
    """(SOPClassUID, SOPInstanceUID) of a DICOM source slice, for the output's SourceImageSequence."""
    if row["source_format"] != "dicom" or pd.isna(row["sop_instance_uid"]):
        return ()
    import pydicom

    path = Path(str(row["source"]))
    path = path if path.is_absolute() else data_dir / path
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        return ((str(ds.SOPClassUID), str(row["sop_instance_uid"])),)
    except Exception:  # the source moved: the manifest still names it
        return ()
