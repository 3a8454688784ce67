"""The class-conditional GAN: networks, optimizers, one training step, EMA, and generation.

:class:`ConditionalGAN` is the training-time object the shared fit loop drives
(:mod:`medgan.training.loop`); :class:`CGANSynthesizer` is the inference-time object loaded
from a checkpoint: ``generate(labels, seeds)`` returns images in [-1, 1], each image a pure
function of (checkpoint, label, seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan import distributed
from medgan.config import CGAN_LEGACY, CGANConfig, TrainConfig
from medgan.device import autocast, fast_paths
from medgan.errors import InputError
from medgan.grids import make_grid
from medgan.seeding import make_generator, noise_for_seeds
from medgan.synthesis.diffaugment import diff_augment, resolve_policy
from medgan.synthesis.export import script_generator
from medgan.synthesis.losses import LeCam, accuracy, d_loss, g_loss, grad_penalty_at, gradient_penalty
from medgan.synthesis.networks import build_cgan
from medgan.synthesis.protocols import Export, SamplerBase
from medgan.training.checkpoint import (
    finite_or_refuse,
    flatten_training_state,
    load_model_checkpoint,
    restore_training_state,
    state_dict_of,
)
from medgan.training.ema import ema_beta, make_ema, update_ema
from medgan.training.sampler import ClassBatchSampler


class ConditionalGAN:
    """Generator, discriminator, EMA generator, their optimizers and the training step."""

    kind = "cgan"

    def __init__(
        self,
        model_cfg: CGANConfig,
        train_cfg: TrainConfig,
        n_classes: int,
        shape: Sequence[int],
        device: torch.device,
        seed: int,
    ) -> None:
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.n_classes, self.shape, self.device = n_classes, tuple(int(s) for s in shape), device
        torch.manual_seed(seed)
        self.g, self.d = build_cgan(model_cfg, n_classes, self.shape)
        self.g.to(device)
        self.d.to(device)
        self.amp, self.channels_last = fast_paths(device, train_cfg.amp, train_cfg.channels_last, self.shape)
        if self.channels_last:
            self.g.to(memory_format=torch.channels_last)
            self.d.to(memory_format=torch.channels_last)
        self.g_ema = make_ema(self.g)
        fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=train_cfg.lr_g, betas=train_cfg.betas, **fused)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=train_cfg.lr_d, betas=train_cfg.betas, **fused)
        self.gen = make_generator(distributed.rank_seed(seed + 1), device)  # noise and augmentation
        self.sampler: ClassBatchSampler | None = None
        self.policy: list[str] = []
        self.lecam = LeCam(model_cfg.lecam_decay, device) if model_cfg.lecam_weight > 0 else None
        self.d_forward = self.d
        if train_cfg.compile:
            self.d_forward = torch.compile(self.d)  # type: ignore[assignment]
        # the updates' forward passes: DDP wrappers under torchrun (gradients averaged over ranks),
        # the networks themselves in a single process; self.g / self.d stay unwrapped (EMA, checkpoints)
        self.g_sync: torch.nn.Module = self.g
        self.d_sync: torch.nn.Module = self.d_forward
        if distributed.world_size() > 1:
            self.g_sync = distributed.wrap_ddp(self.g, device)
            self.d_sync = distributed.wrap_ddp(self.d, device)
            if train_cfg.compile:
                self.d_sync = torch.compile(self.d_sync)  # type: ignore[assignment]

    def attach_data(self, images: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
        """Give the training images (N, C, H, W) in [-1, 1] and labels (N,).

        Under ``torchrun`` each rank draws its batches from its own share of the images.
        """
        self.policy = resolve_policy(self.model_cfg.diffaugment, len(images))
        images, labels = distributed.shard_rows(images), distributed.shard_rows(labels)
        self.sampler = ClassBatchSampler(
            images.to(self.device),
            labels.to(self.device),
            self.train_cfg.batch_size,
            distributed.rank_seed(seed + 2),
            self.model_cfg.class_balance,
            self.model_cfg.xflip,
        )

    def optimizers(self) -> list[tuple[torch.optim.Optimizer, float]]:
        """Optimizers with their base learning rates (the loop applies the schedule)."""
        return [(self.opt_g, self.train_cfg.lr_g), (self.opt_d, self.train_cfg.lr_d)]

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.policy, self.gen)

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn((n, self.model_cfg.z_dim), generator=self.gen, device=self.device)

    def train_step(self, step: int) -> dict[str, float | torch.Tensor]:
        """One discriminator update (``d_steps`` of them) and one generator update.

        Returns the scalars to log as 0-d tensors (floats for learning rates): the loop reads them
        back in one transfer when it logs, so a GPU step never waits for the host.
        """
        assert self.sampler is not None, "attach_data() first"
        tc, mc = self.train_cfg, self.model_cfg
        self.g.train()
        self.d.train()
        out: dict[str, float | torch.Tensor] = {}
        for _ in range(mc.d_steps):
            real, y = self.sampler.next()
            if self.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.amp):
                with torch.no_grad():
                    fake = self.g(self._noise(len(y)), y)
                s_real = self.d_sync(self._aug(real), y).float()
                s_fake = self.d_sync(self._aug(fake), y).float()
                loss = d_loss(mc.loss, s_real, s_fake)
            if self.lecam is not None:
                self.lecam.update(s_real.detach(), s_fake.detach())
                reg = self.lecam(s_real, s_fake)
                loss = loss + mc.lecam_weight * reg
                out["lecam"] = reg.detach()
            if mc.loss == "wgan-gp" and mc.gp_weight > 0:
                gp = gradient_penalty(
                    lambda x, y=y: self.d_sync(self._aug(x), y).float(), real, fake, self.gen
                )
                loss = loss + mc.gp_weight * gp
                out["gp"] = gp.detach()
            if step % mc.r1_every == 0:  # lazy regularisation: every r1_every steps, scaled up to match
                for name, gamma, x in (("r1", mc.r1_gamma, real), ("r2", mc.r2_gamma, fake)):
                    if gamma > 0:
                        with autocast(self.device, self.amp):
                            pen = grad_penalty_at(lambda v, y=y: self.d_sync(v, y).float(), self._aug(x))
                        loss = loss + (gamma / 2) * mc.r1_every * pen
                        out[name] = pen.detach()
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
        out["loss_d"] = loss.detach()
        out["d_acc_real"], out["d_acc_fake"] = accuracy(s_real.detach(), s_fake.detach())
        out["d_real"], out["d_fake"] = s_real.detach().mean(), s_fake.detach().mean()

        with autocast(self.device, self.amp):
            fake = self.g_sync(self._noise(len(y)), y)
            s_gen = self.d_forward(self._aug(fake), y).float()
            if mc.loss == "rpgan":  # each generated image paired with a real one of the last D batch
                with torch.no_grad():
                    s_ref = self.d_forward(self._aug(real), y).float()
                lg = g_loss(mc.loss, s_gen, s_ref)
            else:
                lg = g_loss(mc.loss, s_gen)
        self.opt_g.zero_grad(set_to_none=True)
        lg.backward()
        self.opt_g.step()
        out["loss_g"] = lg.detach()
        world = distributed.world_size()
        beta = ema_beta(
            mc.ema_decay,
            mc.ema_kimg,
            mc.ema_rampup,
            (step + 1) * tc.batch_size * world,
            tc.batch_size * world,
        )
        update_ema(self.g_ema, self.g, beta if step >= mc.ema_start else 0.0)
        out["ema_beta"] = beta
        out["lr_g"], out["lr_d"] = self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]
        return out

    @torch.no_grad()
    def generate(self, labels: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """EMA-generator images (N, C, H, W) in [-1, 1] for (label, seed) pairs, as :class:`CGANSynthesizer` would give."""
        imgs = generate_images(self.g_ema, list(labels), list(seeds), self.model_cfg.z_dim, self.device)
        return imgs.numpy()

    @torch.no_grad()
    def sample_grid(self, per_class: int, seed: int) -> np.ndarray:
        """A (C, H, W) grid in [-1, 1]: one row per class, ``per_class`` EMA samples from fixed noise."""
        labels = torch.arange(self.n_classes).repeat_interleave(per_class)
        seeds = [seed * 1000 + i for i in range(per_class)] * self.n_classes
        imgs = generate_images(self.g_ema, labels.tolist(), seeds, self.model_cfg.z_dim, self.device)
        return make_grid(imgs.numpy(), per_class)

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to resume (or to generate): flat tensors + JSON-able info."""
        t, info = flatten_training_state(self._nets(), self._opts())
        t["rng.train"] = self.gen.get_state()
        if self.lecam is not None:
            t["lecam.ema"], t["lecam.started"] = self.lecam.ema.clone(), self.lecam.started.clone()
        if self.sampler is not None:
            t.update({f"rng.sampler.{k}": v for k, v in self.sampler.state().items()})
        return t, info

    def _nets(self) -> dict[str, torch.nn.Module]:
        return {"g": self.g, "d": self.d, "g_ema": self.g_ema}

    def _opts(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Restore :meth:`state_tensors` (for ``--resume``)."""
        restore_training_state(tensors, info, self._nets(), self._opts())
        self.gen.set_state(tensors["rng.train"].cpu())
        if self.lecam is not None:
            self.lecam.ema.copy_(tensors["lecam.ema"])
            self.lecam.started.copy_(tensors["lecam.started"])
        if self.sampler is not None:
            self.sampler.load(
                {k.split(".", 2)[2]: v.cpu() for k, v in tensors.items() if k.startswith("rng.sampler.")}
            )


@torch.no_grad()
def generate_images(
    g: torch.nn.Module,
    labels: Sequence[int],
    seeds: Sequence[int],
    z_dim: int,
    device: torch.device,
    batch_size: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] on the CPU from an (EMA) generator; image i depends only on (labels[i], seeds[i]).

    ``batch_size`` defaults to 4096 on CUDA and 256 elsewhere; for bit-identical results across
    runs keep it fixed (cuDNN may pick other kernels for other batch sizes). ``precision="bf16"``
    runs the generator under bf16 autocast on CUDA (faster, not bit-identical to fp32). On CUDA
    the noise is drawn on the device and results are copied back once, at the end.
    """
    g.eval()
    cuda = device.type == "cuda"
    bs = batch_size or (4096 if cuda else 256)
    z = noise_for_seeds(seeds, z_dim, device if cuda else "cpu")
    y = torch.as_tensor(list(labels), dtype=torch.long, device=z.device)
    outs = []
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and precision == "bf16"):
        for s in range(0, len(y), bs):
            out = g(z[s : s + bs].to(device), y[s : s + bs].to(device)).float()
            outs.append(out if cuda else out.cpu())
    if not outs:
        return torch.empty((0, *getattr(g, "out_shape", (1, 1, 1))))
    return torch.cat(outs).cpu()


class CGANSynthesizer(SamplerBase):
    """A trained conditional GAN loaded from a checkpoint, for generation."""

    def __init__(self, checkpoint: str | Path, device: str | torch.device = "cpu") -> None:
        tensors, meta = load_model_checkpoint(checkpoint, "cgan", "conditional GAN")
        self.meta = meta
        self.sha256: str = meta.sha256
        self.classes: list[str] = list(meta.classes)
        self.shape: tuple[int, int, int] = meta.shape
        recorded = dict(meta.model)
        for key, value in CGAN_LEGACY.items():  # written before the key existed: built the old way
            recorded.setdefault(key, value)
        self.model_cfg = CGANConfig.model_validate(recorded)
        self.device = torch.device(device)
        g, _ = build_cgan(self.model_cfg, len(self.classes), self.shape)
        sd = state_dict_of(tensors, "g_ema")
        ema = {k: v for k, v in tensors.items() if k.startswith("g_ema.")}
        finite_or_refuse(ema, checkpoint, "the generator's weights")  # before any output folder exists
        try:
            g.load_state_dict(sd)
        except RuntimeError as exc:
            raise InputError(
                checkpoint, f"generator weights do not fit the recorded model ({str(exc)[:120]})"
            ) from None
        self.g = g.to(self.device).eval()
        if self.device.type == "cuda":
            self.g = self.g.to(memory_format=torch.channels_last)

    def generate(
        self,
        labels: Sequence[int],
        seeds: Sequence[int],
        batch_size: int | None = None,
        precision: str = "fp32",
    ) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1]; image i is a pure function of (checkpoint, labels[i], seeds[i]).

        See :func:`generate_images` for ``batch_size`` and ``precision``.
        """
        if len(labels) != len(seeds):
            raise ValueError("labels and seeds must have the same length")
        return generate_images(
            self.g, labels, seeds, self.model_cfg.z_dim, self.device, batch_size, precision
        )

    def export(self) -> Export:
        """The EMA generator as TorchScript ``forward(seeds, labels)`` (noise drawn inside), for a bundle."""
        return Export(
            module=script_generator(self.g, self.model_cfg.z_dim, len(self.classes)),
            weights={k: v.detach().cpu().contiguous() for k, v in self.g.state_dict().items()},
            what="class-conditional GAN generator",
            noise="z = noise_for_seeds(seed): SplitMix64 counter hash + float64 Box-Muller (medgan.seeding)",
            network={"z_dim": self.model_cfg.z_dim},
            references=[
                "Miyato T., Koyama M. cGANs with Projection Discriminator. ICLR 2018. https://arxiv.org/abs/1802.05637"
            ],
        )
