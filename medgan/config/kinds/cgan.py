"""``model.kind: cgan``: the class-conditional GAN's networks and objective (docs/synthesis.md)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from medgan.config.base import StrictModel
from medgan.config.kinds import KindConfig


class SpectralNormConfig(StrictModel):
    """Where spectral normalisation wraps conv / linear / embedding weights."""

    generator: bool = False
    discriminator: bool = True


class CGANConfig(KindConfig):
    """Class-conditional GAN: noise + class -> slice (see docs/synthesis.md for every option)."""

    kind: Literal["cgan"] = "cgan"
    ALWAYS_FINGERPRINTED: ClassVar[bool] = True  # in every study fingerprint (the first cell caches)
    z_dim: int = Field(128, ge=1)
    embed_dim: int = Field(64, ge=1)
    g_channels: int = Field(128, ge=8)
    d_channels: int = Field(32, ge=8)
    g_max_channels: int = Field(512, ge=8)
    d_max_channels: int = Field(512, ge=8)
    g_norm: Literal["group", "batch", "instance", "none"] = "group"
    g_res_units: int = Field(1, ge=0, le=4)
    d_res_units: int = Field(1, ge=0, le=4)
    spectral_norm: SpectralNormConfig = Field(default_factory=SpectralNormConfig)
    init: Literal["xavier", "he", "normal", "default"] = "xavier"
    g_cond: Literal["input", "norm"] = "norm"
    d_arch: Literal["patch", "global"] = "global"
    mbstd_group: int = Field(4, ge=0)
    # the objective and what trains with it (under ``train:`` before 2026-11-29; still read there)
    loss: Literal["hinge", "nonsaturating", "wgan-gp", "rpgan"] = "hinge"
    gp_weight: float = Field(10.0, ge=0.0)
    r1_gamma: float = Field(0.0, ge=0.0)
    r2_gamma: float = Field(0.0, ge=0.0)
    r1_every: int = Field(16, ge=1)
    lecam_weight: float = Field(0.0, ge=0.0)
    lecam_decay: float = Field(0.99, ge=0.0, lt=1.0)
    d_steps: int = Field(1, ge=1)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    ema_start: int = Field(0, ge=0)
    ema_kimg: float | None = Field(10.0, gt=0.0)
    ema_rampup: float | None = Field(0.05, gt=0.0)
    diffaugment: Literal["auto"] | list[Literal["translation", "cutout", "color"]] = Field(
        default_factory=lambda: ["translation", "cutout", "color"]
    )
    xflip: bool = False
    class_balance: bool = False

    #: Defaults this kind gives the shared ``train:`` keys (none: the shared defaults are the cGAN's).
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {}
    #: What a run without the small-data recipe's keys did (a resume may name these values).
    RESUME_LEGACY: ClassVar[dict[str, Any]] = {
        "g_cond": "input",
        "d_arch": "patch",
        "mbstd_group": 0,
        "ema_kimg": None,
        "ema_rampup": 0.05,
        "r1_gamma": 0.0,
        "r2_gamma": 0.0,
        "r1_every": 16,
        "lecam_weight": 0.0,
        "lecam_decay": 0.99,
        "xflip": False,
    }


#: What a checkpoint written before a model key existed was built with: a key missing from a
#: checkpoint's recorded model config takes this value, not today's default.
CGAN_LEGACY = {"g_cond": "input", "d_arch": "patch", "mbstd_group": 0}
