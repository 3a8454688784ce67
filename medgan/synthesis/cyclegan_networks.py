"""CycleGAN networks composed from ``monai.networks``.

* :class:`ResnetGenerator` — the reference ResNet generator (Johnson et al.; Zhu et al. 2017):
  reflection-padded 7x7 MONAI ``Convolution``, ``n_downsampling`` stride-2 convolutions,
  ``n_res_blocks`` residual blocks (two reflection-padded 3x3 MONAI ``Convolution`` blocks and a
  skip), transposed-convolution upsampling (MONAI ``Convolution(is_transposed=True)``), a
  reflection-padded 7x7 output convolution and ``tanh``. MONAI's ``Convolution`` has no
  reflection padding, so ``nn.ReflectionPad2d`` precedes it, as in the reference.
* ``unet`` option: MONAI ``UNet`` (residual units) with a ``tanh`` output.
* Discriminators: MONAI ``PatchDiscriminator`` (70x70-style PatchGAN) or
  ``MultiScalePatchDiscriminator``; both return lists of feature maps whose last entry is the
  patch score map, the input MONAI's ``PatchAdversarialLoss`` expects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import MultiScalePatchDiscriminator, PatchDiscriminator, UNet
from torch import nn

from medgan.config import CycleGANConfig
from medgan.synthesis.networks import init_weights

_NORMS = {"instance": "INSTANCE", "batch": "BATCH", "group": ("GROUP", {"num_groups": 8})}


def _conv(cin: int, cout: int, k: int, norm: object, act: object = "RELU", **kw: object) -> Convolution:
    return Convolution(2, cin, cout, kernel_size=k, act=act, norm=norm, bias=True, **kw)


class ResnetBlock(nn.Module):
    """``x + [pad, conv3x3, norm, relu, pad, conv3x3, norm](x)`` from MONAI convolutions."""

    def __init__(self, channels: int, norm: object) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            _conv(channels, channels, 3, norm, padding=0),
            nn.ReflectionPad2d(1),
            _conv(channels, channels, 3, norm, act=None, padding=0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update."""
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """The reference CycleGAN ResNet generator, image (C, H, W) -> image, output in [-1, 1]."""

    def __init__(self, channels: int, ngf: int, n_blocks: int, n_down: int, norm: object) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), _conv(channels, ngf, 7, norm, padding=0)]
        ch = ngf
        for _ in range(n_down):
            layers.append(_conv(ch, ch * 2, 3, norm, strides=2, padding=1))
            ch *= 2
        layers += [ResnetBlock(ch, norm) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers.append(
                _conv(ch, ch // 2, 3, norm, strides=2, padding=1, output_padding=1, is_transposed=True)
            )
            ch //= 2
        layers += [
            nn.ReflectionPad2d(3),
            Convolution(2, ch, channels, kernel_size=7, padding=0, conv_only=True),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translated image."""
        return self.model(x)


class UNetGenerator(nn.Module):
    """MONAI ``UNet`` with a ``tanh`` output."""

    def __init__(self, channels: int, ngf: int, n_down: int, norm: object) -> None:
        super().__init__()
        chans = tuple(ngf * 2**i for i in range(n_down + 1))
        self.unet = UNet(2, channels, channels, chans, (2,) * n_down, num_res_units=2, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translated image."""
        return torch.tanh(self.unet(x))


def default_res_blocks(size: Sequence[int]) -> int:
    """The reference choice: 9 residual blocks at >= 256 px, 6 below."""
    return 9 if min(size) >= 256 else 6


def default_d_layers(size: Sequence[int]) -> int:
    """PatchGAN depth: 3 (the 70x70 PatchGAN) at >= 64 px, 2 below (a 28-px input keeps a 5x5 score map)."""
    return 3 if min(size) >= 64 else 2


def build_cyclegan(
    cfg: CycleGANConfig, shape: Sequence[int]
) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """``(G_AB, G_BA, D_A, D_B)`` for images of ``shape`` (C, H, W)."""
    c, h, w = (int(v) for v in shape)
    factor = 2**cfg.n_downsampling
    if h % factor or w % factor:
        raise ValueError(
            f"image size {h}x{w} must be divisible by {factor} for {cfg.n_downsampling} downsamplings; set data.size"
        )
    norm = _NORMS[cfg.norm]

    def gen() -> nn.Module:
        if cfg.generator == "unet":
            return UNetGenerator(c, cfg.g_channels, cfg.n_downsampling, norm)
        return ResnetGenerator(
            c, cfg.g_channels, cfg.n_res_blocks or default_res_blocks((h, w)), cfg.n_downsampling, norm
        )

    if cfg.d_scales > 1:  # MONAI's scale i has (i + 1) x num_layers_d layers: keep the deepest >= 4 px
        layers = cfg.d_layers or max(1, int(math.log2(min(h, w) / 4)) // cfg.d_scales)
    else:
        layers = cfg.d_layers or default_d_layers((h, w))

    def disc() -> nn.Module:
        if cfg.d_scales > 1:
            return MultiScalePatchDiscriminator(
                num_d=cfg.d_scales,
                num_layers_d=layers,
                spatial_dims=2,
                channels=cfg.d_channels,
                in_channels=c,
                norm=norm,
                minimum_size_im=min(h, w),
            )
        return PatchDiscriminator(2, cfg.d_channels, c, num_layers_d=layers, norm=norm)

    nets = (gen(), gen(), disc(), disc())
    for n in nets:
        init_weights(n, cfg.init)
    return nets


def patch_scores(d: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The score maps of a (multi-scale) patch discriminator, as a list (one per scale)."""
    out = d(x)
    if isinstance(d, MultiScalePatchDiscriminator):
        return list(out[0])
    return [out[-1]]
