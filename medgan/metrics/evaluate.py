"""``medgan evaluate``: every metric for a synthetic set against real slices, with N, the real-real floor and CIs.

The floor's real train subset is drawn in the real evaluation set's class proportions
(:func:`class_stratified_indices`); density / coverage sit beside precision / recall; every
distribution metric is also given per class (``per_class``), each with its floor; label
agreement and CAS (:func:`compute_label_scores`) and the quality gates
(:mod:`medgan.metrics.gates`) are added on request. :func:`eval_counts` says how many slices
per class an evaluation set should have (the test split's class mix).

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
from typing import Any, Literal

import numpy as np
import pandas as pd

# train_classifier is looked up in the package at each call, so a patch of medgan.classifier reaches it
from medgan import classifier as classifiers
from medgan import distributed
from medgan.classifier import TrainedClassifier
from medgan.classifier.metrics import diagnostic_metrics
from medgan.config import ClassifierConfig, DataConfig, GatesConfig, PipelineConfig
from medgan.data.detect import source_from_spec
from medgan.data.identity import shared_slices, slice_digests
from medgan.data.slices import SliceSet
from medgan.data.sources import load_source
from medgan.device import resolve_device
from medgan.errors import InputError
from medgan.intensity import dtype_range, normalize
from medgan.io.atomic import atomic_write_text
from medgan.io.images import read_image
from medgan.io.npz import read_npz, write_npz
from medgan.metrics.diversity import (
    closest_pairs_grid,
    mean_pairwise_distance,
    memorization,
    within_class_ms_ssim,
)
from medgan.metrics.features import FeatureExtractor
from medgan.metrics.gates import check_gates, gates_passed, gates_verdict
from medgan.metrics.label import classification_accuracy_score, label_agreement
from medgan.metrics.records import EvaluationResult
from medgan.metrics.stats import (
    bootstrap_ci,
    check_features,
    density_coverage,
    fid,
    kid,
    precision_recall,
    proportional_counts,
)
from medgan.paths import inside, user_cache_dir
from medgan.training.checkpoint import list_checkpoints

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
        with contextlib.suppress(InputError, KeyError):  # a damaged cache entry is recomputed
            cached = read_npz(path)["features"]
    if distributed.all_true(cached is not None):  # every rank read it (or, in one process: it was read)
        return cached
    feats = sharded_features(extractor, images)
    if distributed.is_main():  # under torchrun only rank 0 writes the cache
        folder.mkdir(parents=True, exist_ok=True)
        write_npz(path, features=feats)
    return feats


def _same_shapes(folder: Path, files: list[str], shapes: list[tuple[int, ...]]) -> None:
    """Every image of a generation has the first one's shape (else the first odd file is named)."""
    for f, shape in zip(files, shapes, strict=True):
        if tuple(shape) != tuple(shapes[0]):
            raise InputError(
                folder / f,
                f"is {tuple(shape)}, the generation's first image {tuple(shapes[0])}: one generation, one size",
            )


def _check_classes(
    where: str | Path, labels: np.ndarray, names: list[str] | None, classes: list[str]
) -> None:
    """Every label is a class of the real side, under the same name when the synthetic side names it."""
    labels = np.asarray(labels)
    bad = sorted({int(v) for v in labels if not (0 <= int(v) < len(classes))})
    if bad:
        raise InputError(
            where, f"labels {bad[:5]} are not classes of the real side {classes} (0-{len(classes) - 1})"
        )
    if names is not None:
        pairs = sorted({(int(v), str(n)) for v, n in zip(labels, names, strict=True)})
        wrong = [(v, n) for v, n in pairs if classes[v] != n]
        if wrong:
            v, n = wrong[0]
            raise InputError(
                where,
                f"label {v} is {n!r} here but {classes[v]!r} on the real side ({classes}): another dataset's "
                "classes; evaluate against the data the synthesizer was trained on",
            )


def load_synthetic(
    spec: str, data_dir: Path, shape: tuple[int, ...], classes: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Synthetic slices (N, C, H, W) in [-1, 1] and labels from a generation folder (PNG or NPZ) or
    any source, ``SOURCE[:split]`` (without a split: every split of the source). With ``classes``
    (the real side's), labels that are not those classes (by index, and by name where the
    synthetic side names them) are a one-line error."""
    p = Path(spec)
    if p.is_dir() and (p / "manifest.csv").is_file():
        m = pd.read_csv(p / "manifest.csv", dtype={"path": str, "label_name": str}, keep_default_na=False)
        if len(m) == 0:
            raise InputError(p / "manifest.csv", "lists no images (a header and no rows)")
        fmt = str(m["format"].iloc[0]) if "format" in m else "png"
        labels = m["label"].to_numpy() if "label" in m else np.zeros(len(m), np.int64)
        if classes is not None:
            names = m["label_name"].astype(str).tolist() if "label_name" in m else None
            _check_classes(p / "manifest.csv", labels, names, classes)
        if fmt == "npz":
            files = list(dict.fromkeys(m["path"]))
            parts = [read_npz(inside(p, f, p / "manifest.csv"))["images"] for f in files]
            _same_shapes(p, files, [a.shape[1:] for a in parts])
            imgs = np.concatenate(parts)
        elif fmt == "png":
            arrs = [read_image(inside(p, f, p / "manifest.csv")) for f in m["path"]]
            _same_shapes(p, list(m["path"]), [a.shape for a in arrs])
            imgs = np.stack([normalize(a, dtype_range(a.dtype)) for a in arrs])
        else:
            raise InputError(
                p, f"evaluate reads PNG or NPZ generations (this one is {fmt}); regenerate with --format npz"
            )
        return imgs.astype(np.float32), labels.astype(np.int64), str(p)
    src, split = split_spec(spec, default="all")
    data = source_from_spec(src, data_dir).model_copy(update={"size": tuple(shape[1:]), "channels": shape[0]})
    ss = load_source(data, data_dir)
    if classes is not None and list(ss.classes) != list(classes):
        raise InputError(
            spec, f"its classes {list(ss.classes)} are not the real side's {list(classes)}: another dataset's"
        )
    if split != "all":
        ss = ss.split(split)
    return ss.images, ss.manifest["label"].to_numpy().astype(np.int64), spec


def check_sides_apart(real_spec: str, synthetic_spec: str) -> None:
    """Refuse a synthetic side that names the real side's source with an overlapping split.

    ``--real medmnist:x:test --synthetic medmnist:x`` (every split, test included) or
    ``...:test`` on both sides would score a set against itself.
    """
    if Path(synthetic_spec).is_dir() and (Path(synthetic_spec) / "manifest.csv").is_file():
        return  # a generation folder
    real_src, real_split = split_spec(real_spec)
    syn_src, syn_split = split_spec(synthetic_spec, default="all")
    if real_src != syn_src:
        return
    if "all" in (real_split, syn_split) or real_split == syn_split:
        shown = "every split" if syn_split == "all" else f"split {syn_split!r}"
        other = (
            next(sp for sp in ("train", "val", "test") if sp != real_split)
            if real_split != "all"
            else "train"
        )
        raise InputError(
            "--synthetic",
            f"{synthetic_spec} takes {shown} of {syn_src}, which holds the real side's slices "
            f"({real_spec}); name a split that does not overlap, e.g. {syn_src}:{other}",
        )


def split_spec(spec: str, default: str = "test") -> tuple[str, str]:
    """``medmnist:breastmnist:test`` -> (``medmnist:breastmnist``, ``test``); ``default`` without a split."""
    head, _, tail = spec.rpartition(":")
    if head and tail in SPLITS:
        return head, tail
    return spec, default


def ensure_domain_classifier(real_spec: str, data_dir: Path, folder: Path) -> Path:
    """The classifier for ``--features domain``: ``folder`` if it holds one, else trained on the real train split.

    Trained with the default :class:`~medgan.config.ClassifierConfig` (early stopping on the
    validation split) and saved in ``folder`` (safetensors + JSON), so later evaluations reuse it.
    """
    if list_checkpoints(folder):
        return folder
    src, _ = split_spec(real_spec)
    ss = load_source(source_from_spec(src, data_dir), data_dir)
    tr, va = ss.split("train"), ss.split("val")
    if (tr.manifest["label"] < 0).any():
        raise InputError(src, "domain features need a labelled source (a classifier is trained on it)")
    clf = classifiers.train_classifier(
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


def class_stratified_indices(
    pool_labels: np.ndarray, like_labels: np.ndarray, n: int, seed: int
) -> np.ndarray:
    """``n`` indices into ``pool_labels`` drawn (seeded, without replacement) in the class mix of ``like_labels``.

    Counts come from :func:`~medgan.metrics.stats.proportional_counts`; a class the pool has
    too few of is topped up from the rest of the pool at random. Without usable labels (any
    negative, or fewer slices than classes) the draw is a plain random subset.
    """
    pool = np.asarray(pool_labels, np.int64)
    like = np.asarray(like_labels, np.int64)
    n = int(min(n, len(pool)))
    rng = np.random.default_rng(seed)
    n_present = len(np.unique(like)) if len(like) else 0
    if len(like) == 0 or (pool < 0).any() or (like < 0).any() or n < n_present:
        return np.sort(rng.choice(len(pool), n, replace=False))
    n_classes = int(max(pool.max(initial=0), like.max(initial=0))) + 1
    picks = []
    for c, k in enumerate(proportional_counts(like, n, n_classes)):
        idx = np.flatnonzero(pool == c)
        picks.append(rng.choice(idx, min(k, len(idx)), replace=False))
    chosen = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    short = n - len(chosen)
    if short > 0:
        rest = np.setdiff1d(np.arange(len(pool)), chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, short, replace=False)])
    return np.sort(chosen)


def split_class_counts(part: SliceSet, n: int, n_classes: int) -> dict[int, int]:
    """``n`` slices split in the class proportions of ``part``'s labelled slices, as ``{label: count}``.

    Every class present gets at least one slice (``n`` is raised to the number of classes present).
    """
    y = part.manifest["label"].to_numpy().astype(np.int64)
    y = y[y >= 0]
    if len(y) == 0:
        raise InputError("data", "no labelled slices to take class proportions from")
    n = max(n, len(np.unique(y)))
    return {c: k for c, k in enumerate(proportional_counts(y, n, n_classes)) if k > 0}


def eval_counts(
    pipeline: PipelineConfig, test: SliceSet, train: SliceSet, n_classes: int
) -> int | dict[int, int]:
    """Evaluation slices to generate per class: ``pipeline.eval_per_class`` for every class when set,
    else ``pipeline.eval_n`` (default: the test split's N) in the test split's class proportions
    (the train split's when the test split has no labelled slices)."""
    if pipeline.eval_per_class is not None:
        return pipeline.eval_per_class
    labelled = int((test.manifest["label"] >= 0).sum())
    return split_class_counts(test if labelled else train, pipeline.eval_n or max(labelled, 2), n_classes)


def distribution_scores(f_real: np.ndarray, f_other: np.ndarray, prefix: str = "") -> dict[str, float | None]:
    """FID, precision / recall (k = 3) and density / coverage (k = 5) of ``f_other`` against ``f_real``.

    Each is ``None`` where a set is too small for it (FID: 2 rows each; precision / recall: more
    than 3; density / coverage: more than 5 real rows and 2 others).
    """
    nr, no = len(f_real), len(f_other)
    d: dict[str, float | None] = dict.fromkeys(("fid", "precision", "recall", "density", "coverage"))
    if min(nr, no) >= 2:
        d["fid"] = fid(f_real, f_other)
    if min(nr, no) > 3:
        d["precision"], d["recall"] = precision_recall(f_real, f_other, k=3)
    if nr > 5 and no >= 2:
        d["density"], d["coverage"] = density_coverage(f_real, f_other, k=5)
    return {f"{prefix}{k}": v for k, v in d.items()}


def per_class_scores(
    f_real: np.ndarray,
    real_labels: np.ndarray,
    f_syn: np.ndarray,
    syn_labels: np.ndarray,
    classes: list[str],
    f_train: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """:func:`distribution_scores` within each class, each with its floor (real train slices of that class, the synthetic class's N)."""
    out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(classes):
        rm, sm = real_labels == c, syn_labels == c
        if not rm.any() and not sm.any():
            continue
        entry: dict[str, Any] = {"n_real": int(rm.sum()), "n_synthetic": int(sm.sum())}
        entry.update(distribution_scores(f_real[rm], f_syn[sm]))
        if f_train is not None and train_labels is not None:
            pool = np.flatnonzero(train_labels == c)
            n = int(min(sm.sum(), len(pool)))
            sub = np.random.default_rng([seed, c]).choice(pool, n, replace=False) if n else pool[:0]
            entry.update(distribution_scores(f_real[rm], f_train[sub], "floor_"))
            entry["floor_n"] = n
        out[name] = entry
    return out


def _data_hash(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


def ensure_real_classifier(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    classes: list[str],
    cfg: ClassifierConfig,
    folder: Path | None = None,
) -> TrainedClassifier:
    """A classifier trained on real train slices (early stopping on val), cached in ``folder``.

    The cached one is reused only when its config, classes and training data (a hash written
    beside it as ``trained_on.json``) are the same; otherwise it is trained again and replaced.
    """
    key = _data_hash(train_x, np.asarray(train_y, np.int64), val_x, np.asarray(val_y, np.int64))
    stamp = None if folder is None else Path(folder) / "trained_on.json"
    if folder is not None and list_checkpoints(folder) and stamp is not None and stamp.is_file():
        with contextlib.suppress(InputError, json.JSONDecodeError):
            rec = json.loads(stamp.read_text(encoding="utf-8"))
            clf = TrainedClassifier.load(folder, device=resolve_device(cfg.device))
            if rec.get("data") == key and clf.classes == list(classes) and clf.config == cfg:
                return clf
    clf = classifiers.train_classifier(train_x, train_y, val_x, val_y, len(classes), cfg, list(classes))
    if folder is not None and distributed.is_main():
        clf.save(folder)
        atomic_write_text(Path(folder) / "trained_on.json", json.dumps({"data": key}))
    return clf


def _test_scores(clf: TrainedClassifier, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p = clf.predict_proba(x)
    m = diagnostic_metrics(y, p, **({"positive": 1} if p.shape[1] == 2 else {}))
    return {k: float(m[k]) for k in ("auc", "acc", "balanced_acc")}


def compute_label_scores(
    ss: SliceSet,
    split: str,
    syn: np.ndarray,
    syn_labels: np.ndarray,
    cfg: ClassifierConfig,
    *,
    classifier_dir: Path | None = None,
    cas_set: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Label agreement and CAS of a synthetic set against the real ``split`` of ``ss`` (docs/metrics.md).

    A classifier trained on the real train split (cached in ``classifier_dir``) gives the label
    agreement of ``syn`` and its own accuracy on the real split. CAS trains the same classifier on
    ``cas_set`` (default: ``syn``) only and tests it on the real split, beside the real-trained one
    and one trained on a real train subset of the CAS set's N and class counts (the CAS floor).
    """
    real = ss if split == "all" else ss.split(split)
    tr, va = ss.split("train"), ss.split("val")
    ys = {
        name: part.manifest["label"].to_numpy().astype(np.int64)
        for name, part in (("train", tr), ("val", va), (split, real))
    }
    for name, y in ys.items():
        if len(y) == 0 or (y < 0).any():
            raise InputError(
                name, f"label scores need labelled {name} slices (found {len(y)}, some unlabelled?)"
            )
    classes = list(ss.classes)
    cas_x, cas_y = cas_set if cas_set is not None else (syn, syn_labels)
    for name, y in (("synthetic", syn_labels), ("CAS synthetic", cas_y)):
        if len(y) and (np.min(y) < 0 or np.max(y) >= len(classes)):
            raise InputError(name, f"labels outside the real classes {classes}")
    ty, vy, ry = ys["train"], ys["val"], ys[split]
    clf = ensure_real_classifier(tr.images, ty, va.images, vy, classes, cfg, classifier_dir)
    la = label_agreement(clf, syn, syn_labels, real.images, ry)
    cas = classification_accuracy_score(
        cas_x, cas_y, va.images, vy, real.images, ry, classes, cfg, real_clf=clf
    )
    n = min(len(cas_x), len(tr))
    if n < len(tr):
        idx = class_stratified_indices(ty, cas_y, n, seed)
        small = classifiers.train_classifier(
            tr.images[idx], ty[idx], va.images, vy, len(classes), cfg, classes
        )
        same_n = _test_scores(small, real.images, ry)
    else:
        same_n = _test_scores(clf, real.images, ry)
    return {
        "label_agreement": la.as_dict(),
        "cas": {
            **cas.as_dict(),
            "real_same_n_auc": same_n["auc"],
            "real_same_n_acc": same_n["acc"],
            "real_same_n": n,
        },
        "classifier": {
            "arch": clf.arch,
            "val_auc": clf.val_auc,
            "path": None if classifier_dir is None else str(classifier_dir),
        },
    }


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
    label_scores: bool | Literal["if-possible"] = False,
    classifier: ClassifierConfig | None = None,
    classifier_dir: Path | None = None,
    cas_synthetic: str | None = None,
    gates: GatesConfig | None = None,
) -> dict[str, Any]:
    """Compute every metric; writes ``metrics.json`` (and the closest-pairs grid) into ``out`` when given.

    ``label_scores`` adds label agreement and CAS (:func:`compute_label_scores`), with ``classifier``'s
    settings (default :class:`~medgan.config.ClassifierConfig`), the real classifier cached in
    ``classifier_dir``, and CAS trained on ``cas_synthetic`` (default: the synthetic set).
    ``label_scores="if-possible"`` records why they could not be computed (e.g. a validation
    split with one class) under ``label_scores_skipped`` instead of raising. ``gates`` adds the
    quality-gate results under ``gates`` (:mod:`medgan.metrics.gates`).
    Under ``torchrun`` every rank extracts its share of the features; rank 0 returns the metrics
    and writes the files, the other ranks return ``{}``.
    """
    if isinstance(real_spec, DataConfig):  # a config's data section: evaluate against its test split
        src, split = real_spec.model_dump_json(), "test"
        ss = load_source(real_spec, data_dir)
        real_spec = f"{real_spec.source.kind} source from the config:test"
    else:
        src, split = split_spec(real_spec)
        ss = load_source(source_from_spec(src, data_dir), data_dir)
    real = ss if split == "all" else ss.split(split)
    if len(real) < 2:
        raise InputError(real_spec, f"needs at least 2 real slices in split {split!r}, found {len(real)}")
    check_sides_apart(real_spec, synthetic_spec)
    syn, syn_labels, syn_name = load_synthetic(synthetic_spec, data_dir, real.shape, list(ss.classes))
    cas_set = None
    if cas_synthetic is not None and label_scores:
        cx, cy, _ = load_synthetic(cas_synthetic, data_dir, real.shape, list(ss.classes))
        if cx.shape[1:] != real.images.shape[1:]:
            raise InputError(
                cas_synthetic, f"synthetic slices {cx.shape[1:]} differ from real {real.images.shape[1:]}"
            )
        cas_set = (cx, cy)
    return evaluate_sets(
        ss,
        split,
        syn,
        syn_labels,
        extractor,
        tag=src,
        real_name=real_spec,
        syn_name=syn_name,
        out=out,
        n_boot=n_boot,
        seed=seed,
        run_dir=run_dir,
        cache=cache,
        label_scores=label_scores,
        classifier=classifier,
        classifier_dir=classifier_dir,
        cas_set=cas_set,
        gates=gates,
    )


def _check_eval_sets(real: SliceSet, split: str, syn: np.ndarray, real_name: str, syn_name: str) -> None:
    """At least 2 real slices in ``split``, at least 2 synthetic ones, and the same slice shape."""
    if len(real) < 2:
        raise InputError(real_name, f"needs at least 2 real slices in split {split!r}, found {len(real)}")
    if syn.shape[1:] != real.images.shape[1:]:
        raise InputError(
            syn_name, f"synthetic slices {syn.shape[1:]} differ from real {real.images.shape[1:]}"
        )
    if len(syn) < 2:
        raise InputError(syn_name, "needs at least 2 synthetic slices")


def _check_apart_by_content(
    real: SliceSet,
    syn: np.ndarray,
    real_name: str,
    syn_name: str,
    cas_set: tuple[np.ndarray, np.ndarray] | None,
) -> int:
    """Refuse a synthetic set (or CAS training set) that holds the real evaluation slices, by pixels;
    else the number of synthetic slices identical to a real one (the data's own duplicates).

    The check on names (:func:`check_sides_apart`) misses the same split spelled another way (the
    ``.npz`` path, a config file, a CSV); :func:`~medgan.data.identity.shared_slices` does not.
    """
    sides = [("--synthetic", syn_name, syn, "would be scored against itself")]
    if cas_set is not None:
        sides.append(
            ("--cas-synthetic", "the CAS training set", cas_set[0], "would train CAS on its test slices")
        )
    counts = []
    real_digests = slice_digests(real.images)  # each set hashed once
    for key, name, images, why in sides:
        digests = slice_digests(images)
        mine = shared_slices(digests, real_digests)  # of these slices, how many are real-side slices
        theirs = shared_slices(real_digests, digests)  # of the real side, how much these hold
        if mine.same_data or theirs.same_data:
            what = (
                f"{mine.count} of the {mine.n} slices of {name} are"
                if mine.same_data
                else f"{name} holds {theirs.count} of the real side's {theirs.n} slices,"
            )
            raise InputError(
                key,
                f"{what} pixel-identical to slices of the real side ({real_name}): the same data under "
                f"another name, which {why}; give a split or set that does not contain them",
            )
        counts.append(mine.count)
    return counts[0]


def _distribution_metrics(f_real: np.ndarray, f_syn: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """FID and KID with bootstrap CIs; precision, recall, density, coverage (synthetic vs real features)."""
    out: dict[str, Any] = {}
    out["fid"] = fid(f_real, f_syn)
    out["fid_ci"] = list(bootstrap_ci(fid, f_real, f_syn, n_boot, seed))
    km, ks, m = kid(f_real, f_syn, seed=seed)
    out.update({"kid_mean": km, "kid_std": ks, "kid_subset_size": m})
    out["kid_ci"] = list(
        bootstrap_ci(
            lambda a, b: kid(a, b, n_subsets=10, seed=seed)[0], f_real, f_syn, min(n_boot, 100), seed
        )
    )
    scores = distribution_scores(f_real, f_syn)
    out["precision"], out["recall"] = scores["precision"], scores["recall"]
    out["density"], out["coverage"] = scores["density"], scores["coverage"]
    return out


def _floor_metrics(
    f_real: np.ndarray,
    f_train: np.ndarray,
    real_y: np.ndarray,
    train_y: np.ndarray,
    n_syn: int,
    classes: list[str],
    seed: int,
) -> dict[str, Any]:
    """The real-real floor: a train subset at the synthetic N in the real set's class mix vs the real set."""
    idx = class_stratified_indices(train_y, real_y, min(n_syn, len(f_train)), seed)
    sub = f_train[idx]
    out: dict[str, Any] = {}
    out["floor_fid"] = fid(f_real, sub)
    out["floor_n"] = len(idx)
    out["floor_class_counts"] = {n: int((train_y[idx] == c).sum()) for c, n in enumerate(classes)}
    out["floor_kid_mean"] = kid(f_real, sub, seed=seed)[0]
    fl = distribution_scores(f_real, sub, "floor_")
    for k in ("precision", "recall", "density", "coverage"):
        out[f"floor_{k}"] = fl[f"floor_{k}"]
    return out


def _memorization_metrics(
    syn: np.ndarray,
    f_syn: np.ndarray,
    train_images: np.ndarray,
    f_train: np.ndarray,
    out: Path | None,
    heldout: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Near-copies of training images, calibrated on ``heldout`` real slices (images, features): the
    count beyond chance (``memorized_count``, what the gate reads) and the details; the
    closest-pairs grid (by pixel correlation) into ``out``."""
    h_img, h_feat = heldout if heldout is not None else (None, None)
    mem = memorization(syn, f_syn, train_images, f_train, h_img, h_feat)
    res = {
        "memorized_count": mem["excess"],
        "memorization": {
            **{
                s: {
                    "measure": mem[s]["measure"],
                    "threshold": mem[s]["threshold"],
                    "flagged": mem[s]["flagged"],
                }
                for s in ("pixel", "feature")
            },
            **{
                k: mem[k]
                for k in (
                    "count",
                    "exact",
                    "allowed",
                    "reference",
                    "n_reference",
                    "reference_duplicates",
                    "reference_rate",
                    "alpha",
                )
            },
            "max_correlation": float(np.max(mem["pixel"]["nn_similarity"])) if len(syn) else None,
        },
    }
    if out is not None:
        sim, i = mem["pixel"]["nn_similarity"], mem["pixel"]["nn_index"]
        closest_pairs_grid(syn, train_images, 1.0 - sim, i, Path(out) / "closest_pairs.png")
    return res


def _label_score_metrics(
    ss: SliceSet,
    split: str,
    syn: np.ndarray,
    syn_labels: np.ndarray,
    label_scores: bool | Literal["if-possible"],
    classifier: ClassifierConfig | None,
    classifier_dir: Path | None,
    cas_set: tuple[np.ndarray, np.ndarray] | None,
    seed: int,
) -> dict[str, Any]:
    """:func:`compute_label_scores`; with ``"if-possible"`` an InputError becomes ``label_scores_skipped``."""
    try:
        return compute_label_scores(
            ss,
            split,
            syn,
            syn_labels,
            classifier or ClassifierConfig(),
            classifier_dir=classifier_dir,
            cas_set=cas_set,
            seed=seed,
        )
    except InputError as err:
        if label_scores != "if-possible":
            raise
        return {"label_scores_skipped": str(err)}


def evaluate_sets(
    ss: SliceSet,
    split: str,
    syn: np.ndarray,
    syn_labels: np.ndarray,
    extractor: FeatureExtractor,
    *,
    tag: str,
    real_name: str,
    syn_name: str,
    out: Path | None = None,
    n_boot: int = 200,
    seed: int = 0,
    run_dir: Path | None = None,
    cache: Path | None = None,
    label_scores: bool | Literal["if-possible"] = False,
    classifier: ClassifierConfig | None = None,
    classifier_dir: Path | None = None,
    cas_set: tuple[np.ndarray, np.ndarray] | None = None,
    gates: GatesConfig | None = None,
    check_apart: bool = True,
) -> dict[str, Any]:
    """:func:`evaluate` on arrays: synthetic slices and labels against the real ``split`` of ``ss``.

    ``tag`` names the real source in the feature cache (with the split appended). The floor
    subset of the train split is drawn in the real evaluation set's class proportions. A
    synthetic set (or CAS set) that is the real slices under another name is refused
    (:func:`_check_apart_by_content`); ``check_apart=False`` is for checks of the metrics
    themselves (a copy of the real set must score perfectly).
    """
    real = ss if split == "all" else ss.split(split)
    train = ss.split("train")
    _check_eval_sets(real, split, syn, real_name, syn_name)
    n_identical = (
        _check_apart_by_content(real, syn, real_name, syn_name, cas_set)
        if check_apart
        else shared_slices(syn, real.images).count
    )
    syn_labels = np.asarray(syn_labels, np.int64)

    f_real = check_features(cached_features(extractor, real.images, f"{tag}:{split}", cache), "real features")
    f_syn = check_features(sharded_features(extractor, syn), "synthetic features")
    f_train = cached_features(extractor, train.images, f"{tag}:train", cache) if len(train) >= 2 else None
    if not distributed.is_main():  # under torchrun the other ranks only helped extract features
        return {}
    classes = list(ss.classes)
    real_y = real.manifest["label"].to_numpy().astype(np.int64)
    train_y = train.manifest["label"].to_numpy().astype(np.int64)

    out_d: dict[str, Any] = {
        "features": extractor.name,
        "real": real_name,
        "synthetic": syn_name,
        "n_real": len(real),
        "n_synthetic": len(syn),
        "n_synthetic_identical_to_real": n_identical,  # the data's own cross-split duplicates
        "class_counts": {
            "real": {n: int((real_y == c).sum()) for c, n in enumerate(classes)},
            "synthetic": {n: int((syn_labels == c).sum()) for c, n in enumerate(classes)},
        },
    }
    out_d.update(_distribution_metrics(f_real, f_syn, n_boot, seed))

    # the floor: real train vs the same real set, at the synthetic set's N, in the real set's class mix
    floor = f_train is not None and split != "train"
    if floor:
        assert f_train is not None
        out_d.update(_floor_metrics(f_real, f_train, real_y, train_y, len(syn), classes, seed))
    else:
        out_d["floor_fid"] = None
    out_d["per_class"] = per_class_scores(
        f_real,
        real_y,
        f_syn,
        syn_labels,
        classes,
        f_train if floor else None,
        train_y if floor else None,
        seed,
    )

    ms = within_class_ms_ssim(syn, syn_labels, seed=seed)
    ms_real = within_class_ms_ssim(real.images, real_y, seed=seed)
    out_d["ms_ssim"] = ms["mean"]
    out_d["ms_ssim_per_class"] = {k: v for k, v in ms.items() if k != "mean"}
    out_d["ms_ssim_real"] = ms_real["mean"]
    out_d["mean_pairwise_feature_distance"] = mean_pairwise_distance(f_syn, syn_labels)
    out_d["mean_pairwise_feature_distance_real"] = mean_pairwise_distance(f_real, real_y)

    if f_train is not None:
        held = (real.images, f_real) if split in ("val", "test") else None  # slices the synthesizer never saw
        out_d.update(_memorization_metrics(syn, f_syn, train.images, f_train, out, held))
    else:
        out_d["memorized_count"] = None

    if label_scores:
        out_d.update(
            _label_score_metrics(
                ss, split, syn, syn_labels, label_scores, classifier, classifier_dir, cas_set, seed
            )
        )
    if run_dir is not None:
        out_d["discriminator_accuracy"] = discriminator_accuracy(run_dir)
    if gates is not None:
        out_d["gates"] = gate_report(out_d, gates, "the synthetic set")
    result = EvaluationResult.model_validate(out_d)  # one type per field, checked before it is written
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        result.write(Path(out) / "metrics.json")
    return result.as_dict()


def gate_report(metrics: dict[str, Any], gates: GatesConfig, name: str) -> dict[str, Any]:
    """``{"passed", "verdict", "results"}``: :func:`~medgan.metrics.gates.check_gates` in JSON-able form."""
    res = check_gates(metrics, gates)
    return {
        "passed": gates_passed(res),
        "verdict": gates_verdict(name, res),
        "results": [r.as_dict() for r in res],
    }


def discriminator_accuracy(run_dir: Path, tail: float = 0.1) -> dict[str, float] | None:
    """Mean discriminator accuracy on real and fake over the last ``tail`` of a run's ``stats.jsonl``."""
    path = Path(run_dir) / "stats.jsonl"
    if not path.is_file():
        raise InputError(path, "no training stats (stats.jsonl) in this run folder")
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = [r for r in rows if "loss_d" in r]  # training rows (selection scores are lines of their own)
    rows = rows[-max(1, int(len(rows) * tail)) :]
    if not rows or "d_acc_real" not in rows[0]:
        return None
    return {
        "real": float(np.mean([r["d_acc_real"] for r in rows])),
        "fake": float(np.mean([r["d_acc_fake"] for r in rows])),
        "steps": [rows[0]["step"], rows[-1]["step"]],
    }
