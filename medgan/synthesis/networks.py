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


def generator_plan(cfg: CGANConfig, out_shape: Sequence[int]) -> tuple[int, int, int, int, int, list[int]]:
    """Both generators' layout: ``(channels, n_up, start_h, start_w, start_width, widths)``.

    The start image is ``g_channels`` wide at <= 28 px, doubled per extra upsampling (deeper nets
    start wider, capped by ``g_max_channels``); each upsampling halves the width, down to 32.
    """
    c, h, w = (int(v) for v in out_shape)
    n_up, sh, sw = plan_resolution((h, w))
    c0 = min(cfg.g_channels * 2 ** max(n_up - 2, 0), cfg.g_max_channels)
    return c, n_up, sh, sw, c0, [max(c0 // 2 ** (i + 1), 32) for i in range(n_up)]


class ConditionalGenerator(nn.Module):
    """``G(z, y)``: class embedding concatenated to the noise, MONAI generator body, ``tanh`` output."""

    def __init__(self, cfg: CGANConfig, n_classes: int, out_shape: Sequence[int]) -> None:
        super().__init__()
        c, n_up, sh, sw, c0, widths = generator_plan(cfg, out_shape)
        self.z_dim, self.n_classes, self.out_shape = cfg.z_dim, n_classes, tuple(int(v) for v in out_shape)
        self.embed = nn.Embedding(n_classes, cfg.embed_dim)
        chans = [*widths, c]
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


def down_path(
    cfg: CGANConfig, c: int, h: int, w: int, n_down: int | None
) -> tuple[nn.Sequential, int, int, int]:
    """The discriminators' feature path: a 3x3 stem, then stride-2 MONAI ``ResidualUnit`` (or
    ``Convolution``) blocks, doubling the width up to ``d_max_channels``.

    ``n_down`` blocks, or (``None``) as many as bring the map to at most 4 x 4. Returns the
    path and its output (channels, height, width).
    """
    blocks: list[nn.Module] = [
        Convolution(2, c, cfg.d_channels, kernel_size=3, act=LEAKY, norm=None, adn_ordering="NDA")
    ]
    ch, k = cfg.d_channels, 0
    while (k < n_down) if n_down is not None else max(h, w) > 4:
        out = min(ch * 2, cfg.d_max_channels)
        if cfg.d_res_units > 0:
            blocks.append(
                ResidualUnit(
                    2, ch, out, strides=2, kernel_size=3, subunits=cfg.d_res_units, act=LEAKY, norm=None
                )
            )
        else:
            blocks.append(Convolution(2, ch, out, strides=2, kernel_size=3, act=LEAKY, norm=None))
        ch, h, w, k = out, (h + 1) // 2, (w + 1) // 2, k + 1
    return nn.Sequential(*blocks), ch, h, w


class ProjectionDiscriminator(nn.Module):
    """``D(x, y)`` = ``linear(phi(x)) + <embed(y), phi(x)>`` with ``phi`` a stack of MONAI stride-2 blocks."""

    def __init__(self, cfg: CGANConfig, n_classes: int, in_shape: Sequence[int]) -> None:
        super().__init__()
        c, h, w = (int(v) for v in in_shape)
        n_down, _, _ = plan_resolution((h, w))
        n_down = max(n_down, 1)
        self.features, ch, _, _ = down_path(cfg, c, h, w, n_down)
        self.act = nn.LeakyReLU(0.2)
        self.linear = nn.Linear(ch, 1)
        self.embed = nn.Embedding(n_classes, ch)
        self.feature_dim = ch

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unbounded scores, shape (B,)."""
        h = self.act(self.features(x)).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)


class ConditionalGroupNorm(nn.Module):
    """GroupNorm without its own affine, then a per-class gain and bias (conditional normalisation).

    ``out = GN(x) * (1 + gain[y]) + bias[y]`` (gain and bias start at 0, i.e. plain GroupNorm):
    the class label shapes the features at every generator block (Dumoulin et al. 2017; the
    conditional BatchNorm of SN-GAN / BigGAN, per-sample GroupNorm here so that an image does
    not depend on its batch). MONAI has no conditional normalisation layer; this is the one written here.
    """

    def __init__(self, channels: int, n_classes: int, groups: int = 8) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, channels), channels, affine=False)
        self.gain = nn.Embedding(n_classes, channels)
        self.bias = nn.Embedding(n_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Normalised ``x`` (B, C, H, W) scaled and shifted by class ``y`` (B,)."""
        g = 1.0 + self.gain(y)[:, :, None, None]
        return self.norm(x) * g + self.bias(y)[:, :, None, None]


class CondResBlockUp(nn.Module):
    """BigGAN-style residual up-block: CGN -> ReLU -> 2x nearest -> conv -> CGN -> ReLU -> conv, plus a 1x1 shortcut.

    Convolutions and the upsampling are MONAI ``Convolution`` / ``UpSample`` blocks.
    """

    def __init__(self, cin: int, cout: int, n_classes: int, up: bool = True) -> None:
        super().__init__()
        self.n1 = ConditionalGroupNorm(cin, n_classes)
        self.n2 = ConditionalGroupNorm(cout, n_classes)
        self.up: nn.Module = (
            UpSample(
                2,
                cin,
                cin,
                scale_factor=2,
                mode="nontrainable",
                pre_conv=None,
                interp_mode="nearest",
                align_corners=None,
            )
            if up
            else nn.Identity()
        )
        self.c1 = Convolution(2, cin, cout, kernel_size=3, conv_only=True)
        self.c2 = Convolution(2, cout, cout, kernel_size=3, conv_only=True)
        self.sc = Convolution(2, cin, cout, kernel_size=1, conv_only=True)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Upsampled features (B, cout, 2H, 2W) conditioned on class ``y``."""
        h = self.c1(self.up(self.act(self.n1(x, y))))
        h = self.c2(self.act(self.n2(h, y)))
        return h + self.sc(self.up(x))


class NormConditionalGenerator(nn.Module):
    """``G(z, y)`` with the class in the input **and** in every block (``model.g_cond: norm``).

    ``[z, embed(y)]`` -> linear -> start image -> one :class:`CondResBlockUp` per 2x upsampling
    (``g_res_units`` extra same-size blocks per level) -> GroupNorm -> ReLU -> 3x3 conv -> ``tanh``.
    Widths and the start size follow the same plan as :class:`ConditionalGenerator`.
    """

    def __init__(self, cfg: CGANConfig, n_classes: int, out_shape: Sequence[int]) -> None:
        super().__init__()
        c, n_up, sh, sw, c0, widths = generator_plan(cfg, out_shape)
        self.z_dim, self.n_classes, self.out_shape = cfg.z_dim, n_classes, tuple(int(v) for v in out_shape)
        self.embed = nn.Embedding(n_classes, cfg.embed_dim)
        chans = [c0, *widths]
        self.start = (c0, sh, sw)
        self.linear = nn.Linear(cfg.z_dim + cfg.embed_dim, c0 * sh * sw)
        blocks: list[nn.Module] = []
        for i in range(n_up):
            blocks.append(CondResBlockUp(chans[i], chans[i + 1], n_classes, up=True))
            blocks.extend(
                CondResBlockUp(chans[i + 1], chans[i + 1], n_classes, up=False)
                for _ in range(cfg.g_res_units)
            )
        self.blocks = nn.ModuleList(blocks)
        self.out_norm = nn.GroupNorm(min(8, chans[-1]), chans[-1])
        self.out_conv = Convolution(2, chans[-1], c, kernel_size=3, conv_only=True)
        self.act = nn.ReLU()

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], shape (B, C, H, W)."""
        x = self.linear(torch.cat([z, self.embed(y)], dim=1)).view(-1, *self.start)
        for block in self.blocks:
            x = block(x, y)
        return torch.tanh(self.out_conv(self.act(self.out_norm(x))))


class MinibatchStd(nn.Module):
    """One extra feature map: the standard deviation across groups of ``group`` samples (Karras et al. 2018).

    It lets the discriminator see the diversity of a batch, so a generator that collapses to few
    modes is caught. The group is ``min(group, B)`` and must divide the batch (else the whole batch).
    """

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with one channel appended."""
        b, c, h, w = x.shape
        g = min(self.group, b)
        if b % g:
            g = b
        y = x.float().view(g, -1, c, h, w)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B / g,)
        y = y.to(x.dtype).view(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class GlobalProjectionDiscriminator(nn.Module):
    """``D(x, y)`` that judges the whole slice (``model.d_arch: global``).

    MONAI stride-2 ``ResidualUnit`` blocks until the feature map is at most 4 x 4 (28 -> 14 -> 7 ->
    4), then a StyleGAN2-style epilogue: minibatch standard deviation, a 3x3 convolution, a fully
    connected layer over the **whole** map (every output sees every input pixel), and the
    projection head ``w . h + <embed(y), h>`` on that vector.
    """

    def __init__(self, cfg: CGANConfig, n_classes: int, in_shape: Sequence[int]) -> None:
        super().__init__()
        c, h, w = (int(v) for v in in_shape)
        self.features, ch, h, w = down_path(cfg, c, h, w, None)
        self.mbstd = MinibatchStd(cfg.mbstd_group) if cfg.mbstd_group > 0 else None
        extra = 1 if self.mbstd is not None else 0
        self.conv = Convolution(2, ch + extra, ch, kernel_size=3, act=LEAKY, norm=None)
        self.fc = nn.Linear(ch * h * w, ch)
        self.act = nn.LeakyReLU(0.2)
        self.linear = nn.Linear(ch, 1)
        self.embed = nn.Embedding(n_classes, ch)
        self.feature_dim = ch

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unbounded scores, shape (B,)."""
        f = self.features(x)
        if self.mbstd is not None:
            f = self.mbstd(f)
        h = self.act(self.fc(self.conv(f).flatten(1)))
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
    """Wrap every conv, linear and embedding weight in ``module`` with spectral normalisation.

    The per-class gains and biases of :class:`ConditionalGroupNorm` are left alone: they are
    scales, not a linear map (and start at zero, whose spectral norm is 0).
    """
    skip = {id(e) for m in module.modules() if isinstance(m, ConditionalGroupNorm) for e in (m.gain, m.bias)}
    for m in list(module.modules()):
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding) and id(m) not in skip:
            spectral_norm(m)
    return module


def build_cgan(cfg: CGANConfig, n_classes: int, shape: Sequence[int]) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator for images of ``shape`` (C, H, W) and ``n_classes`` classes.

    ``cfg.g_cond`` picks the generator (``input``: :class:`ConditionalGenerator`; ``norm``:
    :class:`NormConditionalGenerator`), ``cfg.d_arch`` the discriminator (``patch``:
    :class:`ProjectionDiscriminator`; ``global``: :class:`GlobalProjectionDiscriminator`).
    """
    g: nn.Module = (
        NormConditionalGenerator(cfg, n_classes, shape)
        if cfg.g_cond == "norm"
        else ConditionalGenerator(cfg, n_classes, shape)
    )
    d: nn.Module = (
        GlobalProjectionDiscriminator(cfg, n_classes, shape)
        if cfg.d_arch == "global"
        else ProjectionDiscriminator(cfg, n_classes, shape)
    )
    init_weights(g, cfg.init)
    init_weights(d, cfg.init)
    for m in g.modules():  # conditional norms start as plain GroupNorm (gain 1, bias 0)
        if isinstance(m, ConditionalGroupNorm):
            nn.init.zeros_(m.gain.weight)
            nn.init.zeros_(m.bias.weight)
    if cfg.spectral_norm.generator:
        apply_spectral_norm(g)
    if cfg.spectral_norm.discriminator:
        apply_spectral_norm(d)
    return g, d


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
