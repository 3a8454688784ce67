"""``model.kind: spade``: mask-conditioned synthesis (image from a lesion mask + class) on MONAI's SPADE networks.

The generator is MONAI's ``SPADENet`` (SPADE residual decoder; with ``vae: true`` its encoder
as well, trained as a VAE-GAN); the discriminator MONAI's ``MultiScalePatchDiscriminator`` sees
the image beside its conditioning map, so it judges image *and* mask together (docs/synthesis.md).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from medgan.config.kinds import KindConfig


class SPADEConfig(KindConfig):
    """Mask + class -> slice: a SPADE generator and a multi-scale patch discriminator on (image, map).

    The conditioning map has ``2 + n_classes`` channels: background, lesion (the mask), and the
    class one-hot over the whole slice (so a class without a lesion, e.g. ``normal``, is still
    conditioned on). Network: ``channels`` per encoder level (the decoder runs them in reverse;
    ``None``: chosen from the image size), ``spade_hidden`` channels inside each SPADE block,
    ``z_dim`` (the style code: noise at sampling time, the encoder's code while training with
    ``vae``). Objective (Park et al. 2019, less the VGG term, which would need downloaded
    weights): ``loss`` (hinge or non-saturating), ``fm_weight`` (discriminator feature matching),
    ``kld_weight`` (the VAE's KL term), ``rec_weight`` (L1 of the VAE reconstruction, 0 = off), ``ms_weight`` (mode seeking,
    Mao et al. 2019: two style codes for one mask must give two different images, 0 = off).
    Sampling: each synthetic image's mask is a training mask of its class (or one of a folder
    given to ``medgan generate --masks``), flipped (``mask_flip``), rotated up to
    ``mask_rotate`` degrees, scaled within ``mask_scale``, shifted up to ``mask_shift`` of the
    side and elastically displaced by up to ``mask_elastic`` of the side (a smooth field), all drawn
    from the image's seed.
    """

    kind: Literal["spade"]
    z_dim: int = Field(64, ge=1)
    channels: list[int] | None = None
    spade_hidden: int = Field(64, ge=8)
    vae: bool = True
    d_channels: int = Field(32, ge=8)
    d_scales: int = Field(2, ge=1, le=4)
    d_layers: int = Field(2, ge=1, le=6)
    loss: Literal["hinge", "nonsaturating"] = "hinge"
    fm_weight: float = Field(10.0, ge=0.0)
    kld_weight: float = Field(0.05, ge=0.0)
    rec_weight: float = Field(0.0, ge=0.0)
    ms_weight: float = Field(0.0, ge=0.0)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    ema_start: int = Field(0, ge=0)
    ema_kimg: float | None = Field(10.0, gt=0.0)
    ema_rampup: float | None = Field(0.05, gt=0.0)
    xflip: bool = True
    class_balance: bool = False
    # how the masks a sampler draws from are varied (sampling only: a resume may change them)
    mask_flip: bool = True
    mask_rotate: float = Field(15.0, ge=0.0, le=180.0)
    mask_scale: tuple[float, float] = (0.9, 1.1)
    mask_shift: float = Field(0.1, ge=0.0, le=0.5)
    mask_elastic: float = Field(0.03, ge=0.0, le=0.25)

    #: SPADE's own optimisation (Park et al. 2019): two time-scale Adam, beta1 = 0.
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {"lr_g": 1e-4, "lr_d": 4e-4, "betas": (0.0, 0.9)}

    #: How masks are drawn for sampling, not how the networks train: a resumed run may change them.
    RESUMABLE: ClassVar[frozenset[str]] = frozenset(
        {"mask_flip", "mask_rotate", "mask_scale", "mask_shift", "mask_elastic"}
    )

    @model_validator(mode="after")
    def _check(self) -> SPADEConfig:
        if self.channels is not None and (not self.channels or any(c < 8 for c in self.channels)):
            raise ValueError("channels must be a non-empty list of values >= 8")
        lo, hi = self.mask_scale
        if not 0.0 < lo <= hi:
            raise ValueError("mask_scale must be (lo, hi) with 0 < lo <= hi")
        return self
