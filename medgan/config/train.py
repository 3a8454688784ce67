"""The shared ``train:`` keys of the fit loop, checkpoint selection, and the real-data classifier."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from medgan.config.base import Seed, StrictModel


class SelectConfig(StrictModel):
    """Checkpoint selection on the validation split (docs/synthesis.md): score the EMA generator every
    ``every`` steps, keep the best as ``checkpoints/best``. ``every: 0`` turns it off."""

    every: int = Field(0, ge=0)
    metric: Literal["fid", "kid"] = "fid"
    n: int = Field(200, ge=10)
    features: str = "inception"
    seed: Seed = 777


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
    """A MONAI classifier trained on real slices (label-preservation checks, domain features, the study).

    ``balance`` counters class imbalance in training: ``"none"`` (plain cross-entropy, shuffled
    epochs), ``"loss"`` (inverse-frequency class weights ``N / (C * count)`` in the cross-entropy)
    or ``"sampler"`` (each epoch draws N training slices with replacement, each with probability
    proportional to ``1 / count`` of its class, so classes are seen equally often).

    The default, ``"loss"``, was measured with ``benchmarks/small_n_classifier.py`` (BreastMNIST,
    real-only resnet10 on 10 % and 25 % of the train split, 10 seeds each): its mean test balanced
    accuracy at the validation threshold was the best of the three, level with ``"none"`` (+0.000
    and +0.001) at the same mean AUC (-0.002 and +0.007; the seed-to-seed spread is far larger),
    and it predicted a single class at 0.5 on fewer seeds (5 of 20 against 10 of 20);
    ``"sampler"`` was worse at 25 % (AUC -0.036, balanced accuracy -0.029). Before this default,
    training was unbalanced (``"none"``). The old key ``class_weighted: true`` / ``false`` still
    loads, as ``balance: loss`` / ``none``, and ``cfg.class_weighted`` reads ``balance == "loss"``.

    Binary classifiers predict at a decision threshold on P(class 1) chosen on the validation split
    (Youden's J; ``TrainedClassifier.threshold``), multi-class ones by argmax.

    ``epoch_samples``: the samples an epoch trains on, at least one pass. A training set smaller
    than that is passed over again, each pass in its own seeded order, up to exactly that many
    (the last pass cut short), so classifiers of different training-set sizes take the same number
    of optimizer steps per epoch (``patience`` and ``epochs`` count the same steps). 0 (default):
    one pass per epoch, as before. The study sets it per fraction (``study.equal_steps``).
    """

    arch: Literal["resnet10", "resnet18", "densenet121"] = "resnet10"
    width: int = Field(16, ge=4)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(8, ge=1)
    epoch_samples: int = Field(0, ge=0)
    balance: Literal["none", "loss", "sampler"] = "loss"
    augment: bool = True
    seed: Seed = 0
    device: str = "auto"

    @model_validator(mode="before")
    @classmethod
    def _class_weighted(cls, data: Any) -> Any:
        """The old ``class_weighted`` key: ``true`` is ``balance: loss``, ``false`` is ``balance: none``."""
        if not isinstance(data, dict) or "class_weighted" not in data:
            return data
        data = dict(data)
        old = data.pop("class_weighted")
        if not isinstance(old, bool):
            raise ValueError(
                "class_weighted must be true or false (it is now balance: none | loss | sampler)"
            )
        if "balance" not in data:
            data["balance"] = "loss" if old else "none"
        elif old != (data["balance"] == "loss"):
            raise ValueError(
                f"class_weighted: {str(old).lower()} contradicts balance: {data['balance']}"
                " (class_weighted is the old name of balance: loss; keep only balance)"
            )
        return data

    @property
    def class_weighted(self) -> bool:
        """``balance == "loss"`` (the old name of the inverse-frequency loss weights)."""
        return self.balance == "loss"

    @class_weighted.setter
    def class_weighted(self, value: bool) -> None:
        if value:
            self.balance = "loss"
        elif self.balance == "loss":
            self.balance = "none"


class SegmenterConfig(StrictModel):
    """A MONAI segmentation network trained on (image, mask) pairs: mask fidelity and the
    segmentation CAS of a mask-conditioned synthesizer (docs/metrics.md).

    ``arch``: MONAI ``UNet`` (``channels`` per level, stride 2, ``res_units`` residual units) or
    ``BasicUNet``. Loss: MONAI ``DiceCELoss`` on two classes (background, lesion); the weights
    with the best validation Dice (MONAI ``DiceMetric`` on the lesion, images with a lesion) are
    kept, training stops after ``patience`` epochs without a better one. ``augment``: classical
    augmentation applied to image and mask together (MONAI ``RandFlipd`` and ``RandAffined``,
    bilinear for the image, nearest for the mask). ``epoch_samples``: as the classifier's (0: one pass).
    """

    arch: Literal["unet", "basicunet"] = "unet"
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64, 128])
    res_units: int = Field(2, ge=0, le=4)
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    patience: int = Field(8, ge=1)
    epoch_samples: int = Field(0, ge=0)
    augment: bool = True
    seed: Seed = 0
    device: str = "auto"

    @model_validator(mode="after")
    def _levels(self) -> SegmenterConfig:
        if len(self.channels) < 2 or any(c < 4 for c in self.channels):
            raise ValueError("channels needs at least two levels of >= 4 channels")
        return self
