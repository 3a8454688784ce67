"""``medgan study``: does adding synthetic slices make a diagnostic classifier better, by how much, how surely?

For each real-data fraction and seed, a stratified real subset is drawn; the synthesizers of the
arms that need them are trained on **that subset only** (no held-back real image leaks in);
each arm's training set is built with :class:`~medgan.mixing.MixedDataset`; a MONAI classifier
(:mod:`medgan.classifier`) is trained with early stopping on the real validation split, and scored
on the same real test split for every arm. Each arm is paired with ``real`` on the same seed.

Arms: ``real`` (real only), ``classical`` (MONAI flip/rotation/affine/intensity augmentation),
and for every synthesizer kind of the registry (:mod:`medgan.synthesis.registry`) ``<kind>``
(its samples, or its translations of the real subset into the other class) and
``<kind>+classical``. Nothing here names a kind: what an arm's synthesizer makes (a pool of any
size, or one translation per real slice) is the registry's ``SynthesizerKind.sized``. Options: mixing ``policy`` and ``ratios``,
``synthetic_weight`` (loss weight of synthetic samples), ``min_confidence`` (keep synthetic
samples that the real-only classifier gives at least this probability of their intended class),
``pretrain`` (train on synthetic only, then fine-tune on the real subset). ``levers`` run named
variants of those options as extra arms (``<kind>[weight0.5]``) beside the plain ones; every arm
other than ``real`` and ``classical`` is paired with both on the same seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict

from medgan import classifier
from medgan.classifier.augment import classical_augmentation
from medgan.classifier.metrics import bootstrap_metrics, delong_test, diagnostic_metrics, summarize_over_seeds
from medgan.config import MODEL_CONFIGS, RunConfig, StudyConfig, arm_kind
from medgan.data.sources import RunData, load_source
from medgan.device import resolve_device, sampling_precision
from medgan.errors import ConfigError, InputError
from medgan.executor import Resources, make_executor
from medgan.io.atomic import atomic_write_text
from medgan.metrics.evaluate import (
    ensure_real_classifier,
    eval_counts,
    evaluate_sets,
    gate_report,
    split_class_counts,
)
from medgan.metrics.features import get_extractor
from medgan.mixing import MixedDataset, filter_by_confidence, stratified_subsample
from medgan.provenance import write_provenance
from medgan.synthesis import registry
from medgan.train import data_meta, train_slices
from medgan.training import tracking
from medgan.training.checkpoint import (
    checkpoint_meta,
    checkpoint_step,
    list_checkpoints,
    resolve_checkpoint,
)
from medgan.training.tracking import Tracker
from medgan.translate import translation_scores

FILTER_POOL = 4  # a confidence-filtered arm chooses from this many times the samples it needs


def _sized(kind: str) -> bool:
    """Whether a synthesizer kind makes a pool of any size (samples) rather than one output per real slice."""
    return registry.get(kind).sized


def _arm_kinds(specs: list[ArmSpec]) -> list[str]:
    """The synthesizer kinds the arms draw from, in the registry's order."""
    used = {sp.pool for sp in specs if sp.pool is not None}
    return [k for k in MODEL_CONFIGS if k in used]


def _model_key(cfg: RunConfig, kind: str) -> str:
    """The config key of the model a study arm of ``kind`` trains (for error messages)."""
    return "model" if cfg.model.kind == kind else f"study.models.{kind}"


def arm_config(cfg: RunConfig, kind: str) -> RunConfig:
    """The config a study arm's synthesizer of ``kind`` trains with.

    The run's own model when ``model.kind`` is ``kind`` (its training settings too, with
    ``study.steps.<kind>`` as the length when given); otherwise ``study.models.<kind>`` (typed by
    the kind's config class) with that kind's training defaults: only the device settings come
    from the run's ``train:``, and the length is ``study.steps.<kind>``, else the kind's default
    length, else the run's ``train.steps``.
    """
    steps = cfg.study.steps.get(kind)
    if cfg.model.kind == kind:
        c = cfg.model_copy(deep=True)
        if steps:
            c.train.steps = steps
        return c
    raw = cfg.model_dump(mode="json")
    model = cfg.study.model_for(kind)
    raw["model"] = model.model_dump(mode="json")
    keep = ("device", "amp", "channels_last", "log_every", "samples_per_class")
    raw["train"] = {k: raw["train"][k] for k in keep}
    raw["train"]["steps"] = steps or type(model).TRAIN_DEFAULTS.get("steps", cfg.train.steps)
    raw["train"]["checkpoint_every"] = raw["train"]["sample_every"] = raw["train"]["steps"]
    return RunConfig.model_validate(raw)


def _plan(
    cfg: RunConfig, labels: np.ndarray, classes: list[str], specs: list[ArmSpec]
) -> list[tuple[float, int, np.ndarray]]:
    """All (fraction, seed, subset indices), validated before any training starts."""
    st = cfg.study
    if cfg.data_b is not None and any(not _sized(k) for k in _arm_kinds(specs)):
        raise ConfigError(
            "study.arms",
            f"a translation arm translates between two classes; this run's {cfg.model.kind} translates data into data_b",
        )
    for kind in _arm_kinds(specs):  # e.g. a CycleGAN arm's domains must name classes of the data
        registry.get(kind).describe(arm_config(cfg, kind).model, classes, _model_key(cfg, kind))
    if len(np.unique(labels)) < 2:
        raise InputError("data", "the train split holds a single class; a diagnostic study needs two or more")
    plan = []
    for f in st.fractions:
        for s in range(st.seeds):
            idx = np.arange(len(labels)) if f == 1.0 else stratified_subsample(labels, f, s, st.min_per_class)
            counts = np.bincount(labels[idx], minlength=len(classes))
            if (counts[counts > 0] < st.min_per_class).any() or (counts == 0).any():
                raise InputError(
                    "data", f"fraction {f:g}, seed {s}: too few slices per class ({counts.tolist()})"
                )
            plan.append((f, s, idx))
    return plan


def _fingerprint(cfg: RunConfig, reused: Path | None) -> str:
    """What a study cell's result depends on: finished cells are reused only under the same one."""
    d = cfg.model_dump(mode="json")
    keep = {k: d[k] for k in ("seed", "data", "data_b", "model", "train", "classifier", "study")}
    for k in ("device", "log_every", "sample_every", "samples_per_class", "tracking"):
        keep["train"].pop(k, None)
    keep["study"].pop("skip_failing_synthesizers", None)  # decides which cells run, not their results
    for k in ("executor", "cpus_per_task", "gpus_per_task", "ray_address"):  # where cells run, not what
        keep["study"].pop(k, None)
    if not keep["study"].get("levers"):
        keep["study"].pop("levers", None)  # studies without levers keep their cells
    keep["classifier"].pop("device", None)
    if reused is not None:
        keep["reused_checkpoint"] = checkpoint_meta(reused).sha256
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ArmSpec:
    """One arm of the study as it runs: its name, the synthesizer arm it builds on and its mixing."""

    name: str  # "<kind>", or "<kind>[weight0.5]" for a lever
    base: str  # real | classical | <kind> | <kind>+classical
    ratios: tuple[float | None, ...]
    policy: str
    synthetic_weight: float
    min_confidence: float | None
    pretrain: bool
    lever: str | None = None

    @property
    def synthetic(self) -> bool:
        """Whether the arm mixes synthetic slices in."""
        return self.pool is not None

    @property
    def pool(self) -> str | None:
        """The synthesizer kind whose pool the arm draws from (None for ``real`` and ``classical``)."""
        return arm_kind(self.base)

    @property
    def classical(self) -> bool:
        """Whether classical augmentation is applied on the fly."""
        return self.base == "classical" or self.base.endswith("+classical")


def arm_specs(st: StudyConfig) -> list[ArmSpec]:
    """Every arm of ``st``: ``real`` first, then ``classical``, the other arms, then each lever's arms."""
    base = sorted(st.arms, key=lambda a: {"real": 0, "classical": 1}.get(a, 2))
    specs = [
        ArmSpec(
            a,
            a,
            (None,) if a in ("real", "classical") else tuple(st.ratios),
            st.policy,
            st.synthetic_weight,
            st.min_confidence,
            st.pretrain,
        )
        for a in base
    ]
    first_synthetic = [a for a in st.arms if arm_kind(a) is not None][:1]
    for lv in st.levers:
        for a in lv.arms if lv.arms is not None else first_synthetic:
            specs.append(
                ArmSpec(
                    f"{a}[{lv.name}]",
                    a,
                    tuple(lv.ratios or st.ratios),
                    lv.policy or st.policy,
                    st.synthetic_weight if lv.synthetic_weight is None else lv.synthetic_weight,
                    st.min_confidence if lv.min_confidence is None else lv.min_confidence,
                    st.pretrain if lv.pretrain is None else lv.pretrain,
                    lv.name,
                )
            )
    return specs


def _cell_key(arm: str, ratio: float | None, f: float, s: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '-', arm)}-r{'na' if ratio is None else f'{ratio:g}'}-f{f:g}-s{s}"


def _synth_dir(out: Path, kind: str, f: float, s: int) -> Path:
    return out / "synthesizers" / (f"{kind}-f{f:g}" if f == 1.0 else f"{kind}-f{f:g}-s{s}")


def _synthesizer_checkpoint(
    cfg: RunConfig,
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    meta: dict[str, Any],
    folder: Path,
    reuse: Path | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """The ``kind`` synthesizer of one real subset: trained in ``folder`` (or resumed), or ``reuse``."""
    c = arm_config(cfg, kind)
    ckpts = list_checkpoints(folder / "checkpoints")
    if ckpts and checkpoint_step(ckpts[-1]) >= c.train.steps:
        return resolve_checkpoint(folder)
    if reuse is not None:
        return reuse
    return train_slices(c, x, y, meta, folder, resume=bool(ckpts), val=val if c.train.select.every else None)


def _first_per_class(pool: tuple[np.ndarray, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` samples of each class of a pool (its samples are grouped by class, in seed order)."""
    x, y = pool
    rank = np.zeros(len(y), np.int64)
    for c in np.unique(y):
        rank[y == c] = np.arange(int((y == c).sum()))
    keep = rank < n
    return x[keep], y[keep]


class _Gates:
    """The quality gates of the study's synthesizers (docs/study.md), each evaluated once and cached.

    A synthesizer's metrics are computed as ``medgan run`` computes them: the test split's N in
    its class proportions, ``pipeline.features`` (real features cached), label scores with the
    classifier section's settings. CycleGANs are scored on translations of the test split into
    the other class (:func:`medgan.translate.translation_scores`), the worse direction counting.
    """

    def __init__(
        self,
        cfg: RunConfig,
        ss: Any,
        out: Path,
        clf_dir: Path,
        known: dict[Path, dict[str, Any]],
    ) -> None:
        self.cfg, self.ss, self.folder, self.clf_dir, self.known = cfg, ss, out / "gates", clf_dir, known
        self.records: dict[str, dict[str, Any]] = {}
        self._ext: Any = None
        self._clf: Any = None

    @property
    def active(self) -> bool:
        """Whether any gate is switched on."""
        return self.cfg.gates is not None and self.cfg.gates.active()

    def extractor(self) -> Any:
        """The feature extractor of ``pipeline.features`` (built on first use)."""
        if self._ext is None:
            self._ext = get_extractor(self.cfg.pipeline.features, resolve_device(self.cfg.train.device))
        return self._ext

    def check(self, name: str, kind: str, ckpt: Path, fraction: float, seed: int) -> dict[str, Any]:
        """The gate record of synthesizer ``name`` (computed, or read from ``gates/<name>.json``)."""
        if name in self.records:
            return self.records[name]
        key = {
            "checkpoint": checkpoint_meta(ckpt).sha256,
            "seed": self.cfg.seed,
            "data": self.cfg.data.model_dump(mode="json"),
            "pipeline": self.cfg.pipeline.model_dump(mode="json"),
            "classifier": self.cfg.classifier.model_dump(mode="json"),
        }
        cache = self.folder / f"{name}.json"
        metrics = self.known.get(Path(ckpt))
        source = "medgan run's evaluation" if metrics is not None else "the study's evaluation"
        if metrics is None and cache.is_file():
            with contextlib.suppress(json.JSONDecodeError, KeyError):
                rec = json.loads(cache.read_text(encoding="utf-8"))
                if rec["key"] == key:
                    metrics = rec["metrics"]
        if metrics is None:
            try:
                sized = registry.get(kind).sized
                metrics = self._sample_metrics(ckpt, name) if sized else self._translation_metrics(ckpt)
            except InputError as err:  # e.g. a test split too small to score: every gate "not measured"
                metrics = {"not_measured": str(err)}
            atomic_write_text(cache, json.dumps({"key": key, "metrics": metrics}, indent=2, default=float))
        assert self.cfg.gates is not None
        rep = gate_report(metrics, self.cfg.gates, name)
        rec = {
            "kind": kind,
            "fraction": fraction,
            "seed": None if fraction == 1.0 else seed,
            "checkpoint": str(ckpt),
            "metrics_from": source,
            **rep,
        }
        self.records[name] = rec
        return rec

    def _sets(self) -> tuple[Any, Any, Any, np.ndarray, np.ndarray, np.ndarray]:
        tr, va, te = (self.ss.split(n) for n in ("train", "val", "test"))
        ty, vy, sy = (p.manifest["label"].to_numpy().astype(np.int64) for p in (tr, va, te))
        return tr, va, te, ty, vy, sy

    def _sample_metrics(self, ckpt: Path, name: str) -> dict[str, Any]:
        cfg, ss = self.cfg, self.ss
        tr, _, te, _, _, _ = self._sets()
        n_classes = len(ss.classes)

        def as_list(c: int | dict[int, int]) -> list[int]:
            return [c] * n_classes if isinstance(c, int) else [c.get(i, 0) for i in range(n_classes)]

        synth = registry.load_sampler(ckpt)
        prec = _precision(cfg)
        syn, syn_y = synth.sample_counts(
            as_list(eval_counts(cfg.pipeline, te, tr, n_classes)), cfg.seed, prec
        )
        cas = None
        if cfg.pipeline.label_scores:
            n = cfg.pipeline.cas_n or len(tr)
            cas = synth.sample_counts(as_list(split_class_counts(tr, n, n_classes)), cfg.seed, prec)
        return evaluate_sets(
            ss,
            "test",
            syn,
            syn_y,
            self.extractor(),
            tag=cfg.data.model_dump_json(),
            real_name=f"{cfg.data.source.kind} source from the config:test",
            syn_name=name,
            seed=cfg.seed,
            label_scores="if-possible" if cfg.pipeline.label_scores else False,
            classifier=cfg.classifier,
            classifier_dir=self.clf_dir,
            cas_set=cas,
        )

    def _translation_metrics(self, ckpt: Path) -> dict[str, Any]:
        tr, va, te, ty, vy, sy = self._sets()
        clf = None
        if self.cfg.pipeline.label_scores:
            with contextlib.suppress(InputError):
                clf = ensure_real_classifier(
                    tr.images, ty, va.images, vy, list(self.ss.classes), self.cfg.classifier, self.clf_dir
                )
        translator = registry.load_translator(ckpt)
        ia, ib = int(translator.domains["label_a"]), int(translator.domains["label_b"])
        tag = self.cfg.data.model_dump_json()
        dirs: dict[str, Any] = {}
        accepted: list[np.ndarray] = []
        for direction, src, dst in (("A2B", ia, ib), ("B2A", ib, ia)):
            if (sy == src).sum() < 2 or (sy == dst).sum() < 2:
                continue
            out = translator.translate(torch.from_numpy(te.images[sy == src]), direction).numpy()
            p = None if clf is None else clf.predict_proba(out)
            if p is not None:
                accepted.append(p.argmax(1) == dst)
            dirs[direction] = translation_scores(
                out,
                te.images[sy == dst],
                tr.images[ty == dst],
                self.extractor(),
                tag=f"{tag}:class{dst}",
                target_prob=None if p is None else p[:, dst],
                seed=self.cfg.seed,
            )
        m: dict[str, Any] = {
            "kind": translator.meta.kind,
            "directions": dirs,
            "gate_basis": "the worse direction",
        }

        def ratio(d: dict[str, Any]) -> float:
            f, fl = d.get("fid"), d.get("floor_fid")
            return math.inf if f is None or not fl else f / fl

        if dirs:
            worst = max(dirs.values(), key=ratio)
            m["fid"], m["floor_fid"] = worst.get("fid"), worst.get("floor_fid")
            for k in ("precision", "recall", "density", "coverage"):
                vals = [d[k] for d in dirs.values() if d.get(k) is not None]
                m[k] = min(vals) if vals else None
        if clf is not None and accepted:
            acc = float((clf.predict_proba(te.images).argmax(1) == sy).mean())
            m["label_agreement"] = {"agreement": float(np.concatenate(accepted).mean()), "real_test_acc": acc}
        return m


@dataclass
class _Splits:
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


def _load_splits(cfg: RunConfig, data_dir: Path, data: RunData | None = None) -> _Splits:
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
    return _Splits(ss, tr, va, te, ty, vy, sy)


@dataclass(frozen=True)
class _Ctx:
    """What every study job needs: shipped once (Ray's object store) and read by each job."""

    cfg: RunConfig
    d: _Splits
    out: Path
    cells: Path
    keep_real_clf: bool
    factor: int  # a confidence-filtered arm chooses from this many times the samples it needs


def _subset_meta(ctx: _Ctx, f: float, s: int, n: int) -> dict[str, Any]:
    d = ctx.d
    return {
        "classes": d.classes,
        "shape": list(d.ss.shape),
        "data": {**data_meta(d.tr), "n_train": n},
        "real_subset": {"fraction": f, "seed": s},
    }


def _synth_job(ctx: _Ctx, kind: str, f: float, s: int, idx: np.ndarray, reuse: Path | None) -> Path:
    """Train (or resume, or reuse) the ``kind`` synthesizer of the subset ``idx`` (a study job)."""
    d = ctx.d
    meta = _subset_meta(ctx, f, s, len(idx))
    folder = _synth_dir(ctx.out, kind, f, s)
    return _synthesizer_checkpoint(
        ctx.cfg, kind, d.tr.images[idx], d.ty[idx], meta, folder, reuse, val=(d.va.images, d.vy)
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


def _precision(cfg: RunConfig) -> str:
    """The precision the study samples its synthesizers in on the CPU: the run's ``train.amp`` policy
    (bf16 where it trains in bf16 and the CPU runs it natively; fp32 otherwise)."""
    return sampling_precision(torch.device("cpu"), cfg.train.amp)


def _mixture(
    ctx: _Ctx, sp: ArmSpec, f: float, s: int, x: np.ndarray, y: np.ndarray, ckpt: Path | None, need: int
) -> tuple[tuple[np.ndarray, np.ndarray] | None, bool]:
    """The synthetic slices an arm mixes in, and whether confidence filtering chose them."""
    if sp.pool is None or ckpt is None:
        return None, False
    factor = ctx.factor if _sized(sp.pool) else 1
    wide = _pool(sp.pool, ckpt, x, y, need * factor, s, _precision(ctx.cfg))
    pool = _first_per_class(wide, need) if factor > 1 else wide
    if sp.min_confidence is None:
        return pool, False
    device = resolve_device(ctx.cfg.classifier.device)
    real_clf = classifier.TrainedClassifier.load(ctx.cells / f"real-f{f:g}-s{s}", device=device)
    keep = filter_by_confidence(wide[0], wide[1], real_clf.predict_proba, sp.min_confidence)
    return (wide[0][keep], wide[1][keep]), True


def _cell_job(
    ctx: _Ctx,
    sp: ArmSpec,
    ratio: float | None,
    f: float,
    s: int,
    idx: np.ndarray,
    ckpt: Path | None,
    need: int,
    after: Any = None,
) -> dict[str, Any]:
    """Train and score one cell's classifier (a study job); returns its row and test probabilities.

    ``after``: the real arm's result for a confidence-filtered arm (only waited for: the real
    classifier is read from the study folder).
    """
    d, cfg = ctx.d, ctx.cfg
    x, y = d.tr.images[idx], d.ty[idx]
    pool, filtered = _mixture(ctx, sp, f, s, x, y, ckpt, need)
    clf_cfg = cfg.classifier.model_copy(update={"seed": s})
    ds = MixedDataset(
        (x, y),
        pool,
        ratio=ratio or 1.0,
        policy=sp.policy,
        synthetic_weight=sp.synthetic_weight,
        seed=s,
        cap=(sp.pool is not None and not _sized(sp.pool)) or filtered,  # translations: one per real slice
    )
    init, ds_x, ds_y, w = None, ds.images, ds.labels, ds.weights
    if sp.pretrain and sp.synthetic and ds.n_synthetic:  # synthetic only, then the real subset
        syn = ds.synthetic
        pre = classifier.train_classifier(
            ds.images[syn], ds.labels[syn], d.va.images, d.vy, len(d.classes), clf_cfg, d.classes
        )
        init, ds_x, ds_y, w = pre.model.state_dict(), x, y, None
    clf = classifier.train_classifier(
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
    p = clf.predict_proba(d.te.images)
    if sp.name == "real" and ctx.keep_real_clf:
        clf.save(ctx.cells / f"real-f{f:g}-s{s}")
    return {"row": _row(cfg, d, sp, ratio, f, s, ds, clf, p).record(), "proba": p.tolist()}


def _row(
    cfg: RunConfig,
    d: _Splits,
    sp: ArmSpec,
    ratio: float | None,
    f: float,
    s: int,
    ds: MixedDataset,
    clf: Any,
    p: np.ndarray,
) -> StudyRow:
    """The cell's result: test metrics with bootstrap CIs (the paired comparisons come later)."""
    pos = 1 if len(d.classes) == 2 else None
    m = diagnostic_metrics(d.sy, p, **({"positive": pos} if pos is not None else {}))
    ci = bootstrap_metrics(d.sy, p, n_boot=cfg.study.n_boot, seed=s)
    scores: dict[str, Any] = {k: v for k, v in m.items() if isinstance(v, int | float)}
    scores.update({f"{k}_ci_lo": v[0] for k, v in ci.items()})
    scores.update({f"{k}_ci_hi": v[1] for k, v in ci.items()})
    shortfall = int(sum(ds.shortfall.values())) if ds.shortfall else None
    return StudyRow(
        arm=sp.name,
        ratio=ratio,
        fraction=f,
        seed=s,
        n_real=ds.n_real,
        n_synthetic=ds.n_synthetic,
        lever=sp.lever,
        synthetic_shortfall=shortfall,
        **scores,
        val_auc=clf.val_auc,
        best_epoch=clf.best_epoch,
    )


def _compare(
    rows: list[dict[str, Any]],
    probas: dict[tuple, np.ndarray],
    sy: np.ndarray,
    pos: int | None,
    done: dict[tuple, dict[str, float]],
) -> None:
    """Pair each arm with ``real`` (and synthetic arms with ``classical``) on the same seed: DeLong.

    ``done`` keeps each pair's test across calls (the driver rewrites ``results.csv`` after every cell).
    """
    if pos is None:
        return
    for r in rows:
        cell = (r["arm"], r["ratio"], r["fraction"], r["seed"])
        for ref in ("real", "classical"):
            base = probas.get((ref, None, r["fraction"], r["seed"]))
            if r["arm"] in (ref, "real") or base is None:  # real is compared with nothing
                continue
            if (cell, ref) not in done:
                done[(cell, ref)] = delong_test(sy, base[:, pos], probas[cell][:, pos])
            dl = done[(cell, ref)]
            sfx = "" if ref == "real" else "_vs_classical"
            r[f"auc_diff_vs_{ref}"] = -dl["diff"]  # arm - reference
            r[f"delong_p{sfx}"] = dl["p_value"]


class _Study:
    """The driver: plans the jobs, hands them to the executor, keeps the cell cache and the rows."""

    def __init__(
        self,
        ctx: _Ctx,
        gates: _Gates,
        reuse: dict[str, Path],
        executor: Any,
        make_tracker: Callable[[], Tracker] | None = None,
    ) -> None:
        self.ctx, self.gates, self.reuse, self.ex = ctx, gates, reuse, executor
        self.make_tracker, self.tracker = make_tracker, None
        self.specs = arm_specs(ctx.cfg.study)
        self.kinds = _arm_kinds(self.specs)
        ratios = [r for sp in self.specs if sp.synthetic for r in sp.ratios if r is not None]
        self.max_ratio = max(ratios) if ratios else 0.0
        st = ctx.cfg.study
        self.resources = Resources(st.cpus_per_task, st.gpus_per_task)
        self.results: dict[str, dict[str, Any]] = {}  # cell key -> its row (and test probabilities)
        self.probas: dict[tuple, np.ndarray] = {}  # (arm, ratio, fraction, seed) -> test probabilities
        self.pairs: dict[tuple, dict[str, float]] = {}  # the DeLong tests computed so far
        self.skipped: list[dict[str, Any]] = []

    def _keys(self, f: float, s: int) -> list[tuple[ArmSpec, float | None, str]]:
        return [(sp, r, _cell_key(sp.name, r, f, s)) for sp in self.specs for r in sp.ratios]

    def _done(self, key: str) -> bool:
        return (self.ctx.cells / f"{key}.json").is_file()

    def synthesizers(self, plan: list[tuple[float, int, np.ndarray]], shared: Any) -> dict[tuple, Path]:
        """Every subset's synthesizer of every arm kind (jobs), where a cell or a gate needs it."""
        jobs: dict[Path, Any] = {}  # one job per folder: the 100 % synthesizer serves every seed
        for f, s, idx in plan:
            if all(self._done(k) for _, _, k in self._keys(f, s)) and not self.gates.active:
                continue
            for kind in self.kinds:
                folder = _synth_dir(self.ctx.out, kind, f, s)
                if folder in jobs:
                    continue
                steps_set = kind in self.ctx.cfg.study.steps
                reuse = self.reuse.get(kind) if f == 1.0 and not steps_set else None
                jobs[folder] = self.ex.submit(
                    _synth_job,
                    shared,
                    kind,
                    f,
                    s,
                    idx,
                    reuse,
                    resources=self.resources,
                    name=f"synthesizer {folder.name}",
                )
        done = {folder: Path(self.ex.get(h)) for folder, h in jobs.items()}
        return {
            (kind, f, s): done[_synth_dir(self.ctx.out, kind, f, s)]
            for f, s, _ in plan
            for kind in self.kinds
            if _synth_dir(self.ctx.out, kind, f, s) in done
        }

    def failing(self, ckpts: dict[tuple, Path]) -> dict[tuple[float, int], dict[str, str]]:
        """The gate verdicts (checked here, in the driver) of synthesizers whose arms are skipped."""
        out: dict[tuple[float, int], dict[str, str]] = {}
        if not self.gates.active:
            return out
        for (kind, f, s), ckpt in ckpts.items():
            g = self.gates.check(_synth_dir(self.ctx.out, kind, f, s).name, kind, ckpt, f, s)
            if self.ctx.cfg.study.skip_failing_synthesizers and not g["passed"]:
                out.setdefault((f, s), {})[kind] = g["verdict"]
        return out

    def cells(self, plan: list[tuple[float, int, np.ndarray]], shared: Any, ckpts: dict[tuple, Path]) -> None:
        """Run the cells not in the cache (jobs); each finished one is saved as it arrives."""
        failing = self.failing(ckpts)
        pending: dict[Any, tuple[str, Path, tuple]] = {}
        for f, s, idx in plan:
            need = math.ceil(self.max_ratio * np.bincount(self.ctx.d.ty[idx]).max())
            real = None
            for sp, ratio, key in self._keys(f, s):
                cell = self.ctx.cells / f"{key}.json"
                if sp.synthetic and sp.pool in failing.get((f, s), {}):
                    reason = failing[(f, s)][sp.pool]
                    self.skipped.append(
                        {"arm": sp.name, "ratio": ratio, "fraction": f, "seed": s, "reason": reason}
                    )
                    continue
                if cell.is_file():
                    self._keep(key, (sp.name, ratio, f, s), json.loads(cell.read_text(encoding="utf-8")))
                    continue
                after = real if sp.synthetic and sp.min_confidence is not None else None
                h = self.ex.submit(
                    _cell_job,
                    shared,
                    sp,
                    ratio,
                    f,
                    s,
                    idx,
                    ckpts.get((sp.pool, f, s)),
                    need,
                    after,
                    resources=self.resources,
                    name=f"cell {key}",
                )
                pending[h] = (key, cell, (sp.name, ratio, f, s))
                if sp.name == "real":
                    real = h
        for h, result in self.ex.as_completed(list(pending)):
            key, cell, name = pending[h]
            atomic_write_text(cell, json.dumps(result, default=float))
            self._keep(key, name, result)
            if self.tracker is None and self.make_tracker is not None:  # only a study that computes tracks
                self.tracker = self.make_tracker()
            if self.tracker is not None:
                row = result["row"]
                tag = row["arm"] if row["ratio"] is None else f"{row['arm']}@{row['ratio']:g}"
                self.tracker.scalars(
                    {
                        k: v
                        for k, v in row.items()
                        if k in ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1")
                    },
                    int(row["seed"]),
                    f"{tag}/f{row['fraction']:g}",
                )
            atomic_write_text(self.ctx.out / "results.csv", pd.DataFrame(self.rows(plan)).to_csv(index=False))

    def _keep(self, key: str, name: tuple, result: dict[str, Any]) -> None:
        """A finished cell's row, and its test probabilities as an array (converted once)."""
        self.results[key] = result
        self.probas[name] = np.asarray(result["proba"], dtype=np.float64)

    def rows(self, plan: list[tuple[float, int, np.ndarray]]) -> list[dict[str, Any]]:
        """The finished cells' rows in plan order, with the paired comparisons."""
        rows = [
            dict(self.results[key]["row"])
            for f, s, _ in plan
            for _, _, key in self._keys(f, s)
            if key in self.results
        ]
        _compare(rows, self.probas, self.ctx.d.sy, 1 if len(self.ctx.d.classes) == 2 else None, self.pairs)
        return [StudyRow.model_validate(r).record() for r in rows]  # the columns in one order


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
    lever: str | None = None
    synthetic_shortfall: int | None = None
    val_auc: float | None = None
    best_epoch: int | None = None
    auc_diff_vs_real: float | None = None
    delong_p: float | None = None
    auc_diff_vs_classical: float | None = None
    delong_p_vs_classical: float | None = None

    #: Fields left out of a row when unset (``ratio`` stays: None means "no synthetic ratio").
    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "lever",
        "synthetic_shortfall",
        "auc_diff_vs_real",
        "delong_p",
        "auc_diff_vs_classical",
        "delong_p_vs_classical",
    )

    def record(self) -> dict[str, Any]:
        """The row as ``results.csv`` and the cell files hold it."""
        return {k: v for k, v in self.model_dump().items() if not (k in self.OPTIONAL and v is None)}


def _verdict(values: list[float], better: str, worse: str) -> tuple[float, list[float], str]:
    """Mean, t-interval over seeds and the verdict it supports (a CI clear of 0, or not)."""
    sm = summarize_over_seeds(values, bounds=(-1.0, 1.0))
    lo, hi = sm["ci"]
    return sm["mean"], list(sm["ci"]), better if lo > 0 else (worse if hi < 0 else "no clear difference")


def _summary_row(arm: str, ratio: Any, f: float, g: pd.DataFrame, skipped: list[dict]) -> dict[str, Any]:
    """One arm setting over seeds: mean metrics with t-intervals, the verdicts vs real and classical."""
    rec: dict[str, Any] = {
        "arm": arm,
        "ratio": None if pd.isna(ratio) else ratio,
        "fraction": f,
        "seeds": len(g),
    }
    for metric in ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1"):
        if metric in g:
            sm = summarize_over_seeds(g[metric].tolist(), bounds=(0.0, 1.0))
            rec[metric], rec[f"{metric}_ci"] = sm["mean"], list(sm["ci"])
    if arm != "real" and "auc_diff_vs_real" in g:
        values = g["auc_diff_vs_real"].dropna().tolist()
        rec["auc_diff_vs_real"], rec["auc_diff_ci"], rec["verdict"] = _verdict(values, "helped", "hurt")
    if arm not in ("real", "classical") and g.get("auc_diff_vs_classical", pd.Series()).notna().any():
        values = g["auc_diff_vs_classical"].dropna().tolist()
        mean, ci, verdict = _verdict(values, "better than classical", "worse than classical")
        rec["auc_diff_vs_classical"], rec["auc_diff_vs_classical_ci"], rec["verdict_vs_classical"] = (
            mean,
            ci,
            verdict,
        )
    n_skipped = sum((k["arm"], k["ratio"], k["fraction"]) == (arm, rec["ratio"], f) for k in skipped)
    if n_skipped:
        rec["skipped_seeds"] = n_skipped
    return rec


def summarize(results: pd.DataFrame, skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``summary.csv``: one row per (arm, ratio, fraction) over seeds; arm settings every seed of
    which was skipped (a failing synthesizer) get one row that says why."""
    summary = [
        _summary_row(arm, ratio, f, g, skipped)
        for (arm, ratio, f), g in results.groupby(["arm", "ratio", "fraction"], dropna=False, sort=False)
    ] if len(results) else []  # fmt: skip
    done = {(r["arm"], r["ratio"], r["fraction"]) for r in summary}
    for k in skipped:
        key = (k["arm"], k["ratio"], k["fraction"])
        if key in done:
            continue
        done.add(key)
        summary.append(
            {
                "arm": k["arm"],
                "ratio": k["ratio"],
                "fraction": k["fraction"],
                "seeds": 0,
                "skipped_seeds": sum((j["arm"], j["ratio"], j["fraction"]) == key for j in skipped),
                "verdict": "skipped: the synthesizer failed the quality gates",
                "skipped_reason": k["reason"],
            }
        )
    return summary


def run_study(
    cfg: RunConfig,
    data_dir: Path,
    out: Path,
    synthesizer_checkpoint: Path | None = None,
    synthesizer_metrics: dict[str, Any] | None = None,
    real_classifier_dir: Path | None = None,
    data: RunData | None = None,
) -> dict[str, Any]:
    """Run every (fraction, seed, arm, ratio) cell; writes ``results.csv``, ``summary.csv`` and ``study.json``.

    ``data``: the config's data already read (``medgan run`` hands its own); read here otherwise.

    ``synthesizer_checkpoint``: the run's own synthesizer (``model.kind``), already trained on the
    whole train split (``medgan run``'s), reused by the arm of its kind for the 100 % fraction
    instead of training the same model again; ``synthesizer_metrics``: its evaluation, used for
    its quality gates.

    Quality gates (``cfg.gates``): every synthesizer the study uses is compared with them (its
    metrics computed as ``medgan run`` does when not given; cached under ``out/gates/``, the real
    classifier of the label scores in ``real_classifier_dir``, default ``out/real_classifier``).
    The results go into ``study.json`` under ``gates``. With ``study.skip_failing_synthesizers``
    the cells of arms that use a failing synthesizer are skipped, listed under ``skipped`` and
    marked ``skipped`` in the summary.

    Resumable: each finished cell (its row and test-set probabilities) is saved atomically under
    ``out/cells/<fingerprint>/``; a rerun with the same config reuses finished cells and trains
    only the rest (the fingerprint covers everything a cell depends on).
    """
    d = _load_splits(cfg, data_dir, data)
    plan = _plan(cfg, d.ty, d.classes, arm_specs(cfg.study))  # every error before any training
    out.mkdir(parents=True, exist_ok=True)
    write_provenance(out)
    reuse = {cfg.model.kind: synthesizer_checkpoint} if synthesizer_checkpoint is not None else {}
    cells = out / "cells" / _fingerprint(cfg, synthesizer_checkpoint)
    cells.mkdir(parents=True, exist_ok=True)
    known = {Path(synthesizer_checkpoint): synthesizer_metrics} if reuse and synthesizer_metrics else {}
    gates = _Gates(cfg, d.ss, out, real_classifier_dir or out / "real_classifier", known)
    specs = arm_specs(cfg.study)
    filtering = any(sp.pool is not None and _sized(sp.pool) and sp.min_confidence is not None for sp in specs)
    ctx = _Ctx(
        cfg,
        d,
        out,
        cells,
        keep_real_clf=any(sp.synthetic and sp.min_confidence is not None for sp in specs),
        factor=FILTER_POOL if filtering else 1,
    )
    trackers = tracking.resolve(cfg.train.tracking)
    params = tracking.flat_params(cfg.study.model_dump(mode="json"))
    make_tracker = (lambda: Tracker(trackers, out, f"{cfg.name} study", params)) if trackers else None
    executor = make_executor(cfg.study.executor, cfg.study.ray_address)
    status = "FAILED"
    runner = _Study(ctx, gates, reuse, executor, make_tracker)
    try:
        shared = executor.put(ctx)
        ckpts = runner.synthesizers(plan, shared)
        runner.cells(plan, shared, ckpts)
        rows = runner.rows(plan)
        status = "FINISHED"
    finally:
        executor.close()
        if runner.tracker is not None:
            runner.tracker.close(status)
    text = pd.DataFrame(rows).to_csv(index=False)
    if not (out / "results.csv").is_file() or (out / "results.csv").read_text(encoding="utf-8") != text:
        atomic_write_text(out / "results.csv", text)  # a rerun with nothing new leaves the file alone
    summary = summarize(pd.DataFrame(rows), runner.skipped)
    atomic_write_text(out / "summary.csv", pd.DataFrame(summary).to_csv(index=False))
    report = {
        "classes": d.classes,
        "n_train": len(d.tr),
        "n_val": len(d.va),
        "n_test": len(d.te),
        "study": cfg.study.model_dump(mode="json"),
        "summary": summary,
        "gates": gates.records,
        "skipped": runner.skipped,
    }
    atomic_write_text(out / "study.json", json.dumps(report, indent=2, default=float))
    return report
