"""The whole run (:class:`RunConfig`, one YAML file) and the upgrades that read older layouts."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, Tag, model_validator

from medgan.config.base import Seed, StrictModel
from medgan.config.data import DataConfig
from medgan.config.kinds import DEFAULT_KIND, MODEL_CONFIGS, model_kind, synthetic_arms
from medgan.config.study import AugmentConfig, GatesConfig, PipelineConfig, SegStudyConfig, StudyConfig
from medgan.config.train import ClassifierConfig, SegmenterConfig, TrainConfig
from medgan.errors import ConfigError


def _model_union() -> Any:
    """A union of every kind's config class, told apart by ``kind`` (a missing kind: :data:`DEFAULT_KIND`)."""
    members = tuple(Annotated[cls, Tag(kind)] for kind, cls in MODEL_CONFIGS.items())
    return Annotated[Union[members], Discriminator(model_kind)]  # noqa: UP007 (a runtime union of classes)


#: The ``model:`` section: the config class of its ``kind`` (every class in :data:`MODEL_CONFIGS`).
ModelConfig = _model_union()


class RunConfig(StrictModel):
    """The whole run: one YAML file."""

    name: str = "medgan"
    seed: Seed = 0
    data: DataConfig
    data_b: DataConfig | None = None
    model: ModelConfig = Field(default_factory=lambda: MODEL_CONFIGS[DEFAULT_KIND]())  # type: ignore[valid-type]
    train: TrainConfig = Field(default_factory=TrainConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    segmenter: SegmenterConfig = Field(default_factory=SegmenterConfig)
    seg_study: SegStudyConfig = Field(default_factory=SegStudyConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    gates: GatesConfig | None = Field(default_factory=GatesConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @model_validator(mode="before")
    @classmethod
    def _kind_keys(cls, raw: Any) -> Any:
        """Older spellings moved to today's (:func:`upgrade_raw`), then the kind's ``train:`` defaults."""
        if not isinstance(raw, dict):
            return raw
        raw = upgrade_raw(raw, strict=False)
        model_cls = MODEL_CONFIGS.get(model_kind(raw.get("model") or {}))
        train = raw.get("train")
        if model_cls is not None and model_cls.TRAIN_DEFAULTS and (train is None or isinstance(train, dict)):
            raw = {**raw, "train": {**model_cls.TRAIN_DEFAULTS, **(train or {})}}
        return raw

    @model_validator(mode="after")
    def _second_domain(self) -> RunConfig:
        if self.data_b is not None and not type(self.model).TWO_DATASETS:
            able = sorted(k for k, c in MODEL_CONFIGS.items() if c.TWO_DATASETS)
            raise ValueError(
                f"data_b (a second domain) is only used by model.kind {' / '.join(able)}, not {self.model.kind!r}"
            )
        return self

    @model_validator(mode="after")
    def _lever_arms(self) -> RunConfig:
        """A lever that names no arms varies the arm of the run's own ``model.kind``."""
        for lv in self.study.levers:
            if lv.arms is None:
                lv.arms = [self.model.kind]
        return self


#: Training keys of one kind that sat under ``train:`` before 2026-11-29 (still read there).
MOVED_TRAIN_KEYS = frozenset(
    {"loss", "gp_weight", "r1_gamma", "r2_gamma", "r1_every", "lecam_weight", "lecam_decay", "d_steps",
     "ema_decay", "ema_start", "ema_kimg", "ema_rampup", "diffaugment", "xflip", "class_balance"}
)  # fmt: skip

#: What a run written before checkpoint selection existed did (dotted config keys).
TRAIN_LEGACY: dict[str, object] = {
    "train.select.every": 0,
    "train.select.metric": "fid",
    "train.select.n": 200,
    "train.select.features": "inception",
    "train.select.seed": 777,
}


def legacy_keys(kind: str) -> dict[str, object]:
    """Values a run of ``kind`` written before a key existed behaved as (dotted keys), for ``--resume``."""
    cls = MODEL_CONFIGS.get(kind)
    model = {f"model.{k}": v for k, v in (cls.RESUME_LEGACY if cls is not None else {}).items()}
    return {**model, **TRAIN_LEGACY}


def _upgrade_train(raw: dict[str, Any], strict: bool, where: str) -> dict[str, Any]:
    """A kind's training keys under ``train:`` (before 2026-11-29) moved to ``model:``."""
    train = raw.get("train")
    if not isinstance(train, dict):
        return raw
    legacy = [k for k in train if k in MOVED_TRAIN_KEYS]
    if not legacy:
        return raw
    model = raw.get("model")
    model = dict(model) if isinstance(model, dict) else {}
    kind = model_kind(model)
    fields = MODEL_CONFIGS[kind].model_fields if kind in MODEL_CONFIGS else {}
    train = dict(train)
    for k in legacy:
        value = train.pop(k)
        if k not in fields:
            if strict:
                users = sorted(n for n, c in MODEL_CONFIGS.items() if k in c.model_fields)
                raise ConfigError(
                    f"{where}: train.{k}",
                    f"is a {'/'.join(users)} training key; model.kind {kind!r} does not use it",
                )
            continue
        if k in model:
            if strict:
                raise ConfigError(f"{where}: train.{k}", f"given twice: write it once, as model.{k}")
            continue
        model[k] = value
    return {**raw, "train": train, "model": model}


def _upgrade_study(raw: dict[str, Any], strict: bool, where: str) -> dict[str, Any]:
    """``study.<kind>`` / ``study.<kind>_steps`` (before 2026-12-07) moved to ``study.models`` / ``study.steps``."""
    study = raw.get("study")
    if not isinstance(study, dict):
        return raw
    old = [k for k in study if k in MODEL_CONFIGS or (k.endswith("_steps") and k[:-6] in MODEL_CONFIGS)]
    if not old:
        return raw
    study = dict(study)
    models = dict(study.get("models") or {})
    steps = dict(study.get("steps") or {})
    for k in old:
        value = study.pop(k)
        kind, into, new = (k[:-6], steps, "steps") if k.endswith("_steps") else (k, models, "models")
        if kind in into:
            if strict:
                raise ConfigError(f"{where}: study.{k}", f"given twice: write it once, as study.{new}.{kind}")
            continue
        if value is not None:
            into[kind] = value
    study["models"], study["steps"] = models, steps
    return {**raw, "study": study}


def upgrade_raw(raw: dict[str, Any], strict: bool = True, where: str = "config") -> dict[str, Any]:
    """A raw config dict in today's layout.

    - Configs and checkpoints written before 2026-11-29 held a cGAN's objective (``loss``, EMA,
      regularisers, ``diffaugment``, ...) under ``train:``. A key that the config's ``model.kind``
      has is moved to ``model:``; one that it does not have is refused (``strict``: a user's
      config, where it would be ignored) or dropped (a checkpoint's recorded config, which
      listed every ``train:`` key whatever the kind).
    - Before 2026-12-07 a study named its other kinds' models and lengths by field
      (``study.cyclegan``, ``study.cgan_steps``); they move to ``study.models.<kind>`` and
      ``study.steps.<kind>``.
    """
    return _upgrade_study(_upgrade_train(raw, strict, where), strict, where)


__all__ = ["ModelConfig", "RunConfig", "legacy_keys", "synthetic_arms", "upgrade_raw"]
