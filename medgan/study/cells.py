"""One study cell: the real subset, the synthetic slices mixed in, the classifier trained and scored on test."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from medgan import classifier
from medgan.classifier.augment import classical_augmentation
from medgan.classifier.metrics import bootstrap_metrics, diagnostic_metrics
from medgan.classifier.train import epoch_length, predict_labels, val_metrics, youden_threshold
from medgan.config import RunConfig
from medgan.data.sources import RunData, load_source
from medgan.device import resolve_device, sampling_precision
from medgan.errors import InputError
from medgan.mixing import MixedDataset, filter_by_confidence
from medgan.seeding import derive_seed
from medgan.study.plan import ArmSpec, arm_config, kind_is_sized, synth_dir
from medgan.synthesis import registry
from medgan.train import data_meta, subset_masks, train_slices
from medgan.training.checkpoint import (
    checkpoint_step,
    list_checkpoints,
    resolve_checkpoint,
)

FILTER_POOL = 4  # a confidence-filtered arm chooses from this many times the samples it needs


def synthesizer_checkpoint(
    cfg: RunConfig,
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    meta: dict[str, Any],
    folder: Path,
    reuse: Path | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    fraction: float = 1.0,
    masks: registry.TrainMasks | None = None,
) -> Path:
    """The ``kind`` synthesizer of one real subset (``fraction`` of the train split, which scales its
    length): trained in ``folder`` (or resumed), or ``reuse``; ``masks``: the subset's lesion masks
    (a kind that draws from masks)."""
    c = arm_config(cfg, kind, fraction)
    ckpts = list_checkpoints(folder / "checkpoints")
    if ckpts and checkpoint_step(ckpts[-1]) >= c.train.steps:
        return resolve_checkpoint(folder)
    if reuse is not None:
        return reuse
    return train_slices(
        c, x, y, meta, folder, resume=bool(ckpts), val=val if c.train.select.every else None, masks=masks
    )


def _first_per_class(pool: tuple[np.ndarray, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` samples of each class of a pool (its samples are grouped by class, in seed order)."""
    x, y = pool
    rank = np.zeros(len(y), np.int64)
    for c in np.unique(y):
        rank[y == c] = np.arange(int((y == c).sum()))
    keep = rank < n
    return x[keep], y[keep]


@dataclass
class Splits:
    """The study's real data: the loaded source, its splits and their labels."""

    ss: Any
    tr: Any
    va: Any
    te: Any
    ty: np.ndarray
    vy: np.ndarray
    sy: np.ndarray

    @property
    def classes(self) -> list[str]:
        """Class names."""
        return list(self.ss.classes)


def load_splits(cfg: RunConfig, data_dir: Path, data: RunData | None = None) -> Splits:
    """The config's data with train, val and test splits, all labelled (one-line error otherwise).

    ``data``: the config's data already read (``medgan run``); read here otherwise.
    """
    ss = data.data if data is not None else load_source(cfg.data, data_dir)
    tr, va, te = ss.split("train"), ss.split("val"), ss.split("test")
    for name, part in (("train", tr), ("val", va), ("test", te)):
        if len(part) == 0:
            raise InputError("data", f"the {name} split is empty; the study needs train, val and test slices")
        if (part.manifest["label"] < 0).any():
            raise InputError("data", f"{name} slices are unlabelled; a diagnostic study needs labels")
    ty, vy, sy = (p.manifest["label"].to_numpy().astype(np.int64) for p in (tr, va, te))
    return Splits(ss, tr, va, te, ty, vy, sy)


@dataclass(frozen=True)
class Context:
    """What every study job needs: shipped once (Ray's object store) and read by each job."""

    cfg: RunConfig
    d: Splits
    out: Path
    cells: Path
    keep_real_clf: bool
    factor: int  # a confidence-filtered arm chooses from this many times the samples it needs


def subset_meta(ss: Any, tr: Any, f: float, s: int, n: int) -> dict[str, Any]:
    """Checkpoint metadata of the synthesizer of a repeat's subset (``n`` slices of the train split ``tr``)."""
    return {
        "classes": list(ss.classes),
        "shape": list(ss.shape),
        "data": {**data_meta(tr), "n_train": n},
        "real_subset": {"fraction": f, "seed": s},
    }


def synth_job(ctx: Context, kind: str, f: float, s: int, idx: np.ndarray, reuse: Path | None) -> Path:
    """Train (or resume, or reuse) the ``kind`` synthesizer of the subset ``idx`` (a study job)."""
    d = ctx.d
    meta = subset_meta(d.ss, d.tr, f, s, len(idx))
    folder = synth_dir(ctx.out, kind, f, s)
    masks = None
    if registry.get(kind).pairs:  # a kind that draws from masks trains on the subset's masks
        if d.tr.masks is None:
            raise InputError(
                "data", f"study arm {kind!r} draws slices from lesion masks, and these slices have none"
            )
        masks = subset_masks(d.tr, idx)
    return synthesizer_checkpoint(
        ctx.cfg,
        kind,
        d.tr.images[idx],
        d.ty[idx],
        meta,
        folder,
        reuse,
        val=(d.va.images, d.vy),
        fraction=f,
        masks=masks,
    )


#: Pools of the last synthesizers used in this process: cells of one subset share them.
_POOLS: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = {}


def _pool(
    kind: str, ckpt: Path, x: np.ndarray, y: np.ndarray, n: int, seed: int, precision: str = "fp32"
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` per class from the synthesizer (samples) or one translation per real slice; cached."""
    key = (str(ckpt), n, seed, precision)
    if key not in _POOLS:
        while len(_POOLS) >= 4:
            _POOLS.pop(next(iter(_POOLS)))
        _POOLS[key] = registry.get(kind).pool(registry.load(ckpt), x, y, n, seed, precision)
    return _POOLS[key]


def study_precision(cfg: RunConfig) -> str:
    """The precision the study samples its synthesizers in on the CPU: the run's ``train.amp`` policy
    (bf16 where it trains in bf16 and the CPU runs it natively; fp32 otherwise)."""
    return sampling_precision(torch.device("cpu"), cfg.train.amp)


def pool_size(ratio: float | None, y: np.ndarray) -> int:
    """How many synthetic slices per class a cell at ``ratio`` may draw (its own ratio only, so a
    cell does not change when other ratios join the study)."""
    return math.ceil((ratio or 0.0) * np.bincount(y).max())


def _extra_real(d: Splits, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The train slices the subset ``idx`` left out: what ``real+`` draws its extra real slices from."""
    rest = np.setdiff1d(np.arange(len(d.ty)), idx)
    return d.tr.images[rest], d.ty[rest]


def _mixture(
    ctx: Context, sp: ArmSpec, f: float, s: int, x: np.ndarray, y: np.ndarray, ckpt: Path | None, need: int
) -> tuple[tuple[np.ndarray, np.ndarray] | None, bool]:
    """The synthetic slices an arm mixes in, and whether confidence filtering chose them."""
    if sp.pool is None or ckpt is None:
        return None, False
    factor = ctx.factor if kind_is_sized(sp.pool) else 1
    wide = _pool(sp.pool, ckpt, x, y, need * factor, s, study_precision(ctx.cfg))
    pool = _first_per_class(wide, need) if factor > 1 else wide
    if sp.min_confidence is None:
        return pool, False
    device = resolve_device(ctx.cfg.classifier.device)
    real_clf = classifier.TrainedClassifier.load(ctx.cells / f"real-f{f:g}-s{s}", device=device)
    keep = filter_by_confidence(wide[0], wide[1], real_clf.predict_proba, sp.min_confidence)
    return (wide[0][keep], wide[1][keep]), True


def cell_job(
    ctx: Context,
    sp: ArmSpec,
    ratio: float | None,
    f: float,
    s: int,
    idx: np.ndarray,
    ckpt: Path | None,
    after: Any = None,
    epoch: int = 0,
) -> dict[str, Any]:
    """Train and score one cell's classifier (a study job); returns its row and test probabilities.

    ``real+`` draws its extra slices from the train slices the subset left out (as many as a
    synthetic arm at the same ratio adds, in the same class mix; fewer where too few are left:
    ``synthetic_shortfall``). ``after``: the real arm's result for a confidence-filtered arm (only
    waited for: the real classifier is read from the study folder). ``epoch``: samples per
    classifier epoch (``classifier.epoch_samples``; 0 keeps the config's), the same for every
    cell of the fraction under ``study.equal_steps``.
    """
    d, cfg = ctx.d, ctx.cfg
    x, y = d.tr.images[idx], d.ty[idx]
    if sp.extra_real:
        pool, filtered = _extra_real(d, idx), False
    else:
        pool, filtered = _mixture(ctx, sp, f, s, x, y, ckpt, pool_size(ratio, y))
    ds = MixedDataset(
        (x, y),
        pool,
        ratio=ratio or 1.0,
        policy=sp.policy,
        synthetic_weight=sp.synthetic_weight,
        seed=s,
        # translations: one per real slice; real+: the slices left out
        cap=(sp.pool is not None and not kind_is_sized(sp.pool)) or filtered or sp.extra_real,
    )
    members = []
    for m in range(cfg.study.ensemble_for(f)):  # member 0 is seeded as a single classifier would be
        update: dict[str, Any] = {"seed": s if m == 0 else derive_seed(s, m)}
        if epoch:
            update["epoch_samples"] = epoch
        clf_cfg = cfg.classifier.model_copy(update=update)
        members.append(_train_member(ctx, sp, s, x, y, ds, clf_cfg))
        if m == 0 and sp.name == "real" and ctx.keep_real_clf:
            members[0].save(ctx.cells / f"real-f{f:g}-s{s}")
    clf = Ensemble.of(members, d.va.images, d.vy)
    p = clf.predict_proba(d.te.images)
    row = _row(cfg, d, sp, ratio, f, s, ds, clf, p)
    row.epoch_samples = epoch_length(len(ds.labels), clf_cfg)
    return {"row": row.record(), "proba": p.tolist()}


def _train_member(
    ctx: Context, sp: ArmSpec, s: int, x: np.ndarray, y: np.ndarray, ds: MixedDataset, clf_cfg: Any
) -> Any:
    """One classifier of a cell on its mixture (pre-trained on the synthetic part first when asked)."""
    d = ctx.d
    init, ds_x, ds_y, w = None, ds.images, ds.labels, ds.weights
    if sp.pretrain and sp.synthetic and ds.n_synthetic:  # synthetic only, then the real subset
        syn = ds.synthetic
        pre = classifier.train_classifier(
            ds.images[syn], ds.labels[syn], d.va.images, d.vy, len(d.classes), clf_cfg, d.classes
        )
        init, ds_x, ds_y, w = pre.model.state_dict(), x, y, None
    return classifier.train_classifier(
        ds_x,
        ds_y,
        d.va.images,
        d.vy,
        len(d.classes),
        clf_cfg,
        d.classes,
        sample_weight=w,
        batch_transform=classical_augmentation(s) if sp.classical else None,
        init_state=init,
    )


@dataclass
class Ensemble:
    """A cell's classifiers as one: the mean of their probabilities, its threshold chosen on
    validation (Youden, two classes), its validation AUC, the members' mean best epoch."""

    members: list[Any]
    threshold: float
    val_auc: float
    best_epoch: float

    @classmethod
    def of(cls, members: list[Any], val_x: np.ndarray, val_y: np.ndarray) -> Ensemble:
        """The ensemble of trained ``members``, scored on the validation split."""
        if len(members) == 1:  # exactly the single classifier's own choices
            one = members[0]
            return cls(members, float(one.threshold), float(one.val_auc), float(one.best_epoch))
        pv = np.mean([mb.predict_proba(val_x) for mb in members], axis=0)
        thr = youden_threshold(pv[:, 1], val_y) if pv.shape[1] == 2 else 0.5
        auc, _ = val_metrics(pv, val_y)
        return cls(members, float(thr), float(auc), float(np.mean([mb.best_epoch for mb in members])))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Mean class probabilities of the members."""
        return np.mean([mb.predict_proba(x) for mb in self.members], axis=0)


def _row(
    cfg: RunConfig,
    d: Splits,
    sp: ArmSpec,
    ratio: float | None,
    f: float,
    s: int,
    ds: MixedDataset,
    clf: Any,
    p: np.ndarray,
) -> StudyRow:
    """The cell's result: test metrics with bootstrap CIs (the paired comparisons come later)."""
    kw = metric_options(cfg, d, clf)
    m = diagnostic_metrics(d.sy, p, **kw)
    ci = bootstrap_metrics(d.sy, p, n_boot=cfg.study.n_boot, seed=s, **kw)
    scores: dict[str, Any] = {k: v for k, v in m.items() if isinstance(v, int | float)}
    scores.update({f"{k}_ci_lo": v[0] for k, v in ci.items()})
    scores.update({f"{k}_ci_hi": v[1] for k, v in ci.items()})
    for c, entry in (m.get("per_class") or {}).items():  # one-vs-rest AUC of each class (C > 2)
        scores[f"auc_{d.classes[int(c)]}"] = entry.get("auc")
    pred = predict_labels(p, kw["threshold"])
    shortfall = int(sum(ds.shortfall.values())) if ds.shortfall else None
    added = ds.n_synthetic
    return StudyRow(
        arm=sp.name,
        ratio=ratio,
        fraction=f,
        seed=s,
        n_real=ds.n_real + (added if sp.extra_real else 0),
        n_synthetic=0 if sp.extra_real else added,
        n_added=added,
        lever=sp.lever,
        synthetic_shortfall=shortfall,
        **scores,
        threshold=kw["threshold"] if p.shape[1] == 2 else None,
        one_class=bool(len(np.unique(pred)) == 1),
        val_auc=clf.val_auc,
        best_epoch=clf.best_epoch,
    )


def metric_options(cfg: RunConfig, d: Splits, clf: Any) -> dict[str, Any]:
    """How a cell's test predictions are scored: binary at the threshold its classifier chose on
    validation (class 1 positive), multi-class by argmax; the weighted kappa for ordinal labels."""
    kw: dict[str, Any] = {"threshold": float(getattr(clf, "threshold", 0.5))}
    if len(d.classes) == 2:
        kw["positive"] = 1
    if cfg.study.ordinal:
        kw["ordinal"] = True
    return kw


class StudyRow(BaseModel):
    """One finished study cell (a row of ``results.csv``): the arm, its data and its test scores.

    Test metrics (``auc``, ``acc``, ``sensitivity``, ... and their ``_ci_lo`` / ``_ci_hi``
    bootstrap bounds) are the extra fields :func:`~medgan.classifier.metrics.diagnostic_metrics`
    returns; the paired comparisons are set when the reference arm ran on the same seed.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    arm: str
    ratio: float | None
    fraction: float
    seed: int
    n_real: int
    n_synthetic: int
    n_added: int | None = None
    lever: str | None = None
    synthetic_shortfall: int | None = None
    threshold: float | None = None
    one_class: bool | None = None
    val_auc: float | None = None
    best_epoch: float | None = None
    epoch_samples: int | None = None
    auc_diff_vs_real: float | None = None
    delong_p: float | None = None
    bootstrap_p: float | None = None
    balanced_acc_diff_vs_real: float | None = None
    auc_diff_vs_classical: float | None = None
    delong_p_vs_classical: float | None = None
    bootstrap_p_vs_classical: float | None = None
    balanced_acc_diff_vs_classical: float | None = None

    #: Fields left out of a row when unset (``ratio`` stays: None means "no synthetic ratio").
    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "lever",
        "epoch_samples",
        "synthetic_shortfall",
        "threshold",
        "auc_diff_vs_real",
        "delong_p",
        "bootstrap_p",
        "balanced_acc_diff_vs_real",
        "auc_diff_vs_classical",
        "delong_p_vs_classical",
        "bootstrap_p_vs_classical",
        "balanced_acc_diff_vs_classical",
    )

    def record(self) -> dict[str, Any]:
        """The row as ``results.csv`` and the cell files hold it."""
        return {k: v for k, v in self.model_dump().items() if not (k in self.OPTIONAL and v is None)}
