"""Mask-conditioned synthesis on MONAI's SPADE networks: a lesion mask + a class -> a slice.

:class:`SPADEGAN` is the training task the shared fit loop drives (:mod:`medgan.training.loop`):
MONAI's ``SPADENet`` (a SPADE residual decoder fed a style code, and with ``model.vae`` the encoder
that gives it one, trained as a VAE-GAN) against MONAI's ``MultiScalePatchDiscriminator``, which
sees the image beside its conditioning map, so a lesion drawn off its mask is caught.
:class:`SPADESynthesizer` loads a checkpoint for inference. It is a
:class:`~medgan.synthesis.protocols.Sampler` (a class and a seed -> a slice) and a
:class:`~medgan.synthesis.protocols.PairSampler` (-> a slice *and* its mask, with where the mask
came from). Each image's mask is drawn from the image's seed: a training mask of its class
(kept in the checkpoint, so the image rebuilds from checkpoint + label + seed), or a mask of a
user's folder, flipped, rotated, scaled, shifted and elastically displaced (:func:`draw_masks`).

References: Park T. et al., Semantic Image Synthesis with Spatially-Adaptive Normalization,
CVPR 2019 (https://arxiv.org/abs/1903.07291); Fernandez V. et al., Can segmentation models be
trained with fully synthetically generated data? (brainSPADE), SASHIMI 2022.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import MultiScalePatchDiscriminator, SPADENet
from torch import nn

from medgan import distributed
from medgan.config import TrainConfig
from medgan.config.kinds.spade import SPADEConfig
from medgan.data.slices import resize_masks
from medgan.device import autocast, fast_paths
from medgan.errors import InputError
from medgan.grids import make_grid
from medgan.io.images import IMAGE_SUFFIXES, read_mask
from medgan.seeding import derive_seed, make_generator, noise_for_seeds
from medgan.synthesis.losses import accuracy, d_loss, g_loss
from medgan.synthesis.networks import apply_spectral_norm
from medgan.synthesis.protocols import Pairs, SamplerBase
from medgan.training.checkpoint import (
    finite_or_refuse,
    flatten_training_state,
    load_model_checkpoint,
    restore_training_state,
    state_dict_of,
)
from medgan.training.ema import ema_beta, make_ema, update_ema
from medgan.training.sampler import ClassBatchSampler

#: The stream of a seed that draws its mask (the style code uses the seed itself).
MASK_STREAM = 0x6D61736B  # "mask"


def default_channels(shape: Sequence[int]) -> list[int]:
    """Encoder channels per level for slices of ``shape`` (C, H, W): as many halvings as keep both
    sides whole and at least 4 pixels (at most 5), 32 channels doubling to at most 256."""
    h, w = int(shape[-2]), int(shape[-1])
    levels = 0
    while (
        levels < 5
        and h % 2 ** (levels + 1) == 0
        and w % 2 ** (levels + 1) == 0
        and min(h, w) // 2 ** (levels + 1) >= 4
    ):
        levels += 1
    if levels == 0:
        raise ValueError(f"a {h}x{w} slice cannot be halved even once; use an even size of at least 8")
    return [min(32 * 2**i, 256) for i in range(levels)]


def label_channels(n_classes: int) -> int:
    """Channels of the conditioning map: background, lesion, and one per class."""
    return 2 + n_classes


def conditioning_map(masks: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(N, 2 + n_classes, H, W) float map from (N, 1, H, W) masks (nonzero = lesion) and (N,) labels."""
    m = (masks > 0).to(torch.float32)
    onehot = F.one_hot(labels.long(), n_classes).to(torch.float32)[:, :, None, None]
    return torch.cat([1.0 - m, m, onehot.expand(-1, -1, *m.shape[-2:])], dim=1)


def build_spade(cfg: SPADEConfig, n_classes: int, shape: Sequence[int]) -> tuple[SPADENet, nn.Module]:
    """MONAI's ``SPADENet`` generator and ``MultiScalePatchDiscriminator`` (spectral-normalised) for
    slices of ``shape`` (C, H, W). A size the networks cannot take is a ``ValueError`` saying why."""
    c, h, w = (int(s) for s in shape)
    channels = list(cfg.channels) if cfg.channels is not None else default_channels(shape)
    if h % 2 ** len(channels) or w % 2 ** len(channels):
        raise ValueError(
            f"a {h}x{w} slice is not divisible by 2**{len(channels)} (model.channels has {len(channels)} levels)"
        )
    deepest = 2 ** (cfg.d_scales * cfg.d_layers)  # the last scale's discriminator halves this often
    if min(h, w) < 2 * deepest:
        raise ValueError(
            f"a {h}x{w} slice is too small for model.d_scales={cfg.d_scales} x model.d_layers={cfg.d_layers}"
            f" (needs a side of at least {2 * deepest}; lower either)"
        )
    g = SPADENet(
        spatial_dims=2,
        in_channels=c,
        out_channels=c,
        label_nc=label_channels(n_classes),
        input_shape=(h, w),
        channels=channels,
        z_dim=cfg.z_dim,
        is_vae=True,  # the decoder takes a style code (noise when sampling); the encoder gives one while training
        spade_intermediate_channels=cfg.spade_hidden,
        norm="INSTANCE",
        last_act="TANH",
    )
    d = MultiScalePatchDiscriminator(
        num_d=cfg.d_scales,
        num_layers_d=cfg.d_layers,
        spatial_dims=2,
        channels=cfg.d_channels,
        in_channels=c + label_channels(n_classes),
        out_channels=1,
        norm="INSTANCE",
        minimum_size_im=min(h, w),
    )
    apply_spectral_norm(d)
    return g, d


# ------------------------------------------------------------------ masks drawn from a seed


@dataclass(frozen=True)
class MaskBank:
    """The masks a sampler draws from: (M, 1, H, W) uint8, their classes (None: any class may draw
    any mask, e.g. a user's folder) and where each came from."""

    masks: torch.Tensor
    labels: torch.Tensor | None
    sources: list[str]

    def pool(self, label: int) -> np.ndarray:
        """Indices of the masks class ``label`` draws from."""
        if self.labels is None:
            return np.arange(len(self.masks))
        return np.flatnonzero(self.labels.numpy() == label)


def mask_transform(seed: int, cfg: SPADEConfig, n: int) -> dict[str, Any]:
    """The source index (of ``n`` candidates) and the flip / rotation / scale / shift / elastic
    field that the image seeded ``seed`` draws its mask with: a pure function of the seed and ``cfg``."""
    rng = np.random.default_rng(derive_seed(seed, MASK_STREAM))
    pick = int(rng.integers(n))
    flip = bool(rng.random() < 0.5) and cfg.mask_flip
    angle = float(rng.uniform(-cfg.mask_rotate, cfg.mask_rotate))
    scale = float(rng.uniform(*cfg.mask_scale))
    shift = rng.uniform(-cfg.mask_shift, cfg.mask_shift, 2)
    field = rng.uniform(-cfg.mask_elastic, cfg.mask_elastic, (2, 4, 4))  # fractions of the side
    return {"pick": pick, "flip": flip, "angle": angle, "scale": scale, "shift": shift, "field": field}


def describe_transform(t: dict[str, Any]) -> str:
    """A transform of :func:`mask_transform` in one short line for the manifest."""
    return (
        f"flip={int(t['flip'])} rotate={t['angle']:.2f} scale={t['scale']:.3f} "
        f"shift=({t['shift'][0]:.3f},{t['shift'][1]:.3f}) elastic={float(np.abs(t['field']).max()):.3f}"
    )


def warp_masks(sources: torch.Tensor, transforms: Sequence[dict[str, Any]]) -> torch.Tensor:
    """Masks (N, 1, H, W) uint8: each source mask mirrored, rotated and scaled about the centre,
    shifted, and displaced by its smooth elastic field (a 4 x 4 grid of offsets in fractions of the
    side, bicubically upsampled), resampled by nearest neighbour so a mask stays a mask. The rotation is in pixel
    units, so a non-square slice is not sheared. Each mask depends only on its own source and
    transform, not on the others in the batch."""
    n, _, h, w = sources.shape
    if n == 0:
        return sources.to(torch.uint8)
    to_norm = torch.diag(torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float64))
    to_pix = torch.diag(torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64))
    theta = torch.zeros((n, 2, 3), dtype=torch.float64)
    disp = torch.zeros((n, 2, 4, 4), dtype=torch.float64)
    for i, t in enumerate(transforms):
        a = np.deg2rad(t["angle"])
        inv_rot = torch.tensor([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]], dtype=torch.float64)
        mirror = torch.diag(torch.tensor([-1.0 if t["flip"] else 1.0, 1.0], dtype=torch.float64))
        # output -> input (what affine_grid takes): undo the shift, then the rotation and scale, then the mirror
        inv = to_norm @ (mirror @ inv_rot / t["scale"]) @ to_pix
        theta[i, :, :2] = inv
        theta[i, :, 2] = -inv @ (torch.as_tensor(t["shift"], dtype=torch.float64) * 2.0)
        disp[i] = torch.as_tensor(t["field"])
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    field = F.interpolate(disp, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    grid = grid + field * 2.0  # fractions of the side -> [-1, 1] units
    out = F.grid_sample(
        sources.to(torch.float64), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return (out > 0.5).to(torch.uint8)


def draw_masks(
    bank: MaskBank, labels: Sequence[int], seeds: Sequence[int], cfg: SPADEConfig
) -> tuple[torch.Tensor, list[str], list[str]]:
    """One mask per (label, seed): (N, 1, H, W) uint8, each mask's source and its transform."""
    picks, transforms, sources = [], [], []
    for lab, seed in zip(labels, seeds, strict=True):
        pool = bank.pool(int(lab))
        if len(pool) == 0:
            raise InputError(f"class {lab}", "has no mask to draw from (no training mask of this class)")
        t = mask_transform(int(seed), cfg, len(pool))
        picks.append(int(pool[t["pick"]]))
        transforms.append(t)
        sources.append(bank.sources[picks[-1]])
    idx = torch.as_tensor(picks, dtype=torch.long)
    masks = warp_masks(bank.masks[idx] if len(idx) else bank.masks[:0], transforms)
    return masks, sources, [describe_transform(t) for t in transforms]


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), summed over the code and averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD / SPADE feature matching: L1 between the discriminators' intermediate features of
    fake and real (every layer but the output), averaged over scales."""
    total = fake[0][0].new_zeros(())
    for f_scale, r_scale in zip(fake, real, strict=True):
        for f, r in zip(f_scale[:-1], r_scale[:-1], strict=True):
            total = total + F.l1_loss(f, r.detach())
    return total / len(fake)


# ------------------------------------------------------------------ training


class SPADEGAN:
    """SPADE generator (+ encoder), multi-scale patch discriminator, EMA decoder and the training step."""

    kind = "spade"

    def __init__(
        self,
        model_cfg: SPADEConfig,
        train_cfg: TrainConfig,
        n_classes: int,
        shape: Sequence[int],
        device: torch.device,
        seed: int,
    ) -> None:
        if distributed.world_size() > 1:
            raise InputError("model.kind", "'spade' trains in one process; run it without torchrun")
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.n_classes, self.shape, self.device = n_classes, tuple(int(s) for s in shape), device
        torch.manual_seed(seed)
        self.g, self.d = build_spade(model_cfg, n_classes, self.shape)
        self.g.to(device)
        self.d.to(device)
        self.amp, _ = fast_paths(device, train_cfg.amp, "off", self.shape)
        self.dec_ema = make_ema(self.g.decoder)
        fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
        g_params = list(self.g.decoder.parameters()) + (
            list(self.g.encoder.parameters()) if model_cfg.vae else []
        )
        self.opt_g = torch.optim.Adam(g_params, lr=train_cfg.lr_g, betas=train_cfg.betas, **fused)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=train_cfg.lr_d, betas=train_cfg.betas, **fused)
        self.gen = make_generator(seed + 1, device)  # style codes and reparameterisation noise
        self.sampler: ClassBatchSampler | None = None
        self.bank: MaskBank | None = None

    def attach_data(
        self, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, sources: list[str], seed: int
    ) -> None:
        """Give the training images (N, C, H, W) in [-1, 1], labels (N,) and masks (N, 1, H, W) uint8.

        Image and mask are batched (and mirrored) together; the masks are also the bank that
        sampling draws from (kept in every checkpoint), ``sources`` naming each one.
        """
        packed = torch.cat([images.float(), masks.float()], dim=1)
        self.sampler = ClassBatchSampler(
            packed.to(self.device),
            labels.to(self.device),
            self.train_cfg.batch_size,
            seed + 2,
            self.model_cfg.class_balance,
            self.model_cfg.xflip,
        )
        self.bank = MaskBank(masks.to(torch.uint8).cpu(), labels.long().cpu(), list(sources))

    def optimizers(self) -> list[tuple[torch.optim.Optimizer, float]]:
        """Optimizers with their base learning rates (the loop applies the schedule)."""
        return [(self.opt_g, self.train_cfg.lr_g), (self.opt_d, self.train_cfg.lr_d)]

    def _fake(
        self, x: torch.Tensor, seg: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """A generated batch for real ``x`` under ``seg`` and its style code: the encoder's code
        (``vae``, with its mean and log-variance) or noise."""
        if self.model_cfg.vae:
            mu, logvar = self.g.encoder(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=self.gen, device=mu.device)
            return self.g.decoder(seg, z), z, mu, logvar
        z = torch.randn((len(x), self.model_cfg.z_dim), generator=self.gen, device=x.device)
        return self.g.decoder(seg, z), z, None, None

    def train_step(self, step: int) -> dict[str, float | torch.Tensor]:
        """One discriminator update and one generator update (adversarial + feature matching + KL)."""
        assert self.sampler is not None, "attach_data() first"
        tc, mc, c = self.train_cfg, self.model_cfg, self.shape[0]
        self.g.train()
        self.d.train()
        out: dict[str, float | torch.Tensor] = {}
        packed, y = self.sampler.next()
        x, seg = packed[:, :c], conditioning_map(packed[:, c:], y, self.n_classes)
        with autocast(self.device, self.amp):
            with torch.no_grad():
                fake, _, _, _ = self._fake(x, seg)
            s_real, _ = self.d(torch.cat([x, seg], 1))
            s_fake, _ = self.d(torch.cat([fake.float(), seg], 1))
            loss_d = sum(
                d_loss(mc.loss, r.float(), f.float()) for r, f in zip(s_real, s_fake, strict=True)
            ) / len(s_real)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        out["loss_d"] = loss_d.detach()
        acc = [accuracy(r.detach().float(), f.detach().float()) for r, f in zip(s_real, s_fake, strict=True)]
        out["d_acc_real"] = torch.stack([a[0] for a in acc]).mean()
        out["d_acc_fake"] = torch.stack([a[1] for a in acc]).mean()

        with autocast(self.device, self.amp):
            fake, z, mu, logvar = self._fake(x, seg)
            s_gen, f_gen = self.d(torch.cat([fake, seg], 1))
            with torch.no_grad():
                _, f_real = self.d(torch.cat([x, seg], 1))
            adv = sum(g_loss(mc.loss, s.float()) for s in s_gen) / len(s_gen)
            lg = adv
            if mc.fm_weight > 0:
                fm = feature_matching(f_gen, f_real).float()
                lg = lg + mc.fm_weight * fm
                out["fm"] = fm.detach()
            if mu is not None and logvar is not None and mc.kld_weight > 0:
                kld = kl_divergence(mu.float(), logvar.float())
                lg = lg + mc.kld_weight * kld
                out["kld"] = kld.detach()
            if mc.rec_weight > 0:
                rec = F.l1_loss(fake.float(), x)
                lg = lg + mc.rec_weight * rec
                out["rec"] = rec.detach()
            if mc.ms_weight > 0:  # mode seeking: a second, random style code for the same masks
                z2 = torch.randn((len(x), mc.z_dim), generator=self.gen, device=x.device)
                f2 = self.g.decoder(seg, z2)
                ratio = (fake - f2).abs().mean() / (z.detach() - z2).abs().mean()
                ms = 1.0 / (ratio.float() + 1e-5)
                lg = lg + mc.ms_weight * ms
                out["ms"] = ms.detach()
        self.opt_g.zero_grad(set_to_none=True)
        lg.backward()
        self.opt_g.step()
        out["loss_g"], out["adv_g"] = lg.detach(), adv.detach()
        beta = ema_beta(mc.ema_decay, mc.ema_kimg, mc.ema_rampup, (step + 1) * tc.batch_size, tc.batch_size)
        update_ema(self.dec_ema, self.g.decoder, beta if step >= mc.ema_start else 0.0)
        out["ema_beta"] = beta
        out["lr_g"], out["lr_d"] = self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]
        return out

    @torch.no_grad()
    def generate(self, labels: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """EMA-decoder images (N, C, H, W) in [-1, 1] for (label, seed) pairs, masks drawn from the
        training masks as :class:`SPADESynthesizer` draws them."""
        assert self.bank is not None, "attach_data() first"
        masks, _, _ = draw_masks(self.bank, labels, seeds, self.model_cfg)
        return decode(
            self.dec_ema, masks, list(labels), list(seeds), self.model_cfg.z_dim, self.n_classes, self.device
        ).numpy()

    @torch.no_grad()
    def sample_grid(self, per_class: int, seed: int) -> np.ndarray:
        """A (C, H, W) grid in [-1, 1]: per class a row of EMA samples and under it their masks."""
        assert self.bank is not None, "attach_data() first"
        rows = []
        for c in range(self.n_classes):
            if len(self.bank.pool(c)) == 0:
                continue
            labels, seeds = [c] * per_class, [seed * 1000 + i for i in range(per_class)]
            masks, _, _ = draw_masks(self.bank, labels, seeds, self.model_cfg)
            imgs = decode(
                self.dec_ema, masks, labels, seeds, self.model_cfg.z_dim, self.n_classes, self.device
            )
            rows += [imgs.numpy(), (masks.float() * 2 - 1).expand_as(imgs).numpy()]
        return make_grid(np.concatenate(rows), per_class)

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to resume or to generate: networks, optimizers, RNG, and the mask bank."""
        t, info = flatten_training_state(self._nets(), self._opts())
        t["rng.train"] = self.gen.get_state()
        if self.sampler is not None:
            t.update({f"rng.sampler.{k}": v for k, v in self.sampler.state().items()})
        if self.bank is not None:
            t["masks.bank"] = self.bank.masks.contiguous()
            assert self.bank.labels is not None
            t["masks.labels"] = self.bank.labels.contiguous()
            info["mask_sources"] = list(self.bank.sources)
        return t, info

    def _nets(self) -> dict[str, torch.nn.Module]:
        return {"g": self.g, "d": self.d, "dec_ema": self.dec_ema}

    def _opts(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Restore :meth:`state_tensors` (for ``--resume``)."""
        restore_training_state(tensors, info, self._nets(), self._opts())
        self.gen.set_state(tensors["rng.train"].cpu())
        if self.sampler is not None:
            self.sampler.load(
                {k.split(".", 2)[2]: v.cpu() for k, v in tensors.items() if k.startswith("rng.sampler.")}
            )


@torch.no_grad()
def decode(
    decoder: nn.Module,
    masks: torch.Tensor,
    labels: Sequence[int],
    seeds: Sequence[int],
    z_dim: int,
    n_classes: int,
    device: torch.device,
    batch_size: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] on the CPU: image i from masks[i], labels[i] and the style code
    of seeds[i] (``noise_for_seeds``), so it does not depend on the batch it is computed in."""
    decoder.eval()
    cuda = device.type == "cuda"
    bs = batch_size or (1024 if cuda else 128)
    z = noise_for_seeds(list(seeds), z_dim, "cpu")
    y = torch.as_tensor(list(labels), dtype=torch.long)
    outs = []
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and precision == "bf16"):
        for s in range(0, len(y), bs):
            seg = conditioning_map(masks[s : s + bs], y[s : s + bs], n_classes).to(device)
            outs.append(decoder(seg, z[s : s + bs].to(device)).float().cpu())
    if not outs:
        return torch.empty((0, decoder.out_channels, *masks.shape[-2:]))
    return torch.cat(outs)


# ------------------------------------------------------------------ inference


class SPADESynthesizer(SamplerBase):
    """A trained SPADE generator loaded from a checkpoint: slices (and their masks) from a class and a seed."""

    def __init__(self, checkpoint: str | Path, device: str | torch.device = "cpu") -> None:
        tensors, meta = load_model_checkpoint(checkpoint, "spade", "mask-conditioned SPADE model")
        self.meta = meta
        self.sha256: str = meta.sha256
        self.classes: list[str] = list(meta.classes)
        self.shape: tuple[int, int, int] = meta.shape
        self.model_cfg = SPADEConfig.model_validate(dict(meta.model))
        self.device = torch.device(device)
        g, _ = build_spade(self.model_cfg, len(self.classes), self.shape)
        ema = {k: v for k, v in tensors.items() if k.startswith("dec_ema.")}
        finite_or_refuse(ema, checkpoint, "the generator's weights")
        try:
            g.decoder.load_state_dict(state_dict_of(tensors, "dec_ema"))
        except RuntimeError as exc:
            raise InputError(
                checkpoint, f"generator weights do not fit the recorded model ({str(exc)[:120]})"
            ) from None
        if "masks.bank" not in tensors:
            raise InputError(checkpoint, "holds no training masks to draw from")
        self.decoder = g.decoder.to(self.device).eval()
        self.bank = MaskBank(
            tensors["masks.bank"].to(torch.uint8),
            tensors["masks.labels"].long(),
            [str(s) for s in meta.state_info.get("mask_sources", [])]
            or [f"train mask {i}" for i in range(len(tensors["masks.bank"]))],
        )

    def use_masks(self, folder: str | Path) -> None:
        """Draw masks from a folder of mask images (any class may draw any of them) instead of the
        training masks. Each is read as a mask of the checkpoint's slice size (nonzero = lesion)."""
        self.bank = read_mask_folder(folder, self.shape[1:])

    def draw_masks(
        self, labels: Sequence[int], seeds: Sequence[int]
    ) -> tuple[torch.Tensor, list[str], list[str]]:
        """The masks pairs (labels[i], seeds[i]) are drawn on, their sources and transforms (no network)."""
        return draw_masks(self.bank, labels, seeds, self.model_cfg)

    def masks_digest(self) -> str:
        """SHA-256 of the bank drawn from: its masks, their classes (if any) and their names."""
        h = hashlib.sha256(self.bank.masks.numpy().tobytes())
        h.update(b"" if self.bank.labels is None else self.bank.labels.numpy().tobytes())
        h.update("\n".join(self.bank.sources).encode("utf-8"))
        return h.hexdigest()

    def generate_pairs(
        self,
        labels: Sequence[int],
        seeds: Sequence[int],
        batch_size: int | None = None,
        precision: str = "fp32",
    ) -> Pairs:
        """Images (N, C, H, W) in [-1, 1] and their masks (N, 1, H, W) uint8, each a pure function of
        (checkpoint or mask folder, labels[i], seeds[i]), with each mask's source and transform."""
        if len(labels) != len(seeds):
            raise ValueError("labels and seeds must have the same length")
        masks, sources, transforms = self.draw_masks(labels, seeds)
        imgs = decode(
            self.decoder,
            masks,
            labels,
            seeds,
            self.model_cfg.z_dim,
            len(self.classes),
            self.device,
            batch_size,
            precision,
        )
        return Pairs(imgs, masks, sources, transforms)

    def generate(
        self,
        labels: Sequence[int],
        seeds: Sequence[int],
        batch_size: int | None = None,
        precision: str = "fp32",
    ) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] (their masks: :meth:`generate_pairs`)."""
        return self.generate_pairs(labels, seeds, batch_size, precision).images


def read_mask_folder(folder: str | Path, hw: Sequence[int]) -> MaskBank:
    """Every PNG / JPEG / TIFF / BMP mask in ``folder`` (sorted by name) as a :class:`MaskBank` at
    ``hw``, resized by nearest neighbour; one-line errors for a missing or empty folder or a bad file."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "is not a folder of masks")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(root, f"holds no mask images ({', '.join(IMAGE_SUFFIXES)})")
    size = (int(hw[0]), int(hw[1]))
    masks = np.stack([resize_masks(read_mask(p, None)[None], size)[0] for p in files])
    if not masks.any():
        raise InputError(root, "every mask in it is empty (no nonzero pixel)")
    return MaskBank(torch.from_numpy(masks[:, None]), None, [p.name for p in files])
