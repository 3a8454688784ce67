"""``medgan study``: does adding synthetic slices make a diagnostic classifier better, by how much, how surely?

For each real-data fraction and seed, a stratified real subset is drawn; the synthesizers of the
arms that need them are trained on **that subset only** (no held-back real image leaks in);
each arm's training set is built with :class:`~medgan.mixing.MixedDataset`; a MONAI classifier
(:mod:`medgan.classifier`) is trained with early stopping on the real validation split, and scored
on the same real test split for every arm. Each arm is paired with ``real`` on the same seed.

Arms: ``real`` (real only), ``classical`` (MONAI flip/rotation/affine/intensity augmentation),
``cgan`` (conditional GAN samples), ``cyclegan`` (CycleGAN translations of the real subset into
the other class), ``cgan+classical``. Options: mixing ``policy`` and ``ratios``,
``synthetic_weight`` (loss weight of synthetic samples), ``min_confidence`` (keep synthetic
samples that the real-only classifier gives at least this probability of their intended class),
``pretrain`` (train on synthetic only, then fine-tune on the real subset). ``levers`` run named
variants of those options as extra arms (``cgan[weight0.5]``) beside the plain ones; every arm
other than ``real`` and ``classical`` is paired with both on the same seed.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan.config import CycleGANConfig, RunConfig, StudyConfig
from medgan.data.sources import load_source
from medgan.errors import ConfigError, InputError
from medgan.io.atomic import atomic_write_text
from medgan.mixing import MixedDataset, filter_by_confidence, stratified_subsample
from medgan.training.seeding import derive_seed

SYNTH_ARMS = {"cgan", "cyclegan", "cgan+classical"}
FILTER_POOL = 4  # a confidence-filtered arm chooses from this many times the samples it needs


def _plan(cfg: RunConfig, labels: np.ndarray, classes: list[str]) -> list[tuple[float, int, np.ndarray]]:
    """All (fraction, seed, subset indices), validated before any training starts."""
    st = cfg.study
    if "cyclegan" in st.arms and len(classes) != 2 and not st.cyclegan.get("domain_a"):
        raise ConfigError(
            "study.arms", "the cyclegan arm needs two classes (or study.cyclegan.domain_a/domain_b)"
        )
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


def _fingerprint(cfg: RunConfig, cgan_checkpoint: Path | None) -> str:
    """What a study cell's result depends on: finished cells are reused only under the same one."""
    import hashlib

    d = cfg.model_dump(mode="json")
    keep = {k: d[k] for k in ("seed", "data", "data_b", "model", "train", "classifier", "study")}
    for k in ("device", "log_every", "sample_every", "samples_per_class"):
        keep["train"].pop(k, None)
    keep["study"].pop("skip_failing_synthesizers", None)  # decides which cells run, not their results
    if not keep["study"].get("levers"):
        keep["study"].pop(
            "levers", None
        )  # studies without levers keep the cells they had before levers existed
    keep["classifier"].pop("device", None)
    if cgan_checkpoint is not None:
        from medgan.training.checkpoint import read_checkpoint_meta

        keep["cgan_checkpoint"] = read_checkpoint_meta(cgan_checkpoint).get("sha256")
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ArmSpec:
    """One arm of the study as it runs: its name, the synthesizer arm it builds on and its mixing."""

    name: str  # "cgan", or "cgan[weight0.5]" for a lever
    base: str  # real | classical | cgan | cyclegan | cgan+classical
    ratios: tuple[float | None, ...]
    policy: str
    synthetic_weight: float
    min_confidence: float | None
    pretrain: bool
    lever: str | None = None

    @property
    def synthetic(self) -> bool:
        """Whether the arm mixes synthetic slices in."""
        return self.base in SYNTH_ARMS

    @property
    def pool(self) -> str:
        """The synthetic pool the arm draws from (``cgan`` or ``cyclegan``)."""
        return "cgan" if self.base.startswith("cgan") else self.base

    @property
    def classical(self) -> bool:
        """Whether classical augmentation is applied on the fly."""
        return self.base in ("classical", "cgan+classical")


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
    for lv in st.levers:
        for a in lv.arms:
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


def _cgan_checkpoint(
    cfg: RunConfig,
    x: np.ndarray,
    y: np.ndarray,
    meta: dict,
    folder: Path,
    reuse: Path | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """The conditional GAN of one real subset: trained in ``folder`` (or resumed), or ``reuse``."""
    from medgan.train import train_cgan_arrays
    from medgan.training.checkpoint import list_checkpoints, resolve_checkpoint

    c = cfg.model_copy(deep=True)
    if cfg.study.cgan_steps:
        c.train.steps = cfg.study.cgan_steps
    ckpts = list_checkpoints(folder / "checkpoints")
    if ckpts and int(ckpts[-1].stem.split("-")[1]) >= c.train.steps:
        return resolve_checkpoint(folder)
    if reuse is not None:
        return reuse
    return train_cgan_arrays(c, x, y, meta, folder, resume=bool(ckpts), val=val)


def _cgan_samples(ckpt: Path, counts: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``counts[c]`` samples of each class ``c``; image ``k`` of class ``c`` from ``derive_seed(seed, c, k)``."""
    from medgan.synthesis.cgan import CGANSynthesizer

    synth = CGANSynthesizer(ckpt)
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    seeds = [derive_seed(seed, c, k) for c, n in enumerate(counts) for k in range(n)]
    return synth.generate(labels, seeds).numpy(), np.asarray(labels, np.int64)


def _first_per_class(pool: tuple[np.ndarray, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` samples of each class of a pool (its samples are grouped by class, in seed order)."""
    x, y = pool
    rank = np.zeros(len(y), np.int64)
    for c in np.unique(y):
        rank[y == c] = np.arange(int((y == c).sum()))
    keep = rank < n
    return x[keep], y[keep]


def _cyclegan_checkpoint(
    cfg: RunConfig, x: np.ndarray, y: np.ndarray, meta: dict, folder: Path
) -> tuple[Path, int, int]:
    """The CycleGAN of one real subset (trained in ``folder``, or resumed) and its domain labels A, B."""
    from medgan.train import train_cyclegan_arrays
    from medgan.training.checkpoint import list_checkpoints

    opts = {"kind": "cyclegan", "g_channels": 32, "n_res_blocks": 6, **cfg.study.cyclegan}
    mc = CycleGANConfig.model_validate(opts)
    ia, ib = int(mc.domain_a), int(mc.domain_b)
    raw = cfg.model_dump(mode="json")
    raw["model"] = mc.model_dump(mode="json")
    # the CycleGAN keeps its own reference defaults (batch 8, no DiffAugment, linear decay);
    # only the length and the device settings come from the run's config
    keep = ("device", "amp", "channels_last", "log_every", "samples_per_class")
    raw["train"] = {k: raw["train"][k] for k in keep}
    raw["train"]["steps"] = cfg.study.cyclegan_steps or cfg.train.steps
    raw["train"]["checkpoint_every"] = raw["train"]["sample_every"] = raw["train"]["steps"]
    c = RunConfig.model_validate(raw)
    domains = {
        "mode": "labels",
        "a": meta["classes"][ia],
        "b": meta["classes"][ib],
        "label_a": ia,
        "label_b": ib,
    }
    ckpts = list_checkpoints(folder / "checkpoints")
    ckpt = ckpts[-1] if ckpts and int(ckpts[-1].stem.split("-")[1]) >= c.train.steps else None
    if ckpt is None:
        ckpt = train_cyclegan_arrays(
            c, x[y == ia], x[y == ib], {**meta, "domains": domains}, folder, resume=bool(ckpts)
        )
    return ckpt, ia, ib


def _cyclegan_pool(
    ckpt: Path, x: np.ndarray, y: np.ndarray, ia: int, ib: int
) -> tuple[np.ndarray, np.ndarray]:
    """Translations of the subset into the other class (A -> B and B -> A), labelled with their target."""
    import torch

    from medgan.synthesis.cyclegan import CycleGANTranslator

    tr = CycleGANTranslator(ckpt)
    to_b = tr.translate(torch.from_numpy(x[y == ia]), "A2B").numpy()
    to_a = tr.translate(torch.from_numpy(x[y == ib]), "B2A").numpy()
    return np.concatenate([to_b, to_a]), np.concatenate(
        [np.full(len(to_b), ib), np.full(len(to_a), ia)]
    ).astype(np.int64)


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
            from medgan.metrics.features import get_extractor
            from medgan.training.seeding import resolve_device

            self._ext = get_extractor(self.cfg.pipeline.features, resolve_device(self.cfg.train.device))
        return self._ext

    def check(
        self, name: str, kind: str, ckpt: Path, fraction: float, seed: int, **kw: Any
    ) -> dict[str, Any]:
        """The gate record of synthesizer ``name`` (computed, or read from ``gates/<name>.json``)."""
        from medgan.metrics.evaluate import gate_report
        from medgan.training.checkpoint import read_checkpoint_meta

        if name in self.records:
            return self.records[name]
        key = {
            "checkpoint": read_checkpoint_meta(ckpt).get("sha256"),
            "seed": self.cfg.seed,
            "data": self.cfg.data.model_dump(mode="json"),
            "pipeline": self.cfg.pipeline.model_dump(mode="json"),
            "classifier": self.cfg.classifier.model_dump(mode="json"),
        }
        cache = self.folder / f"{name}.json"
        metrics = self.known.get(Path(ckpt)) if kind == "cgan" else None
        source = "medgan run's evaluation" if metrics is not None else "the study's evaluation"
        if metrics is None and cache.is_file():
            with contextlib.suppress(json.JSONDecodeError, KeyError):
                rec = json.loads(cache.read_text(encoding="utf-8"))
                if rec["key"] == key:
                    metrics = rec["metrics"]
        if metrics is None:
            try:
                metrics = (
                    self._cgan_metrics(ckpt, name) if kind == "cgan" else self._cyclegan_metrics(ckpt, **kw)
                )
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

    def _cgan_metrics(self, ckpt: Path, name: str) -> dict[str, Any]:
        from medgan.metrics.evaluate import eval_counts, evaluate_sets, split_class_counts

        cfg, ss = self.cfg, self.ss
        tr, _, te, _, _, _ = self._sets()
        n_classes = len(ss.classes)

        def as_list(c: int | dict[int, int]) -> list[int]:
            return [c] * n_classes if isinstance(c, int) else [c.get(i, 0) for i in range(n_classes)]

        syn, syn_y = _cgan_samples(ckpt, as_list(eval_counts(cfg.pipeline, te, tr, n_classes)), cfg.seed)
        cas = None
        if cfg.pipeline.label_scores:
            n = cfg.pipeline.cas_n or len(tr)
            cas = _cgan_samples(ckpt, as_list(split_class_counts(tr, n, n_classes)), cfg.seed)
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

    def _cyclegan_metrics(self, ckpt: Path, ia: int, ib: int) -> dict[str, Any]:
        import torch

        from medgan.metrics.evaluate import ensure_real_classifier
        from medgan.synthesis.cyclegan import CycleGANTranslator
        from medgan.translate import translation_scores

        tr, va, te, ty, vy, sy = self._sets()
        clf = None
        if self.cfg.pipeline.label_scores:
            with contextlib.suppress(InputError):
                clf = ensure_real_classifier(
                    tr.images, ty, va.images, vy, list(self.ss.classes), self.cfg.classifier, self.clf_dir
                )
        translator = CycleGANTranslator(ckpt)
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
        m: dict[str, Any] = {"kind": "cyclegan", "directions": dirs, "gate_basis": "the worse direction"}

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


def run_study(
    cfg: RunConfig,
    data_dir: Path,
    out: Path,
    cgan_checkpoint: Path | None = None,
    cgan_metrics: dict[str, Any] | None = None,
    real_classifier_dir: Path | None = None,
) -> dict[str, Any]:
    """Run every (fraction, seed, arm, ratio) cell; writes ``results.csv``, ``summary.csv`` and ``study.json``.

    ``cgan_checkpoint``: a conditional GAN already trained on the whole train split (``medgan run``'s),
    reused for the 100 % fraction instead of training the same model again; ``cgan_metrics``: its
    evaluation (``medgan run``'s metrics.json), used for its quality gates.

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
    from medgan.classifier import train_classifier
    from medgan.classifier.augment import classical_augmentation
    from medgan.classifier.metrics import (
        bootstrap_metrics,
        delong_test,
        diagnostic_metrics,
        summarize_over_seeds,
    )
    from medgan.train import data_meta

    st = cfg.study
    ss = load_source(cfg.data, data_dir)
    tr, va, te = ss.split("train"), ss.split("val"), ss.split("test")
    for name, part in (("train", tr), ("val", va), ("test", te)):
        if len(part) == 0:
            raise InputError("data", f"the {name} split is empty; the study needs train, val and test slices")
        if (part.manifest["label"] < 0).any():
            raise InputError("data", f"{name} slices are unlabelled; a diagnostic study needs labels")
    ty, vy, sy = (p.manifest["label"].to_numpy().astype(np.int64) for p in (tr, va, te))
    classes = list(ss.classes)
    plan = _plan(cfg, ty, classes)  # every error before any training
    out.mkdir(parents=True, exist_ok=True)
    cells = out / "cells" / _fingerprint(cfg, cgan_checkpoint)
    cells.mkdir(parents=True, exist_ok=True)
    meta = {"classes": classes, "shape": list(ss.shape), "data": data_meta(tr)}
    positive = 1 if len(classes) == 2 else None
    rows: list[dict[str, Any]] = []
    probas: dict[tuple, np.ndarray] = {}
    known = {Path(cgan_checkpoint): cgan_metrics} if cgan_checkpoint is not None and cgan_metrics else {}
    gates = _Gates(cfg, ss, out, real_classifier_dir or out / "real_classifier", known)
    skipped: list[dict[str, Any]] = []
    specs = arm_specs(st)
    pools_needed = {sp.pool for sp in specs if sp.synthetic}
    keep_real_clf = any(sp.synthetic and sp.min_confidence is not None for sp in specs)
    max_ratio = max(r for sp in specs for r in sp.ratios if r is not None) if pools_needed else 0.0
    # confidence filtering chooses from a cGAN pool FILTER_POOL times as large; image k of class c is
    # the same image in both, so the unfiltered arms see exactly the first ``need`` per class
    factor = FILTER_POOL if any(sp.pool == "cgan" and sp.min_confidence is not None for sp in specs) else 1
    for f, s, idx in plan:
        x, y = tr.images[idx], ty[idx]
        sub_meta = {
            **meta,
            "data": {**meta["data"], "n_train": len(idx)},
            "real_subset": {"fraction": f, "seed": s},
        }
        clf_cfg = cfg.classifier.model_copy(update={"seed": s})
        pools: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        filter_pools: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # what confidence filtering chooses from
        need = max_ratio * np.bincount(y).max()
        keys = [_cell_key(sp.name, ratio, f, s) for sp in specs for ratio in sp.ratios]
        all_done = all((cells / f"{k}.json").is_file() for k in keys)
        failing: dict[str, str] = {}  # pool name -> why its arms are skipped
        # every cell finished and no gates to check: no synthesizer or pool is needed
        if "cgan" in pools_needed and (not all_done or gates.active):
            reuse = cgan_checkpoint if f == 1.0 and not st.cgan_steps else None
            folder = _synth_dir(out, "cgan", f, s)
            ckpt = _cgan_checkpoint(cfg, x, y, sub_meta, folder, reuse, val=(va.images, vy))
            if gates.active:
                g = gates.check(folder.name, "cgan", ckpt, f, s)
                if st.skip_failing_synthesizers and not g["passed"]:
                    failing["cgan"] = g["verdict"]
            if not all_done and "cgan" not in failing:
                wide = _cgan_samples(ckpt, [math.ceil(need) * factor] * len(classes), s)
                pools["cgan"] = _first_per_class(wide, math.ceil(need)) if factor > 1 else wide
                filter_pools["cgan"] = wide
        if "cyclegan" in pools_needed and (not all_done or gates.active):
            folder = _synth_dir(out, "cyclegan", f, s)
            ckpt, ia, ib = _cyclegan_checkpoint(cfg, x, y, sub_meta, folder)
            if gates.active:
                g = gates.check(folder.name, "cyclegan", ckpt, f, s, ia=ia, ib=ib)
                if st.skip_failing_synthesizers and not g["passed"]:
                    failing["cyclegan"] = g["verdict"]
            if not all_done and "cyclegan" not in failing:
                pools["cyclegan"] = _cyclegan_pool(ckpt, x, y, ia, ib)
        real_clf = None
        for sp in specs:
            for ratio in sp.ratios:
                arm = sp.name
                if sp.synthetic and sp.pool in failing:
                    skipped.append(
                        {"arm": arm, "ratio": ratio, "fraction": f, "seed": s, "reason": failing[sp.pool]}
                    )
                    continue
                cell = cells / f"{_cell_key(arm, ratio, f, s)}.json"
                if cell.is_file():
                    rec = json.loads(cell.read_text(encoding="utf-8"))
                    probas[(arm, ratio, f, s)] = np.asarray(rec["proba"], dtype=np.float64)
                    rows.append(rec["row"])
                    if arm == "real" and keep_real_clf and not all_done:
                        from medgan.classifier import TrainedClassifier
                        from medgan.training.seeding import resolve_device

                        real_clf = TrainedClassifier.load(
                            cells / f"real-f{f:g}-s{s}", device=resolve_device(clf_cfg.device)
                        )
                    continue
                pool = pools.get(sp.pool) if sp.synthetic else None
                filtered = pool is not None and sp.min_confidence is not None and real_clf is not None
                if filtered:
                    wide = filter_pools.get(sp.pool, pool)
                    keep = filter_by_confidence(wide[0], wide[1], real_clf.predict_proba, sp.min_confidence)
                    pool = (wide[0][keep], wide[1][keep])
                ds = MixedDataset(
                    (x, y),
                    pool,
                    ratio=ratio or 1.0,
                    policy=sp.policy,
                    synthetic_weight=sp.synthetic_weight,
                    seed=s,
                    cap=sp.base == "cyclegan" or filtered,
                )
                aug = classical_augmentation(s) if sp.classical else None
                init = None
                if sp.pretrain and sp.synthetic and ds.n_synthetic:
                    syn = ds.synthetic
                    pre = train_classifier(
                        ds.images[syn], ds.labels[syn], va.images, vy, len(classes), clf_cfg, classes
                    )
                    init = pre.model.state_dict()
                    ds_x, ds_y, w = x, y, None
                else:
                    ds_x, ds_y, w = ds.images, ds.labels, ds.weights
                clf = train_classifier(
                    ds_x,
                    ds_y,
                    va.images,
                    vy,
                    len(classes),
                    clf_cfg,
                    classes,
                    sample_weight=w,
                    batch_transform=aug,
                    init_state=init,
                )
                if arm == "real":
                    real_clf = clf
                p = clf.predict_proba(te.images)
                probas[(arm, ratio, f, s)] = p
                m = diagnostic_metrics(sy, p, **({"positive": positive} if positive is not None else {}))
                ci = bootstrap_metrics(sy, p, n_boot=st.n_boot, seed=s)
                row = {
                    "arm": arm,
                    "ratio": ratio,
                    "fraction": f,
                    "seed": s,
                    "n_real": ds.n_real,
                    "n_synthetic": ds.n_synthetic,
                }
                if sp.lever is not None:
                    row["lever"] = sp.lever
                if ds.shortfall:
                    row["synthetic_shortfall"] = int(sum(ds.shortfall.values()))
                row.update({k: v for k, v in m.items() if isinstance(v, int | float)})
                row.update({f"{k}_ci_lo": v[0] for k, v in ci.items()})
                row.update({f"{k}_ci_hi": v[1] for k, v in ci.items()})
                row["val_auc"], row["best_epoch"] = clf.val_auc, clf.best_epoch
                if positive is not None:
                    for ref in ("real", "classical"):
                        base = probas.get((ref, None, f, s))
                        if arm == ref or base is None or (ref == "classical" and not sp.synthetic):
                            continue
                        d = delong_test(sy, base[:, positive], p[:, positive])
                        sfx = "" if ref == "real" else "_vs_classical"
                        row[f"auc_diff_vs_{ref}"] = -d["diff"]  # arm - reference
                        row[f"delong_p{sfx}"] = d["p_value"]
                rows.append(row)
                if arm == "real" and keep_real_clf:
                    clf.save(cells / f"real-f{f:g}-s{s}")
                atomic_write_text(cell, json.dumps({"row": row, "proba": p.tolist()}, default=float))
                atomic_write_text(out / "results.csv", pd.DataFrame(rows).to_csv(index=False))
    results = pd.DataFrame(rows)
    summary = []
    for (arm, ratio, f), g in results.groupby(["arm", "ratio", "fraction"], dropna=False, sort=False):
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
            sm = summarize_over_seeds(g["auc_diff_vs_real"].dropna().tolist(), bounds=(-1.0, 1.0))
            rec["auc_diff_vs_real"], rec["auc_diff_ci"] = sm["mean"], list(sm["ci"])
            lo, hi = sm["ci"]
            rec["verdict"] = "helped" if lo > 0 else ("hurt" if hi < 0 else "no clear difference")
        if arm not in ("real", "classical") and g.get("auc_diff_vs_classical", pd.Series()).notna().any():
            sm = summarize_over_seeds(g["auc_diff_vs_classical"].dropna().tolist(), bounds=(-1.0, 1.0))
            rec["auc_diff_vs_classical"], rec["auc_diff_vs_classical_ci"] = sm["mean"], list(sm["ci"])
            lo, hi = sm["ci"]
            rec["verdict_vs_classical"] = (
                "better than classical"
                if lo > 0
                else ("worse than classical" if hi < 0 else "no clear difference")
            )
        skips = [k for k in skipped if (k["arm"], k["ratio"], k["fraction"]) == (arm, rec["ratio"], f)]
        if skips:
            rec["skipped_seeds"] = len(skips)
        summary.append(rec)
    done = {(r["arm"], r["ratio"], r["fraction"]) for r in summary}
    for k in skipped:  # arm settings with no cell left: one summary row that says why
        if (k["arm"], k["ratio"], k["fraction"]) not in done:
            done.add((k["arm"], k["ratio"], k["fraction"]))
            n = sum(
                (j["arm"], j["ratio"], j["fraction"]) == (k["arm"], k["ratio"], k["fraction"])
                for j in skipped
            )
            summary.append(
                {
                    "arm": k["arm"],
                    "ratio": k["ratio"],
                    "fraction": k["fraction"],
                    "seeds": 0,
                    "skipped_seeds": n,
                    "verdict": "skipped: the synthesizer failed the quality gates",
                    "skipped_reason": k["reason"],
                }
            )
    atomic_write_text(out / "summary.csv", pd.DataFrame(summary).to_csv(index=False))
    report = {
        "classes": classes,
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(te),
        "study": st.model_dump(mode="json"),
        "summary": summary,
        "gates": gates.records,
        "skipped": skipped,
    }
    atomic_write_text(out / "study.json", json.dumps(report, indent=2, default=float))
    return report
