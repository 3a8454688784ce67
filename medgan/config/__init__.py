"""Typed run configuration, loaded from YAML with ``--set key.path=value`` overrides.

Unknown keys, wrong types and missing files fail with a :class:`~medgan.errors.ConfigError`
naming the file and the key. Paths in a config are relative to the data directory
(``--data-dir``, else ``$MEDGAN_DATA_DIR``, else the user cache).

One module per section: :mod:`~medgan.config.data` (``data:``), :mod:`~medgan.config.train`
(``train:``, ``classifier:``), :mod:`~medgan.config.study` (``study:``, ``pipeline:``,
``gates:``, ``augment:``), one module per synthesizer kind under :mod:`medgan.config.kinds`
(``model:``), :mod:`~medgan.config.run` (the whole file and the upgrades of older layouts) and
:mod:`~medgan.config.loader` (YAML, overrides, errors). Everything public is importable from
``medgan.config``.
"""

from medgan.config.base import StrictModel
from medgan.config.data import (
    DataConfig,
    DicomSource,
    ImageFolderSource,
    IntensityConfig,
    MedMNISTSource,
    NiftiCase,
    NiftiSource,
    Source,
    SplitConfig,
    VolumeOptions,
    Window,
)
from medgan.config.kinds import (
    DEFAULT_KIND,
    MODEL_CONFIGS,
    KindConfig,
    arm_kind,
    model_kind,
    resumable_model_keys,
    synthetic_arms,
)
from medgan.config.kinds.cgan import CGAN_LEGACY, CGANConfig, SpectralNormConfig
from medgan.config.kinds.cyclegan import CycleGANConfig
from medgan.config.loader import (
    MAX_CONFIG_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
    parse_yaml,
    read_yaml,
    validation_error_message,
)
from medgan.config.run import (
    MOVED_TRAIN_KEYS,
    ModelConfig,
    RunConfig,
    legacy_keys,
    upgrade_raw,
)
from medgan.config.study import (
    AugmentConfig,
    GatesConfig,
    LeverConfig,
    PipelineConfig,
    SegStudyConfig,
    StudyConfig,
    StudyModels,
)
from medgan.config.train import ClassifierConfig, SegmenterConfig, SelectConfig, TrainConfig

__all__ = [
    "CGAN_LEGACY",
    "DEFAULT_KIND",
    "MAX_CONFIG_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "MODEL_CONFIGS",
    "MOVED_TRAIN_KEYS",
    "AugmentConfig",
    "CGANConfig",
    "ClassifierConfig",
    "CycleGANConfig",
    "DataConfig",
    "DicomSource",
    "GatesConfig",
    "ImageFolderSource",
    "IntensityConfig",
    "KindConfig",
    "LeverConfig",
    "MedMNISTSource",
    "ModelConfig",
    "NiftiCase",
    "NiftiSource",
    "PipelineConfig",
    "RunConfig",
    "SegStudyConfig",
    "SegmenterConfig",
    "SelectConfig",
    "Source",
    "SpectralNormConfig",
    "SplitConfig",
    "StrictModel",
    "StudyConfig",
    "StudyModels",
    "TrainConfig",
    "VolumeOptions",
    "Window",
    "apply_overrides",
    "arm_kind",
    "config_from_dict",
    "dump_config",
    "legacy_keys",
    "load_config",
    "model_kind",
    "parse_yaml",
    "read_yaml",
    "resumable_model_keys",
    "synthetic_arms",
    "upgrade_raw",
    "validation_error_message",
]
