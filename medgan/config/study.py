"""The ``study:``, ``pipeline:``, ``gates:`` and ``augment:`` sections: what is done with a synthesizer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model, field_validator, model_validator

from medgan.config.base import Seed, StrictModel
from medgan.config.kinds import MODEL_CONFIGS, KindConfig, synthetic_arms


def _at_fraction(value: int | dict[float, int] | None, fraction: float, small: int, large: int) -> int:
    """A per-fraction count: the number given, the fraction's entry, or by default ``small`` at
    fractions <= 0.25 (little data) and ``large`` above."""
    if isinstance(value, dict):
        return value[fraction]
    if value is None:
        return small if fraction <= 0.25 else large
    return value


#: Arms of real slices only: ``real`` (the subset), ``classical`` (the subset, augmented) and
#: ``real+`` (the subset plus as many other real train slices as a synthetic arm adds: the
#: positive control, run at fractions below 1).
REAL_ARMS = ("real", "classical", "real+")


def _counts(v: int | dict[float, int] | None) -> int | dict[float, int] | None:
    """A count (repeats, classifiers): one number or a number per fraction, each at least 1."""
    counts = [v] if isinstance(v, int) else list(v.values()) if isinstance(v, dict) else []
    if any(isinstance(n, bool) or n < 1 for n in counts):
        raise ValueError("counts must be at least 1")
    return {float(f): n for f, n in v.items()} if isinstance(v, dict) else v


def _check_per_fraction(key: str, per: object, fractions: list[float]) -> None:
    """A per-fraction setting (a dict) names every fraction of the study (others may be named)."""
    if isinstance(per, dict) and (missing := [f for f in fractions if f not in per]):
        raise ValueError(
            f"{key} per fraction must name every fraction of the study {fractions}; missing {missing}"
        )


def _positive_ratios(v: list[float]) -> list[float]:
    """Synthetic ratios: a non-empty list of values > 0."""
    if not v or any(r <= 0 for r in v):
        raise ValueError("ratios must be a non-empty list of values > 0")
    return v


def _synthetic_arm(a: str) -> str:
    if a not in synthetic_arms():
        raise ValueError(f"unknown synthetic arm {a!r}; choose from {synthetic_arms()}")
    return a


class LeverConfig(StrictModel):
    """One named variant of the synthetic arms: how synthetic slices are mixed into training.

    Each lever adds the arms ``<arm>[<name>]`` (for every arm in ``arms``; default: the arm of the
    run's own ``model.kind``) beside the plain ones, with the study's own settings overridden by
    the fields given here; each lever cell is paired with ``real`` (and with ``classical`` when
    that arm runs) on the same seed. ``ratios`` defaults to the study's ratios.
    """

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=40)
    arms: list[str] | None = None
    ratios: list[float] | None = None
    policy: Literal["add", "balance", "replace"] | None = None
    synthetic_weight: float | None = Field(None, ge=0.0)
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    pretrain: bool | None = None

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float] | None) -> list[float] | None:
        return None if v is None else _positive_ratios(v)

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("arms must name at least one synthetic arm")
        return [_synthetic_arm(a) for a in dict.fromkeys(v)]


def _study_model(kind: str) -> Any:
    cls = MODEL_CONFIGS[kind]
    return lambda: cls.model_validate(cls.study_default())


#: ``study.models``: one typed model section per synthesizer kind (its own config class), the
#: model a study arm of that kind trains when the kind is not the run's ``model.kind``.
StudyModels = create_model(  # type: ignore[call-overload]
    "StudyModels",
    __base__=StrictModel,
    __doc__="The model of each synthesizer kind's study arm (``study.models.<kind>``), each typed by its kind's config class.",
    **{k: (c, Field(default_factory=_study_model(k))) for k, c in MODEL_CONFIGS.items()},
)


class StudyConfig(StrictModel):
    """The augmentation-benefit study: arms x synthetic ratios x real-data fractions x seeds.

    Arms: ``real``, ``classical``, and for every synthesizer kind ``<kind>`` and
    ``<kind>+classical``. The arm of the run's own ``model.kind`` uses the run's model; an arm of
    another kind trains ``models.<kind>`` (typed by that kind's config class, starting from its
    ``STUDY_DEFAULTS``) with the kind's own training defaults. ``steps.<kind>`` sets the length of a
    kind's study synthesizers. ``levers`` add named variants of the synthetic arms (loss weight,
    confidence filtering, synthetic pre-training, the ``balance`` policy), each run beside the
    plain arms. Configs written before 2026-12-07 (``study.cgan``, ``study.cgan_steps``, ...) load
    through :func:`medgan.config.run.upgrade_raw`.
    """

    arms: list[str] = Field(
        default_factory=lambda: ["real", "classical", "real+", "cgan", "cyclegan", "cgan+classical"]
    )
    #: Synthetic ratios: one list for every fraction, or a list per fraction (``{0.1: [0.5, 1, 2,
    #: 4, 8], 1.0: [0.5]}``: a ratio sweep where data is scarce, one ratio where it is cheap).
    ratios: list[float] | dict[float, list[float]] = Field(default_factory=lambda: [0.5, 1.0])
    fractions: list[float] = Field(default_factory=lambda: [1.0])
    #: Repeats (seeds) per fraction: one number for all, a number per fraction, or None for the
    #: default: 10 at fractions <= 0.25 (cheap classifiers, noisy subsets), 5 above.
    seeds: int | dict[float, int] | None = None
    #: Classifiers per cell, averaged (their mean probability is the cell's prediction): one
    #: number, one per fraction, or None for the default: 3 at fractions <= 0.25, where a small
    #: training set makes one classifier's result depend on its initialisation, 1 above.
    ensemble: int | dict[float, int] | None = None
    #: Length of a subset's synthesizers: ``sqrt`` trains ``steps x sqrt(fraction)`` steps (at
    #: least 1), ``none`` the full length at every fraction. Recorded in study.json's ``design``.
    step_scaling: Literal["sqrt", "none"] = "sqrt"
    #: The labels are ordered grades: add the quadratic weighted kappa to every cell and comparison.
    ordinal: bool = False
    #: Every classifier of a fraction takes the same number of optimizer steps: an epoch is as many
    #: samples as the largest training set of that fraction (``classifier.epoch_samples``), so an
    #: arm that adds slices does not also train longer than ``real``. ``false``: one pass over each
    #: cell's own training set per epoch (the behaviour before 2026-12-07), which credits an arm
    #: with the effect of the extra steps as well as of its slices.
    equal_steps: bool = True
    policy: Literal["add", "balance", "replace"] = "add"
    synthetic_weight: float = Field(1.0, ge=0.0)
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    pretrain: bool = False
    models: StudyModels = Field(default_factory=StudyModels)  # type: ignore[valid-type]
    steps: dict[str, int] = Field(default_factory=dict)
    n_boot: int = Field(1000, ge=10)
    min_per_class: int = Field(2, ge=1)
    skip_failing_synthesizers: bool = False
    levers: list[LeverConfig] = Field(default_factory=list)
    #: Where the cells and per-subset synthesizers run: ``local`` (this process, one after
    #: another) or ``ray`` (Ray tasks; ``pip install 'medgan[ray]'``; docs/study.md).
    executor: Literal["local", "ray"] = "local"
    #: CPU cores (and torch threads) per job; None: all of this machine's with ``local``, 1
    #: with ``ray``. Results are bit-identical across executors for the same value.
    cpus_per_task: int | None = Field(None, ge=1)
    #: GPUs per job under ``ray`` (fractions share a GPU).
    gpus_per_task: float = Field(0.0, ge=0.0)
    #: The Ray cluster: None starts a local Ray (or joins ``$RAY_ADDRESS``), ``auto`` joins the
    #: cluster ``ray start`` runs on this machine, ``ray://host:10001`` a remote one.
    ray_address: str | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _arm_models(cls, v: Any) -> Any:
        """Each kind's section given here starts from that kind's ``STUDY_DEFAULTS``."""
        if not isinstance(v, dict):
            return v
        return {
            k: MODEL_CONFIGS[k].study_default(m) if k in MODEL_CONFIGS and isinstance(m, dict) else m
            for k, m in v.items()
        }

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: dict[str, int]) -> dict[str, int]:
        for k, n in v.items():
            if k not in MODEL_CONFIGS:
                raise ValueError(f"{k!r} is not a synthesizer kind; choose from {sorted(MODEL_CONFIGS)}")
            if n < 1:
                raise ValueError(f"{k}: steps must be at least 1")
        return v

    @field_validator("levers")
    @classmethod
    def _levers(cls, v: list[LeverConfig]) -> list[LeverConfig]:
        names = [lv.name for lv in v]
        if len(set(names)) != len(names):
            raise ValueError("lever names must be unique")
        return v

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float] | dict[float, list[float]]) -> list[float] | dict[float, list[float]]:
        if isinstance(v, dict):
            if not v:
                raise ValueError("ratios per fraction must name at least one fraction")
            return {float(f): _positive_ratios(list(dict.fromkeys(r))) for f, r in v.items()}
        return _positive_ratios(v)

    @field_validator("seeds", "ensemble")
    @classmethod
    def _seeds(cls, v: int | dict[float, int] | None) -> int | dict[float, int] | None:
        return _counts(v)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < f <= 1 for f in v):
            raise ValueError("fractions must be a non-empty list of values in (0, 1]")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _per_fraction(self) -> StudyConfig:
        for key, per in (("ratios", self.ratios), ("seeds", self.seeds), ("ensemble", self.ensemble)):
            _check_per_fraction(key, per, self.fractions)  # `--set study.fractions=[0.1]` runs one
        return self

    def seeds_for(self, fraction: float) -> int:
        """The number of repeats at ``fraction`` (``seeds``; by default 10 at <= 0.25, 5 above)."""
        return _at_fraction(self.seeds, fraction, small=10, large=5)

    def ensemble_for(self, fraction: float) -> int:
        """Classifiers per cell at ``fraction`` (``ensemble``; by default 3 at <= 0.25, 1 above)."""
        return _at_fraction(self.ensemble, fraction, small=3, large=1)

    def ratios_for(self, fraction: float) -> list[float]:
        """The synthetic ratios run at ``fraction``."""
        return self.ratios[fraction] if isinstance(self.ratios, dict) else self.ratios

    def all_ratios(self) -> list[float]:
        """Every synthetic ratio of any fraction, sorted."""
        return sorted({r for f in self.fractions for r in self.ratios_for(f)})

    def scaled_steps(self, steps: int, fraction: float) -> int:
        """The length of a synthesizer trained on ``fraction`` of the train split (``step_scaling``)."""
        if self.step_scaling == "none" or fraction >= 1.0:
            return steps
        return max(1, round(steps * fraction**0.5))

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: list[str]) -> list[str]:
        if "real" not in v:
            raise ValueError("arms must include 'real' (every arm is compared with it)")
        for a in v:
            if a not in REAL_ARMS:
                _synthetic_arm(a)
        return list(dict.fromkeys(v))

    def model_for(self, kind: str) -> KindConfig:
        """The typed model section a study arm of ``kind`` trains when it is not the run's own kind."""
        return getattr(self.models, kind)


class PipelineConfig(StrictModel):
    """What ``medgan run`` does after training the conditional GAN (docs/metrics.md, docs/study.md).

    The evaluation set is generated in the **test split's class proportions**, ``eval_n`` slices
    in all (default: as many as the test split holds), so that no metric is flattered or punished
    by a class mix the real set does not have. ``eval_per_class`` (kept for older configs) asks
    for equal counts per class instead. ``label_scores`` adds label agreement and CAS; the CAS
    training set has ``cas_n`` slices (default: the train split's N) in the train split's
    proportions.
    """

    evaluate: bool = True
    features: str = "inception"
    eval_n: int | None = Field(None, ge=2)
    eval_per_class: int | None = Field(None, ge=2)
    label_scores: bool = True
    cas_n: int | None = Field(None, ge=2)
    study: bool = True

    @model_validator(mode="after")
    def _one_size(self) -> PipelineConfig:
        if self.eval_n is not None and self.eval_per_class is not None:
            raise ValueError("give eval_n (test proportions) or eval_per_class (equal counts), not both")
        return self


SEG_ARMS = ("real", "classical", "pairs", "pairs+classical")


class SegStudyConfig(StrictModel):
    """The segmentation study (``medgan run`` with a mask-conditioned model and ``run: true``):
    a MONAI UNet (``segmenter:``) trained on real pairs alone (``real``), with classical
    augmentation of image and mask (``classical``), with the run's synthetic pairs added
    (``pairs``: ``ratio`` x the real pairs, in their class mix) and with both
    (``pairs+classical``), on ``fractions`` of the train split, ``seeds`` repeats (each its own
    subset, segmenter seed and synthetic draw); Dice and HD95 on the real test pairs, each arm's
    per-repeat Dice difference against ``real`` (and ``pairs+classical`` against ``classical``)
    summarised with a t-interval over repeats and Holm-adjusted p-values (docs/study.md).
    A fraction below 1 trains the mask-conditioned model on each repeat's own subset (as the
    classification study does: length scaled by ``study.step_scaling``, validation selection);
    fraction 1 reuses the run's model.
    """

    run: bool = False
    arms: list[str] = Field(default_factory=lambda: list(SEG_ARMS))
    ratios: list[float] = Field(default_factory=lambda: [1.0])
    fractions: list[float] = Field(default_factory=lambda: [1.0])
    #: Repeats: one number for every fraction or a number per fraction (``{0.25: 10, 1.0: 3}``:
    #: more where the subsets and the models trained on them vary most). Repeat ``s`` of a
    #: fraction is the same whatever the count, so raising it reuses the repeats already run.
    seeds: int | dict[float, int] = 5
    level: float = Field(0.95, gt=0.0, lt=1.0)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | dict[float, int]) -> int | dict[float, int]:
        return _counts(v)  # type: ignore[return-value]

    def seeds_for(self, fraction: float) -> int:
        """The number of repeats at ``fraction``."""
        return _at_fraction(self.seeds, fraction, small=5, large=5)

    @model_validator(mode="after")
    def _check(self) -> SegStudyConfig:
        bad = [a for a in self.arms if a not in SEG_ARMS]
        if bad:
            raise ValueError(f"unknown arm(s) {bad}; choose from {list(SEG_ARMS)}")
        if "real" not in self.arms:
            raise ValueError("arms must include real (every arm is compared with it)")
        if any(not 0.0 < f <= 1.0 for f in self.fractions) or not self.fractions:
            raise ValueError("fractions must lie in (0, 1]")
        if any(not r > 0.0 for r in self.ratios) or not self.ratios:
            raise ValueError("ratios must be > 0")
        _check_per_fraction("seeds", self.seeds, self.fractions)
        return self


class GatesConfig(StrictModel):
    """Quality gates a synthesizer must pass (docs/metrics.md); ``null`` switches one gate off.

    ``fid_ratio_max``: FID / real-real floor FID at most this; ``recall_min`` / ``precision_min``:
    k-NN recall / precision at least this; ``ms_ssim_max``: within-class MS-SSIM at most this;
    ``label_agreement_margin``: label agreement at least the real classifier's test accuracy
    minus this; ``cas_auc_min``: CAS test AUC at least this; ``memorized_max``: near-copies of
    training images at most this many.
    """

    fid_ratio_max: float | None = Field(2.0, gt=0.0)
    recall_min: float | None = Field(0.30, ge=0.0, le=1.0)
    precision_min: float | None = Field(0.50, ge=0.0, le=1.0)
    ms_ssim_max: float | None = Field(0.50, gt=0.0, le=1.0)  # within-class MS-SSIM of images is in (0, 1]
    label_agreement_margin: float | None = Field(0.05, ge=0.0, le=1.0)
    cas_auc_min: float | None = Field(0.80, ge=0.0, le=1.0)
    memorized_max: int | None = Field(0, ge=0)

    def active(self) -> bool:
        """Whether any gate is switched on."""
        return any(v is not None for v in self.model_dump().values())


class AugmentConfig(StrictModel):
    """``medgan augment``: a ready-to-train dataset of real training slices plus synthetic ones.

    Synthetic counts come from ``n_per_class`` (exact counts per class name) or else from
    ``policy`` and ``ratio`` as in the study (``add``: ratio x each class's real count;
    ``balance``: ratio x the gap to the largest class; ``replace``: that fraction of each class's
    real slices is swapped for synthetic ones). With several checkpoints, each class's synthetic
    count is split between them as evenly as possible. Validation and test stay real-only.
    """

    checkpoints: list[str] = Field(default_factory=list)
    policy: Literal["add", "balance", "replace"] = "add"
    ratio: float = Field(1.0, gt=0)
    n_per_class: dict[str, int] | None = None
    format: Literal["png", "nifti"] = "png"
    bits: Literal[8, 16] = 8
    seed: Seed = 0
    batch_size: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        if self.policy == "replace" and self.ratio > 1:
            raise ValueError("'replace' swaps a fraction of the real slices: ratio must be <= 1")
        if self.n_per_class is not None and any(v < 0 for v in self.n_per_class.values()):
            raise ValueError("n_per_class counts must be >= 0")
        return self
