"""Generator and discriminator for the class-conditional GAN, composed from ``monai.networks``.

* :class:`UpsampleGenerator` is MONAI's :class:`~monai.networks.nets.Generator` (linear
  projection to a small start image, then a stack of layers) with each layer built as
  nearest-neighbour :class:`~monai.networks.blocks.UpSample` + :class:`~monai.networks.blocks.Convolution`
  + :class:`~monai.networks.blocks.ResidualUnit` instead of a transposed convolution (which
  leaves checkerboard artefacts); MONAI's documented extension point ``_get_layer`` does this.
* :class:`ConditionalGenerator` adds the class embedding (MONAI has none): the latent vector is
  ``[z, embed(y)]``; a ``tanh`` maps the output to [-1, 1].
* :class:`ProjectionDiscriminator` stacks MONAI ``ResidualUnit`` / ``Convolution`` blocks with
  stride 2, sums the final features over space and adds Miyato & Koyama's projection head
  ``<embed(y), phi(x)>`` to a linear output (the head is the one layer written here).

Resolution and channels come from the data: any (H, W) that halves down to a start size
between 4 and 7 pixels on both axes, e.g. 28 (7 -> 14 -> 28), 32, 64, 128, 256; 1 or 3 channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit, UpSample
from monai.networks.nets import Generator
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from medgan.config import CGANConfig

LEAKY = ("leakyrelu", {"negative_slope": 0.2, "inplace": False})


def plan_resolution(hw: Sequence[int]) -> tuple[int, int, int]:
    """``(n_up, start_h, start_w)``: the most 2x upsamplings that reach ``hw`` from a start of 4-7 px.

    Raises ``ValueError`` when no such plan exists (e.g. 45 x 120); choose ``data.size`` then.
    """
    h, w = int(hw[0]), int(hw[1])
    best = None
    for n in range(0, 12):
        if h % (2**n) or w % (2**n):
            break
        sh, sw = h // 2**n, w // 2**n
        if min(sh, sw) < 4:
            break
        if max(sh, sw) <= 16:
            best = (n, sh, sw)
    if best is None or (min(best[1], best[2]) > 7 and best[0] == 0):
        raise ValueError(
            f"image size {h}x{w} cannot be built by 2x upsampling from a 4-7 px start; set data.size"
        )
    return best


def _norm(kind: str, channels: int) -> tuple | str | None:
    if kind == "none":
        return None
    if kind == "group":
        return ("group", {"num_groups": min(8, channels)})
    return kind


class UpsampleGenerator(Generator):
    """MONAI ``Generator`` whose layers upsample by interpolation then convolve (no transposed conv)."""

    def _get_layer(self, in_channels: int, out_channels: int, strides: int, is_last: bool) -> nn.Sequential:
        layers: list[nn.Module] = []
        if strides > 1:
            layers.append(
                UpSample(
                    spatial_dims=self.dimensions,
                    in_channels=in_channels,
                    out_channels=in_channels,
                    scale_factor=strides,
                    mode="nontrainable",
                    pre_conv=None,
                    interp_mode="nearest",
                    align_corners=None,
                )
            )
        norm = self.norm if not is_last else None
        layers.append(
            Convolution(
                spatial_dims=self.dimensions,
                in_channels=in_channels,
                out_channels=out_channels,
                kernel_size=self.kernel_size,
                act=self.act,
                norm=norm,
                bias=self.bias,
                conv_only=is_last,
            )
        )
        if self.num_res_units > 0 and not is_last:
            layers.append(
                ResidualUnit(
                    spatial_dims=self.dimensions,
                    in_channels=out_channels,
                    out_channels=out_channels,
                    kernel_size=self.kernel_size,
                    subunits=self.num_res_units,
                    act=self.act,
                    norm=self.norm,
                    bias=self.bias,
                )
            )
        return nn.Sequential(*layers)


class ConditionalGenerator(nn.Module):
    """``G(z, y)``: class embedding concatenated to the noise, MONAI generator body, ``tanh`` output."""

    def __init__(self, cfg: CGANConfig, n_classes: int, out_shape: Sequence[int]) -> None:
        super().__init__()
        c, h, w = (int(v) for v in out_shape)
        n_up, sh, sw = plan_resolution((h, w))
        self.z_dim, self.n_classes, self.out_shape = cfg.z_dim, n_classes, (c, h, w)
        self.embed = nn.Embedding(n_classes, cfg.embed_dim)
        c0 = min(cfg.g_channels * 2 ** max(n_up - 2, 0), cfg.g_max_channels)  # deeper nets start wider
        chans = [max(c0 // 2 ** (i + 1), 32) for i in range(n_up)] + [c]
        strides = [2] * n_up + [1]
        self.body = UpsampleGenerator(
            latent_shape=(cfg.z_dim + cfg.embed_dim,),
            start_shape=(c0, sh, sw),
            channels=chans,
            strides=strides,
            kernel_size=3,
            num_res_units=cfg.g_res_units,
            act=("relu", {"inplace": False}),
            norm=_norm(cfg.g_norm, min([*chans[:-1], c0])),
        )
        self.start_act = nn.ReLU()

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], shape (B, C, H, W)."""
        latent = torch.cat([z, self.embed(y)], dim=1)
        x = self.body.reshape(self.body.linear(latent))
        x = self.body.conv(self.start_act(x))
        return torch.tanh(x)


class ProjectionDiscriminator(nn.Module):
    """``D(x, y)`` = ``linear(phi(x)) + <embed(y), phi(x)>`` with ``phi`` a stack of MONAI stride-2 blocks."""

    def __init__(self, cfg: CGANConfig, n_classes: int, in_shape: Sequence[int]) -> None:
        super().__init__()
        c, h, w = (int(v) for v in in_shape)
        n_down, _, _ = plan_resolution((h, w))
        n_down = max(n_down, 1)
        blocks: list[nn.Module] = [
            Convolution(2, c, cfg.d_channels, kernel_size=3, act=LEAKY, norm=None, adn_ordering="NDA")
        ]
        ch = cfg.d_channels
        for _ in range(n_down):
            out = min(ch * 2, cfg.d_max_channels)
            if cfg.d_res_units > 0:
                blocks.append(
                    ResidualUnit(
                        2, ch, out, strides=2, kernel_size=3, subunits=cfg.d_res_units, act=LEAKY, norm=None
                    )
                )
            else:
                blocks.append(Convolution(2, ch, out, strides=2, kernel_size=3, act=LEAKY, norm=None))
            ch = out
        self.features = nn.Sequential(*blocks)
        self.act = nn.LeakyReLU(0.2)
        self.linear = nn.Linear(ch, 1)
        self.embed = nn.Embedding(n_classes, ch)
        self.feature_dim = ch

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unbounded scores, shape (B,)."""
        h = self.act(self.features(x)).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)


def init_weights(module: nn.Module, scheme: str) -> None:
    """Initialise conv / linear / embedding weights: ``xavier``, ``he``, ``normal`` (0, 0.02) or MONAI/torch ``default``."""
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "he":
                nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            elif scheme == "normal":
                nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Wrap every conv, linear and embedding weight in ``module`` with spectral normalisation."""
    for m in list(module.modules()):
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
            spectral_norm(m)
    return module


def build_cgan(
    cfg: CGANConfig, n_classes: int, shape: Sequence[int]
) -> tuple[ConditionalGenerator, ProjectionDiscriminator]:
    """Generator and discriminator for images of ``shape`` (C, H, W) and ``n_classes`` classes."""
    g = ConditionalGenerator(cfg, n_classes, shape)
    d = ProjectionDiscriminator(cfg, n_classes, shape)
    init_weights(g, cfg.init)
    init_weights(d, cfg.init)
    if cfg.spectral_norm.generator:
        apply_spectral_norm(g)
    if cfg.spectral_norm.discriminator:
        apply_spectral_norm(d)
    return g, d


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
