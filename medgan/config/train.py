"""The shared ``train:`` keys of the fit loop, checkpoint selection, and the real-data classifier."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medgan.config.base import StrictModel


class SelectConfig(StrictModel):
    """Checkpoint selection on the validation split (docs/synthesis.md): score the EMA generator every
    ``every`` steps, keep the best as ``checkpoints/best``. ``every: 0`` turns it off."""

    every: int = Field(0, ge=0)
    metric: Literal["fid", "kid"] = "fid"
    n: int = Field(200, ge=10)
    features: str = "inception"
    seed: int = 777


class TrainConfig(StrictModel):
    """Optimisation, logging and checkpointing of the shared fit loop (every synthesizer kind).

    Keys of one synthesizer's objective (a cGAN's loss, EMA, regularisers, DiffAugment) live in
    its ``model:`` section. A kind may change the defaults of these shared keys (the CycleGAN's
    reference settings: :attr:`CycleGANConfig.TRAIN_DEFAULTS`).
    """

    steps: int = Field(2000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr_g: float = Field(2e-4, gt=0.0)
    lr_d: float = Field(2e-4, gt=0.0)
    betas: tuple[float, float] = (0.0, 0.99)
    lr_schedule: Literal["constant", "linear_decay"] = "constant"
    decay_start: float = Field(0.5, ge=0.0, le=1.0)
    select: SelectConfig = Field(default_factory=SelectConfig)
    sample_every: int = Field(250, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_last: int = Field(3, ge=1)
    log_every: int = Field(10, ge=1)
    samples_per_class: int = Field(8, ge=1, le=64)
    device: str = "auto"
    amp: Literal["auto", "bf16", "bf16-if-native", "off"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: bool = False
    #: Experiment trackers for training runs and studies (medgan.training.tracking); None:
    #: TensorBoard when it is installed, [] for none.
    tracking: list[Literal["tensorboard", "mlflow"]] | None = None

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu") and not v.startswith("cuda") and v != "mps":
            raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
        return v


class ClassifierConfig(StrictModel):
    """A MONAI classifier trained on real slices (label-preservation checks, domain features, the study)."""

    arch: Literal["resnet10", "resnet18", "densenet121"] = "resnet10"
    width: int = Field(16, ge=4)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(8, ge=1)
    class_weighted: bool = False
    augment: bool = True
    seed: int = 0
    device: str = "auto"
