"""Synthesizer kinds' ``model:`` sections: one module per kind, found here without a list to edit.

Every module of this package defines one :class:`KindConfig` subclass whose ``kind`` field is a
one-value ``Literal`` (``kind: Literal["cgan"]``). Defining the class registers it in
:data:`MODEL_CONFIGS` under that value, and every module here is imported when the package is,
so a new kind's config class is one new file: ``RunConfig.model``, ``study.models.<kind>``,
``study.steps`` and the study's arm names pick it up. The code that trains and loads the kind is
registered in :mod:`medgan.synthesis.registry`.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar, Literal, get_args, get_origin

from medgan.config.base import StrictModel

#: The kind of a ``model:`` section (or checkpoint) that names none: configs written before kinds existed.
DEFAULT_KIND = "cgan"

#: Every synthesizer kind's config class (the ``model:`` section), by ``model.kind``.
MODEL_CONFIGS: dict[str, type[KindConfig]] = {}


class KindConfig(StrictModel):
    """Base of a synthesizer kind's ``model:`` section: its networks and its objective's keys.

    Class attributes a kind may set:

    - ``TRAIN_DEFAULTS``: values this kind gives the shared ``train:`` keys (:class:`~medgan.config.train.TrainConfig`)
      where a config does not set them (e.g. the CycleGAN's reference optimiser, a diffusion
      model's length), applied before validation;
    - ``STUDY_DEFAULTS``: the model a study arm of this kind starts from when it is not the run's
      own ``model.kind`` (keys given under ``study.models.<kind>`` override them);
    - ``RESUME_LEGACY``: what a run written before one of this kind's keys existed did, so a
      ``--resume`` of such a run may name that value;
    - ``TWO_DATASETS``: whether the kind can learn between two datasets (``data`` and ``data_b``);
    - ``RESUMABLE``: model keys that only say how the weights are *sampled* (not how they are trained),
      so a ``--resume`` may change them;
    - ``ALWAYS_FINGERPRINTED``: the kind's ``study.models`` section is in every study cell's
      fingerprint (the kinds of the first cell caches); a later kind's is only where an arm uses
      it, so adding a kind keeps every finished cell valid.
    """

    kind: str
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {}
    STUDY_DEFAULTS: ClassVar[dict[str, Any]] = {}
    RESUME_LEGACY: ClassVar[dict[str, Any]] = {}
    TWO_DATASETS: ClassVar[bool] = False
    RESUMABLE: ClassVar[frozenset[str]] = frozenset()
    ALWAYS_FINGERPRINTED: ClassVar[bool] = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Register a subclass whose ``kind`` is one literal value in :data:`MODEL_CONFIGS`."""
        super().__pydantic_init_subclass__(**kwargs)
        ann = cls.model_fields["kind"].annotation
        if get_origin(ann) is Literal and len(get_args(ann)) == 1:
            kind = str(get_args(ann)[0])
            if kind in MODEL_CONFIGS and MODEL_CONFIGS[kind] is not cls:
                raise TypeError(f"two config classes for model.kind {kind!r}")
            MODEL_CONFIGS[kind] = cls

    @classmethod
    def study_default(cls, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """The raw model a study arm of this kind trains: :attr:`STUDY_DEFAULTS` under ``given``."""
        kind = get_args(cls.model_fields["kind"].annotation)[0]
        return {**cls.STUDY_DEFAULTS, **(given or {}), "kind": kind}


def resumable_model_keys(kind: str) -> frozenset[str]:
    """The dotted ``model.*`` keys a ``--resume`` of a ``kind`` run may change (its sampler settings)."""
    cls = MODEL_CONFIGS.get(kind)
    return frozenset(f"model.{k}" for k in (cls.RESUMABLE if cls is not None else ()))


def model_kind(v: Any) -> str:
    """The ``kind`` of a raw or validated ``model:`` section (:data:`DEFAULT_KIND` when it names none)."""
    if isinstance(v, dict):
        return str(v.get("kind", DEFAULT_KIND))
    return str(getattr(v, "kind", DEFAULT_KIND))


def synthetic_arms() -> list[str]:
    """Every study arm that mixes synthetic slices in: ``<kind>`` and ``<kind>+classical`` for each kind."""
    return [a for k in MODEL_CONFIGS for a in (k, f"{k}+classical")]


def arm_kind(arm: str) -> str | None:
    """The synthesizer kind a study arm draws from (``diffusion+classical`` -> ``diffusion``); None for
    ``real`` and ``classical``."""
    base = arm.removesuffix("+classical")
    return base if base in MODEL_CONFIGS else None


for _module in pkgutil.iter_modules(__path__):  # each kind's module registers its class
    importlib.import_module(f"{__name__}.{_module.name}")
