"""``medgan evaluate``: every metric for a synthetic set against real slices, with N, the real-real floor and CIs.

Under ``torchrun`` feature extraction is sharded (:func:`sharded_features`): each rank extracts a
contiguous share of the images, cut at the extractor's batch size so that every image is in
the same batch as in a single process, and the rows are gathered in order; rank 0 computes
the metrics and writes the files (the feature cache included).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan import distributed
from medgan.config import DataConfig
from medgan.errors import InputError
from medgan.io.atomic import atomic_write_text
from medgan.metrics.diversity import (
    closest_pairs_grid,
    mean_pairwise_distance,
    memorization,
    within_class_ms_ssim,
)
from medgan.metrics.features import FeatureExtractor
from medgan.metrics.stats import bootstrap_ci, check_features, fid, kid, precision_recall
from medgan.paths import user_cache_dir

SPLITS = ("train", "val", "test", "all")

#: Shard boundary for extractors that do not name their ``batch_size`` (the domain classifier's batch).
DEFAULT_FEATURE_BATCH = 256


def sharded_features(extractor: FeatureExtractor, images: np.ndarray) -> np.ndarray:
    """``extractor(images)``; under ``torchrun`` each rank extracts its share and all get every row, in order.

    Shards are contiguous and cut at multiples of the extractor's batch size, so each image is
    computed in the same batch as in one process and the features are the same numbers.
    """
    if distributed.world_size() == 1:
        return extractor(images)
    own = distributed.shard(len(images), align=getattr(extractor, "batch_size", DEFAULT_FEATURE_BATCH))
    local = extractor(images[own.start : own.stop]) if len(own) else np.zeros((0,), np.float64)
    return distributed.gather_rows(local)


def cached_features(
    extractor: FeatureExtractor, images: np.ndarray, tag: str, cache: Path | None = None
) -> np.ndarray:
    """Features of ``images``, cached under a hash of (tag, extractor key incl. preprocessing, image bytes)."""
    h = hashlib.sha256()
    h.update(tag.encode())
    h.update(extractor.key.encode())
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    folder = cache or user_cache_dir() / "features"
    path = folder / f"{h.hexdigest()[:32]}.npz"
    cached = None
    if path.is_file():
        from medgan.io.npz import read_npz

        with contextlib.suppress(InputError, KeyError):  # a damaged cache entry is recomputed
            cached = read_npz(path)["features"]
    if distributed.all_true(cached is not None):  # every rank read it (or, in one process: it was read)
        return cached
    feats = sharded_features(extractor, images)
    if distributed.is_main():  # under torchrun only rank 0 writes the cache
        from medgan.io.npz import write_npz

        folder.mkdir(parents=True, exist_ok=True)
        write_npz(path, features=feats)
    return feats


def load_synthetic(spec: str, data_dir: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, str]:
    """Synthetic slices (N, C, H, W) in [-1, 1] and labels from a generation folder (PNG or NPZ) or any source."""
    p = Path(spec)
    if p.is_dir() and (p / "manifest.csv").is_file():
        from medgan.paths import inside

        m = pd.read_csv(p / "manifest.csv", dtype={"path": str}, keep_default_na=False)
        fmt = str(m["format"].iloc[0]) if len(m) and "format" in m else "png"
        labels = m["label"].to_numpy() if "label" in m else np.zeros(len(m), np.int64)
        if fmt == "npz":
            from medgan.io.npz import read_npz

            parts = [read_npz(inside(p, f, p / "manifest.csv"))["images"] for f in dict.fromkeys(m["path"])]
            imgs = np.concatenate(parts)
        elif fmt == "png":
            from medgan.data.intensity import dtype_range, normalize
            from medgan.io.images import read_image

            arrs = [read_image(inside(p, f, p / "manifest.csv")) for f in m["path"]]
            imgs = np.stack([normalize(a, dtype_range(a.dtype)) for a in arrs])
        else:
            raise InputError(
                p, f"evaluate reads PNG or NPZ generations (this one is {fmt}); regenerate with --format npz"
            )
        return imgs.astype(np.float32), labels.astype(np.int64), str(p)
    from medgan.data.detect import source_from_spec
    from medgan.data.sources import load_source

    data = source_from_spec(spec, data_dir).model_copy(
        update={"size": tuple(shape[1:]), "channels": shape[0]}
    )
    ss = load_source(data, data_dir)
    return ss.images, ss.manifest["label"].to_numpy().astype(np.int64), spec


def split_spec(spec: str) -> tuple[str, str]:
    """``medmnist:breastmnist:test`` -> (``medmnist:breastmnist``, ``test``); default split ``test``."""
    head, _, tail = spec.rpartition(":")
    if head and tail in SPLITS:
        return head, tail
    return spec, "test"


def ensure_domain_classifier(real_spec: str, data_dir: Path, folder: Path) -> Path:
    """The classifier for ``--features domain``: ``folder`` if it holds one, else trained on the real train split.

    Trained with the default :class:`~medgan.config.ClassifierConfig` (early stopping on the
    validation split) and saved in ``folder`` (safetensors + JSON), so later evaluations reuse it.
    """
    from medgan.classifier import train_classifier
    from medgan.config import ClassifierConfig
    from medgan.data.detect import source_from_spec
    from medgan.data.sources import load_source
    from medgan.training.checkpoint import list_checkpoints

    if list_checkpoints(folder):
        return folder
    src, _ = split_spec(real_spec)
    ss = load_source(source_from_spec(src, data_dir), data_dir)
    tr, va = ss.split("train"), ss.split("val")
    if (tr.manifest["label"] < 0).any():
        raise InputError(src, "domain features need a labelled source (a classifier is trained on it)")
    clf = train_classifier(
        tr.images,
        tr.manifest["label"].to_numpy(),
        va.images,
        va.manifest["label"].to_numpy(),
        len(ss.classes),
        ClassifierConfig(),
        classes=list(ss.classes),
    )
    clf.save(folder)
    return folder


def evaluate(
    real_spec: str | DataConfig,
    synthetic_spec: str,
    extractor: FeatureExtractor,
    data_dir: Path,
    *,
    out: Path | None = None,
    n_boot: int = 200,
    seed: int = 0,
    run_dir: Path | None = None,
    cache: Path | None = None,
) -> dict[str, Any]:
    """Compute every metric; writes ``metrics.json`` (and the closest-pairs grid) into ``out`` when given.

    Under ``torchrun`` every rank extracts its share of the features; rank 0 returns the metrics
    and writes the files, the other ranks return ``{}``.
    """
    from medgan.data.detect import source_from_spec
    from medgan.data.sources import load_source

    if isinstance(real_spec, DataConfig):  # a config's data section: evaluate against its test split
        src, split = real_spec.model_dump_json(), "test"
        ss = load_source(real_spec, data_dir)
        real_spec = f"{real_spec.source.kind} source from the config:test"
    else:
        src, split = split_spec(real_spec)
        ss = load_source(source_from_spec(src, data_dir), data_dir)
    real = ss if split == "all" else ss.split(split)
    train = ss.split("train")
    if len(real) < 2:
        raise InputError(real_spec, f"needs at least 2 real slices in split {split!r}, found {len(real)}")
    syn, syn_labels, syn_name = load_synthetic(synthetic_spec, data_dir, real.shape)
    if syn.shape[1:] != real.images.shape[1:]:
        raise InputError(
            synthetic_spec, f"synthetic slices {syn.shape[1:]} differ from real {real.images.shape[1:]}"
        )
    if len(syn) < 2:
        raise InputError(synthetic_spec, "needs at least 2 synthetic slices")

    tag = f"{src}:{split}"
    f_real = check_features(cached_features(extractor, real.images, tag, cache), "real features")
    f_syn = check_features(sharded_features(extractor, syn), "synthetic features")
    f_train = cached_features(extractor, train.images, f"{src}:train", cache) if len(train) >= 2 else None
    if not distributed.is_main():  # under torchrun the other ranks only helped extract features
        return {}

    out_d: dict[str, Any] = {
        "features": extractor.name,
        "real": real_spec,
        "synthetic": syn_name,
        "n_real": len(real),
        "n_synthetic": len(syn),
    }
    out_d["fid"] = fid(f_real, f_syn)
    out_d["fid_ci"] = list(bootstrap_ci(fid, f_real, f_syn, n_boot, seed))
    km, ks, m = kid(f_real, f_syn, seed=seed)
    out_d.update({"kid_mean": km, "kid_std": ks, "kid_subset_size": m})
    out_d["kid_ci"] = list(
        bootstrap_ci(
            lambda a, b: kid(a, b, n_subsets=10, seed=seed)[0], f_real, f_syn, min(n_boot, 100), seed
        )
    )
    out_d["precision"], out_d["recall"] = precision_recall(f_real, f_syn, k=3)

    # the floor: real train vs the same real set, at the synthetic set's N
    if f_train is not None and split != "train":
        rng = np.random.default_rng(seed)
        n = min(len(syn), len(f_train))
        sub = f_train[rng.choice(len(f_train), n, replace=False)]
        out_d["floor_fid"] = fid(f_real, sub)
        out_d["floor_n"] = n
        out_d["floor_kid_mean"] = kid(f_real, sub, seed=seed)[0]
        out_d["floor_precision"], out_d["floor_recall"] = precision_recall(f_real, sub, k=3)
    else:
        out_d["floor_fid"] = None

    ms = within_class_ms_ssim(syn, syn_labels, seed=seed)
    ms_real = within_class_ms_ssim(real.images, real.manifest["label"].to_numpy(), seed=seed)
    out_d["ms_ssim"] = ms["mean"]
    out_d["ms_ssim_per_class"] = {k: v for k, v in ms.items() if k != "mean"}
    out_d["ms_ssim_real"] = ms_real["mean"]
    out_d["mean_pairwise_feature_distance"] = mean_pairwise_distance(f_syn, syn_labels)
    out_d["mean_pairwise_feature_distance_real"] = mean_pairwise_distance(
        f_real, real.manifest["label"].to_numpy()
    )

    if f_train is not None:
        mem = memorization(syn, f_syn, train.images, f_train)
        out_d["memorized_count"] = mem["count"]
        out_d["memorization"] = {
            s: {"threshold": mem[s]["threshold"], "flagged": mem[s]["flagged"]} for s in ("feature", "pixel")
        }
        if out is not None:
            d, i = mem["pixel"]["nn_distance"], mem["pixel"]["nn_index"]
            closest_pairs_grid(syn, train.images, d, i, Path(out) / "closest_pairs.png")
    else:
        out_d["memorized_count"] = None

    if run_dir is not None:
        out_d["discriminator_accuracy"] = discriminator_accuracy(run_dir)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out) / "metrics.json", json.dumps(out_d, indent=2, default=float))
    return out_d


def discriminator_accuracy(run_dir: Path, tail: float = 0.1) -> dict[str, float] | None:
    """Mean discriminator accuracy on real and fake over the last ``tail`` of a run's ``stats.jsonl``."""
    path = Path(run_dir) / "stats.jsonl"
    if not path.is_file():
        raise InputError(path, "no training stats (stats.jsonl) in this run folder")
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = rows[-max(1, int(len(rows) * tail)) :]
    if not rows or "d_acc_real" not in rows[0]:
        return None
    return {
        "real": float(np.mean([r["d_acc_real"] for r in rows])),
        "fake": float(np.mean([r["d_acc_fake"] for r in rows])),
        "steps": [rows[0]["step"], rows[-1]["step"]],
    }
