"""``model.kind: diffusion``: a class-conditional denoising diffusion model (docs/synthesis.md).

MONAI's ``DiffusionModelUNet`` with the class as ``num_class_embeds`` (plus a null class for
classifier-free guidance), trained with MONAI's DDPM noise schedule and sampled with DDIM.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from medgan.config.kinds import KindConfig


class DiffusionConfig(KindConfig):
    """Class-conditional diffusion: noise + class -> slice by DDIM over a denoising UNet.

    Network (``None``: chosen from the image size, docs/synthesis.md): ``channels`` per level,
    ``attention_levels`` (self-attention at a level), ``num_res_blocks`` per level,
    ``head_channels`` per attention head. Objective: the DDPM noise ``schedule`` over
    ``num_train_timesteps`` steps (``beta_start`` / ``beta_end`` for the linear ones), the
    network's ``prediction_type`` (noise, velocity or the clean image), ``p_uncond`` (how often a
    training label is replaced by the null class, so one network is both conditional and
    unconditional), ``grad_clip``, and an EMA of the weights for sampling (``ema_kimg``
    half-life in thousands of images, ramped up by ``ema_rampup``; ``ema_kimg: null`` uses the
    fixed ``ema_decay``). Sampling: deterministic DDIM in ``sampling_steps`` steps with
    classifier-free ``guidance_scale`` (1 = the conditional model alone); checkpoint selection
    and sample grids use the cheaper ``select_sampling_steps``.
    """

    kind: Literal["diffusion"]
    ALWAYS_FINGERPRINTED: ClassVar[bool] = True  # in every study fingerprint (the first cell caches)
    channels: list[int] | None = None
    attention_levels: list[bool] | None = None
    num_res_blocks: int | None = Field(None, ge=1, le=4)
    head_channels: int = Field(64, ge=8)
    num_train_timesteps: int = Field(1000, ge=10, le=10_000)
    schedule: Literal["linear_beta", "scaled_linear_beta", "cosine"] = "cosine"
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0)
    beta_end: float = Field(2e-2, gt=0.0, lt=1.0)
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "v_prediction"
    p_uncond: float = Field(0.1, ge=0.0, lt=1.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    ema_start: int = Field(0, ge=0)
    ema_kimg: float | None = Field(50.0, gt=0.0)
    ema_rampup: float | None = Field(0.1, gt=0.0)
    sampling_steps: int = Field(25, ge=1)
    guidance_scale: float = Field(2.0, ge=0.0)
    select_sampling_steps: int = Field(10, ge=1)
    clip_sample: bool = True
    xflip: bool = False
    class_balance: bool = False

    #: A diffusion model's own optimisation: Adam (0.9, 0.999), a longer run than a GAN's.
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "steps": 3000,
        "lr_g": 2e-4,
        "betas": (0.9, 0.999),
        "sample_every": 1000,
        "checkpoint_every": 1000,
    }

    #: How the weights are sampled, not trained: a resumed run may change them.
    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"sampling_steps", "guidance_scale"})

    @model_validator(mode="after")
    def _network(self) -> DiffusionConfig:
        if self.channels is not None:
            if not self.channels or any(c < 8 for c in self.channels):
                raise ValueError("channels must be a non-empty list of values >= 8")
            if self.attention_levels is not None and len(self.attention_levels) != len(self.channels):
                raise ValueError("attention_levels needs one entry per level of channels")
        elif self.attention_levels is not None:
            raise ValueError("attention_levels needs channels (both or neither; null picks both)")
        if (
            self.sampling_steps > self.num_train_timesteps
            or self.select_sampling_steps > self.num_train_timesteps
        ):
            raise ValueError("sampling steps cannot exceed num_train_timesteps")
        if self.beta_start >= self.beta_end:
            raise ValueError("beta_start must be below beta_end")
        return self
