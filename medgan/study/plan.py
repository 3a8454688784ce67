"""What a study runs: its arms, the real subsets of every fraction and seed, the cache key of its cells."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgan.config import MODEL_CONFIGS, RunConfig, StudyConfig, arm_kind
from medgan.errors import ConfigError, InputError
from medgan.mixing import stratified_subsample
from medgan.synthesis import registry
from medgan.training.checkpoint import (
    checkpoint_meta,
)


def kind_is_sized(kind: str) -> bool:
    """Whether a synthesizer kind makes a pool of any size (samples) rather than one output per real slice."""
    return registry.get(kind).sized


def arm_kinds(specs: list[ArmSpec]) -> list[str]:
    """The synthesizer kinds the arms draw from, in the registry's order."""
    used = {sp.pool for sp in specs if sp.pool is not None}
    return [k for k in MODEL_CONFIGS if k in used]


def model_key(cfg: RunConfig, kind: str) -> str:
    """The config key of the model a study arm of ``kind`` trains (for error messages)."""
    return "model" if cfg.model.kind == kind else f"study.models.{kind}"


def arm_config(cfg: RunConfig, kind: str, fraction: float = 1.0) -> RunConfig:
    """The config a study arm's synthesizer of ``kind`` trains with.

    The run's own model when ``model.kind`` is ``kind`` (its training settings too, with
    ``study.steps.<kind>`` as the length when given); otherwise ``study.models.<kind>`` (typed by
    the kind's config class) with that kind's training defaults: only the device settings come
    from the run's ``train:``, and the length is ``study.steps.<kind>``, else the kind's default
    length, else the run's ``train.steps``. Below 100 % of the train split the length is scaled
    by ``study.step_scaling`` (:meth:`~medgan.config.StudyConfig.scaled_steps`).
    """
    steps = cfg.study.steps.get(kind)
    if cfg.model.kind == kind:
        c = cfg.model_copy(deep=True)
        if steps:
            c.train.steps = steps
        c.train.steps = cfg.study.scaled_steps(c.train.steps, fraction)
        return c
    raw = cfg.model_dump(mode="json")
    model = cfg.study.model_for(kind)
    raw["model"] = model.model_dump(mode="json")
    keep = ("device", "amp", "channels_last", "log_every", "samples_per_class")
    raw["train"] = {k: raw["train"][k] for k in keep}
    full = steps or type(model).TRAIN_DEFAULTS.get("steps", cfg.train.steps)
    raw["train"]["steps"] = cfg.study.scaled_steps(full, fraction)
    raw["train"]["checkpoint_every"] = raw["train"]["sample_every"] = raw["train"]["steps"]
    return RunConfig.model_validate(raw)


def make_plan(
    cfg: RunConfig, labels: np.ndarray, classes: list[str], specs: list[ArmSpec]
) -> list[tuple[float, int, np.ndarray]]:
    """All (fraction, seed, subset indices), validated before any training starts."""
    st = cfg.study
    if cfg.data_b is not None and any(not kind_is_sized(k) for k in arm_kinds(specs)):
        raise ConfigError(
            "study.arms",
            f"a translation arm translates between two classes; this run's {cfg.model.kind} translates data into data_b",
        )
    for kind in arm_kinds(specs):  # e.g. a CycleGAN arm's domains must name classes of the data
        registry.get(kind).describe(arm_config(cfg, kind).model, classes, model_key(cfg, kind))
    if len(np.unique(labels)) < 2:
        raise InputError("data", "the train split holds a single class; a diagnostic study needs two or more")
    plan = []
    for f in st.fractions:
        for s in range(st.seeds_for(f)):
            idx = np.arange(len(labels)) if f == 1.0 else stratified_subsample(labels, f, s, st.min_per_class)
            counts = np.bincount(labels[idx], minlength=len(classes))
            if (counts[counts > 0] < st.min_per_class).any() or (counts == 0).any():
                raise InputError(
                    "data", f"fraction {f:g}, seed {s}: too few slices per class ({counts.tolist()})"
                )
            plan.append((f, s, idx))
    return plan


def fingerprint(cfg: RunConfig, reused: Path | None) -> str:
    """What a study cell's result depends on: finished cells are reused only under the same one."""
    d = cfg.model_dump(mode="json")
    keep = {k: d[k] for k in ("seed", "data", "data_b", "model", "train", "classifier", "study")}
    for k in ("device", "log_every", "sample_every", "samples_per_class", "tracking"):
        keep["train"].pop(k, None)
    keep["study"].pop("skip_failing_synthesizers", None)  # decides which cells run, not their results
    # which cells run, not what each computes: a cell is keyed by its arm, ratio, fraction and seed
    # (its subset depends on those alone), so more seeds, ratios or fractions reuse the finished ones
    # the ensemble size and the samples per classifier epoch (equal_steps) are in the cell key
    for k in ("arms", "ratios", "fractions", "seeds", "ensemble", "equal_steps"):
        keep["study"].pop(k, None)
    if not keep["classifier"].get("epoch_samples"):
        keep["classifier"].pop("epoch_samples", None)  # one pass per epoch: as cells before the option
    for k in ("executor", "cpus_per_task", "gpus_per_task", "ray_address"):  # where cells run, not what
        keep["study"].pop(k, None)
    if not keep["study"].get("levers"):
        keep["study"].pop("levers", None)  # studies without levers keep their cells
    keep["classifier"].pop("device", None)
    for sec in ("data", "data_b"):  # a split that keeps patients apart: as cells before the option
        if isinstance(keep.get(sec), dict) and not keep[sec].get("splits", {}).get("allow_patient_overlap"):
            keep[sec].get("splits", {}).pop("allow_patient_overlap", None)
        if isinstance(keep.get(sec), dict) and keep[sec].get("splits", {}).get("near_duplicates") == "auto":
            keep[sec]["splits"].pop("near_duplicates", None)  # the default: as cells before the option
    # a kind added after the first cell caches enters the fingerprint only when one of the study's
    # arms draws from it (its study.models section cannot change the other arms' cells)
    used = {arm_kind(a) for a in cfg.study.arms}
    models = keep["study"].get("models") or {}
    for kind in [k for k in models if not MODEL_CONFIGS[k].ALWAYS_FINGERPRINTED and k not in used]:
        models.pop(kind)
    if reused is not None:
        keep["reused_checkpoint"] = checkpoint_meta(reused).sha256
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ArmSpec:
    """One arm of the study as it runs: its name, the synthesizer arm it builds on and its mixing."""

    name: str  # "<kind>", or "<kind>[weight0.5]" for a lever
    base: str  # real | classical | real+ | <kind> | <kind>+classical
    ratios: tuple[float, ...] | None  # a lever's own ratios; None: the study's at each fraction
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
    def extra_real(self) -> bool:
        """Whether the arm adds real slices the subset left out (``real+``, the positive control)."""
        return self.base == "real+"

    @property
    def adds(self) -> bool:
        """Whether the arm adds slices (synthetic or extra real) at a ratio."""
        return self.synthetic or self.extra_real

    def ratios_at(self, st: StudyConfig, fraction: float) -> tuple[float | None, ...]:
        """The ratios this arm runs at ``fraction`` (``(None,)`` for arms without one; ``real+`` has
        no cell at 100 %: there is no real slice left to add)."""
        if not self.adds:
            return (None,)
        if self.extra_real and fraction >= 1.0:
            return ()
        return self.ratios if self.ratios is not None else tuple(st.ratios_for(fraction))

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
    base = sorted(st.arms, key=lambda a: {"real": 0, "classical": 1, "real+": 2}.get(a, 3))
    specs = [
        ArmSpec(
            a,
            a,
            None,
            st.policy,
            1.0 if a == "real+" else st.synthetic_weight,  # real+ adds real slices: full weight
            None if a == "real+" else st.min_confidence,
            st.pretrain and a != "real+",
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
                    tuple(lv.ratios) if lv.ratios else None,
                    lv.policy or st.policy,
                    st.synthetic_weight if lv.synthetic_weight is None else lv.synthetic_weight,
                    st.min_confidence if lv.min_confidence is None else lv.min_confidence,
                    st.pretrain if lv.pretrain is None else lv.pretrain,
                    lv.name,
                )
            )
    return specs


def epoch_samples(st: StudyConfig, specs: list[ArmSpec], f: float, n: int) -> int:
    """The samples per classifier epoch of every cell at fraction ``f`` whose real subset has ``n``
    slices (``study.equal_steps``): the largest training set an arm there adds up to, ``n x (1 +
    the largest ratio)``, so every cell of the fraction takes the same optimizer steps (within one
    batch). 0 (one pass per cell) without ``equal_steps`` or when no arm adds slices there."""
    if not st.equal_steps:
        return 0
    top = max((r for sp in specs if sp.adds for r in sp.ratios_at(st, f) if r is not None), default=0.0)
    return math.ceil(n * (1.0 + top)) if top > 0 else 0


def cell_key(arm: str, ratio: float | None, f: float, s: int, ensemble: int = 1, epoch: int = 0) -> str:
    """The file name (without ``.json``) of one cell in the cell cache (``-e<k>``: k classifiers;
    ``-m<n>``: n samples per classifier epoch, ``study.equal_steps``)."""
    e = f"-e{ensemble}" if ensemble > 1 else ""
    m = f"-m{epoch}" if epoch else ""
    return (
        f"{re.sub(r'[^A-Za-z0-9_.-]', '-', arm)}-r{'na' if ratio is None else f'{ratio:g}'}-f{f:g}-s{s}{e}{m}"
    )


def synth_dir(out: Path, kind: str, f: float, s: int) -> Path:
    """The folder of the ``kind`` synthesizer of one real subset (one for every seed at 100 %)."""
    return out / "synthesizers" / (f"{kind}-f{f:g}" if f == 1.0 else f"{kind}-f{f:g}-s{s}")
