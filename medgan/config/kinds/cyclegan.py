"""``model.kind: cyclegan``: unpaired translation between two domains (docs/synthesis.md)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from medgan.config.kinds import KindConfig


class CycleGANConfig(KindConfig):
    """Unpaired translation between two domains (healthy <-> lesion); see docs/synthesis.md."""

    kind: Literal["cyclegan"]
    ALWAYS_FINGERPRINTED: ClassVar[bool] = True  # in every study fingerprint (the first cell caches)
    domain_a: str | int = 0
    domain_b: str | int = 1
    generator: Literal["resnet", "unet"] = "resnet"
    g_channels: int = Field(64, ge=4)
    n_res_blocks: int | None = Field(None, ge=1)
    n_downsampling: int = Field(2, ge=1, le=4)
    d_channels: int = Field(64, ge=4)
    d_layers: int | None = Field(None, ge=1, le=5)
    d_scales: int = Field(1, ge=1, le=4)
    norm: Literal["instance", "batch", "group"] = "instance"
    lambda_cycle: float = Field(10.0, ge=0.0)
    lambda_identity: float = Field(0.5, ge=0.0)
    pool_size: int = Field(50, ge=0)
    init: Literal["xavier", "he", "normal", "default"] = "normal"
    diffaugment: list[Literal["translation", "cutout", "color"]] = Field(default_factory=list)

    #: The reference CycleGAN optimisation (Zhu et al. 2017): the shared ``train:`` keys take these
    #: values where a config does not set them.
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "betas": (0.5, 0.999),
        "lr_schedule": "linear_decay",
        "batch_size": 8,
    }
    #: A study's CycleGAN arm (when the run's own model is another kind) starts from 32 channels
    #: and 6 residual blocks: a quarter of the reference generator's cost at 28 px.
    STUDY_DEFAULTS: ClassVar[dict[str, Any]] = {"g_channels": 32, "n_res_blocks": 6}
    #: Translates between two classes of one dataset or between two datasets (``data_b``).
    TWO_DATASETS: ClassVar[bool] = True
