"""CycleGAN (Zhu et al., ICCV 2017): unpaired translation between domain A (e.g. healthy) and B (lesion).

:class:`CycleGAN` is the training task the shared fit loop (:mod:`medgan.training.loop`)
drives; :class:`CycleGANTranslator` loads a checkpoint and translates images A -> B or B -> A.

Reference defaults (``junyanz/pytorch-CycleGAN-and-pix2pix``), kept unless noted in
docs/synthesis.md: least-squares GAN loss (MONAI ``PatchAdversarialLoss(criterion=
"least_squares", no_activation_leastsq=True)``), cycle L1 with lambda 10, identity L1 with
0.5 x lambda, image pools of 50 generated images per discriminator, Adam 2e-4 with
betas (0.5, 0.999), constant learning rate then linear decay to 0, instance norm,
N(0, 0.02) init, ResNet generator and PatchGAN discriminators.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import MultiScalePatchDiscriminator

from medgan import distributed
from medgan.config import CycleGANConfig, TrainConfig
from medgan.device import autocast, fast_paths
from medgan.errors import InputError
from medgan.grids import make_grid
from medgan.seeding import make_generator
from medgan.synthesis.cyclegan_networks import build_cyclegan, patch_scores
from medgan.synthesis.diffaugment import diff_augment
from medgan.training.checkpoint import (
    finite_or_refuse,
    flatten_training_state,
    load_model_checkpoint,
    restore_training_state,
    state_dict_of,
)
from medgan.training.sampler import ClassBatchSampler


class ImagePool:
    """The reference history buffer: D sees a mix of current and up to ``size`` earlier fakes."""

    def __init__(self, size: int, gen: torch.Generator) -> None:
        self.size, self.gen = size, gen
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """For each image: fill the pool first; then with p = 0.5 swap it for a stored one."""
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif float(torch.rand((), generator=self.gen)) > 0.5:
                k = int(torch.randint(0, self.size, (), generator=self.gen))
                out.append(self.images[k].clone())
                self.images[k] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state(self) -> torch.Tensor:
        """Pool contents as one tensor (0 x ... when empty)."""
        return torch.stack(self.images) if self.images else torch.empty(0)

    def load(self, t: torch.Tensor, device: torch.device) -> None:
        """Restore :meth:`state`."""
        self.images = [x.to(device) for x in t] if t.numel() else []


class CycleGAN:
    """Two generators, two patch discriminators, their optimizers, pools and the training step."""

    kind = "cyclegan"
    #: The rows of :meth:`sample_grid`, named for experiment tracking.
    grid_rows = ("A", "A2B", "A2B2A", "B", "B2A", "B2A2B")

    def __init__(
        self,
        model_cfg: CycleGANConfig,
        train_cfg: TrainConfig,
        shape: Sequence[int],
        device: torch.device,
        seed: int,
    ) -> None:
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.shape, self.device = tuple(int(s) for s in shape), device
        torch.manual_seed(seed)
        nets = build_cyclegan(model_cfg, self.shape)
        self.g_ab, self.g_ba, self.d_a, self.d_b = (n.to(device) for n in nets)
        self.amp, self.channels_last = fast_paths(device, train_cfg.amp, train_cfg.channels_last, self.shape)
        if self.channels_last:
            for n in (self.g_ab, self.g_ba, self.d_a, self.d_b):
                n.to(memory_format=torch.channels_last)
        fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
        tc = train_cfg
        self.opt_g = torch.optim.Adam(
            chain(self.g_ab.parameters(), self.g_ba.parameters()), tc.lr_g, tc.betas, **fused
        )
        self.opt_d = torch.optim.Adam(
            chain(self.d_a.parameters(), self.d_b.parameters()), tc.lr_d, tc.betas, **fused
        )
        self.adv = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)
        self.gen = make_generator(distributed.rank_seed(seed + 1), device)  # augmentation
        self.cpu_gen = make_generator(distributed.rank_seed(seed + 3), "cpu")  # image pools
        self.pool_a = ImagePool(model_cfg.pool_size, self.cpu_gen)
        self.pool_b = ImagePool(model_cfg.pool_size, self.cpu_gen)
        self.sampler_a: ClassBatchSampler | None = None
        self.sampler_b: ClassBatchSampler | None = None
        self.fixed: tuple[torch.Tensor, torch.Tensor] | None = None
        # the updates' forward passes: DDP wrappers under torchrun (gradients averaged over ranks),
        # the networks themselves in a single process (checkpoints keep the networks' own names)
        self.g_ab_sync, self.g_ba_sync, self.d_a_sync, self.d_b_sync = (
            distributed.wrap_ddp(n, device) for n in (self.g_ab, self.g_ba, self.d_a, self.d_b)
        )

    def attach_data(self, a: torch.Tensor, b: torch.Tensor, seed: int) -> None:
        """Unpaired training images of domain A and domain B, (N, C, H, W) in [-1, 1].

        Under ``torchrun`` each rank draws its batches from its own share of each domain.
        """
        bs = self.train_cfg.batch_size
        own_a, own_b = distributed.shard_rows(a), distributed.shard_rows(b)
        self.sampler_a = ClassBatchSampler(
            own_a.to(self.device),
            torch.zeros(len(own_a), dtype=torch.long, device=self.device),
            bs,
            distributed.rank_seed(seed + 2),
            False,
        )
        self.sampler_b = ClassBatchSampler(
            own_b.to(self.device),
            torch.zeros(len(own_b), dtype=torch.long, device=self.device),
            bs,
            distributed.rank_seed(seed + 5),
            False,
        )
        k = self.train_cfg.samples_per_class
        self.fixed = (a[:k].to(self.device), b[:k].to(self.device))

    def optimizers(self) -> list[tuple[torch.optim.Optimizer, float]]:
        """Optimizers with their base learning rates (the loop applies the schedule)."""
        return [(self.opt_g, self.train_cfg.lr_g), (self.opt_d, self.train_cfg.lr_d)]

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.model_cfg.diffaugment, self.gen)

    def _batch(self, sampler: ClassBatchSampler | None) -> torch.Tensor:
        assert sampler is not None, "attach_data() first"
        x, _ = sampler.next()
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, step: int) -> dict[str, float | torch.Tensor]:
        """One generator update (adversarial + cycle + identity) and one update of both discriminators.

        Returns 0-d tensors (floats for learning rates); the loop reads them back when it logs.
        """
        mc = self.model_cfg
        real_a, real_b = self._batch(self.sampler_a), self._batch(self.sampler_b)
        for n in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            n.train()
        for p in chain(self.d_a.parameters(), self.d_b.parameters()):
            p.requires_grad_(False)
        with autocast(self.device, self.amp):
            fake_b = self.g_ab_sync(real_a)
            fake_a = self.g_ba_sync(real_b)
            rec_a = self.g_ba_sync(fake_b)
            rec_b = self.g_ab_sync(fake_a)
            adv = self.adv(patch_scores(self.d_b, self._aug(fake_b)), True, False) + self.adv(
                patch_scores(self.d_a, self._aug(fake_a)), True, False
            )
            cyc = F.l1_loss(rec_a.float(), real_a) + F.l1_loss(rec_b.float(), real_b)
            idt = torch.zeros((), device=self.device)
            if mc.lambda_identity > 0:
                idt = F.l1_loss(self.g_ab_sync(real_b).float(), real_b) + F.l1_loss(
                    self.g_ba_sync(real_a).float(), real_a
                )
            loss_g = adv.float() + mc.lambda_cycle * cyc + mc.lambda_cycle * mc.lambda_identity * idt
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()

        for p in chain(self.d_a.parameters(), self.d_b.parameters()):
            p.requires_grad_(True)
        with autocast(self.device, self.amp):
            pb, pa = self.pool_b.query(fake_b.float()), self.pool_a.query(fake_a.float())
            s_rb, s_fb = _scores(self.d_b_sync, self._aug(real_b)), _scores(self.d_b_sync, self._aug(pb))
            s_ra, s_fa = _scores(self.d_a_sync, self._aug(real_a)), _scores(self.d_a_sync, self._aug(pa))
            loss_d_b = 0.5 * (self.adv(s_rb, True, True) + self.adv(s_fb, False, True))
            loss_d_a = 0.5 * (self.adv(s_ra, True, True) + self.adv(s_fa, False, True))
        self.opt_d.zero_grad(set_to_none=True)
        (loss_d_a.float() + loss_d_b.float()).backward()
        self.opt_d.step()

        def acc(real: list[torch.Tensor], fake: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            r = torch.cat([t.detach().float().flatten() for t in real])
            f = torch.cat([t.detach().float().flatten() for t in fake])
            return (r > 0.5).float().mean(), (f < 0.5).float().mean()

        acc_rb, acc_fb = acc(s_rb, s_fb)
        acc_ra, acc_fa = acc(s_ra, s_fa)
        return {
            "loss_g": loss_g.detach(),
            "loss_adv": adv.detach(),
            "loss_cycle": cyc.detach(),
            "loss_identity": idt.detach(),
            "loss_d": (loss_d_a + loss_d_b).detach(),
            "loss_d_a": loss_d_a.detach(),
            "loss_d_b": loss_d_b.detach(),
            "d_acc_real": (acc_ra + acc_rb) / 2,
            "d_acc_fake": (acc_fa + acc_fb) / 2,
            "lr_g": self.opt_g.param_groups[0]["lr"],
            "lr_d": self.opt_d.param_groups[0]["lr"],
        }

    @torch.no_grad()
    def sample_grid(self, per_class: int, seed: int) -> np.ndarray:
        """Rows: real A, A->B, A->B->A, real B, B->A, B->A->B (fixed training images)."""
        assert self.fixed is not None
        a, b = self.fixed
        self.g_ab.eval()
        self.g_ba.eval()
        ab, ba = self.g_ab(a), self.g_ba(b)
        rows = [a, ab, self.g_ba(ab), b, ba, self.g_ab(ba)]
        n = min(len(a), len(b))
        imgs = torch.cat([r[:n].float().cpu() for r in rows]).numpy()
        return make_grid(imgs, n)

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to resume or translate."""
        t, info = flatten_training_state(self._nets(), self._opts())
        t["rng.train"] = self.gen.get_state()
        t["rng.cpu"] = self.cpu_gen.get_state()
        t["pool.a"], t["pool.b"] = self.pool_a.state(), self.pool_b.state()
        for name, s in (("a", self.sampler_a), ("b", self.sampler_b)):
            if s is not None:
                t.update({f"rng.sampler_{name}.{k}": v for k, v in s.state().items()})
        return t, info

    def _nets(self) -> dict[str, torch.nn.Module]:
        return {"g_ab": self.g_ab, "g_ba": self.g_ba, "d_a": self.d_a, "d_b": self.d_b}

    def _opts(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Restore :meth:`state_tensors`."""
        restore_training_state(tensors, info, self._nets(), self._opts())
        self.gen.set_state(tensors["rng.train"].cpu())
        self.cpu_gen.set_state(tensors["rng.cpu"].cpu())
        self.pool_a.load(tensors["pool.a"], self.device)
        self.pool_b.load(tensors["pool.b"], self.device)
        for name, s in (("a", self.sampler_a), ("b", self.sampler_b)):
            if s is not None:
                s.load({k: v.cpu() for k, v in state_dict_of(tensors, f"rng.sampler_{name}").items()})


def _scores(d: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """:func:`patch_scores` through a DDP wrapper as well (the output type depends on the wrapped network)."""
    net = distributed.unwrap(d)
    if net is d:
        return patch_scores(d, x)
    out = d(x)
    return list(out[0]) if isinstance(net, MultiScalePatchDiscriminator) else [out[-1]]


class CycleGANTranslator:
    """A trained CycleGAN loaded from a checkpoint: ``translate(images, "A2B" | "B2A")``."""

    def __init__(self, checkpoint: str | Path, device: str | torch.device = "cpu") -> None:
        tensors, meta = load_model_checkpoint(checkpoint, "cyclegan", "CycleGAN")
        self.meta, self.sha256 = meta, meta.sha256
        self.shape: tuple[int, int, int] = meta.shape
        if meta.domains is None:
            raise InputError(checkpoint, "CycleGAN checkpoint without its domains A and B")
        self.domains: dict[str, Any] = meta.domains
        self.model_cfg = CycleGANConfig.model_validate(meta.model)
        self.device = torch.device(device)
        g_ab, g_ba, _, _ = build_cyclegan(self.model_cfg, self.shape)
        for prefix, net in (("g_ab", g_ab), ("g_ba", g_ba)):
            sd = state_dict_of(tensors, prefix)
            finite_or_refuse(
                {f"{prefix}.{k}": v for k, v in sd.items()}, checkpoint, "the generators' weights"
            )
            net.load_state_dict(sd)
        self.g = {"A2B": g_ab.to(self.device).eval(), "B2A": g_ba.to(self.device).eval()}

    @torch.no_grad()
    def translate(self, images: torch.Tensor, direction: str, batch_size: int = 64) -> torch.Tensor:
        """Translate (N, C, H, W) images in [-1, 1]; deterministic (no noise, eval mode)."""
        if direction not in self.g:
            raise InputError("--translate", f"must be A2B or B2A (got {direction!r})")
        outs = [
            self.g[direction](images[i : i + batch_size].to(self.device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(outs) if outs else images[:0]

    def translate_labelled(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every slice of domain A or B translated into the other domain, labelled with its target
        (A -> B first, then B -> A); needs a CycleGAN between two classes of one dataset."""
        dom = self.domains
        if dom.get("mode") != "labels":
            raise InputError(
                "model.domain_a", "this CycleGAN translates between two datasets, not two classes"
            )
        ia, ib = int(dom["label_a"]), int(dom["label_b"])  # type: ignore[call-overload]
        to_b = self.translate(torch.from_numpy(images[labels == ia]), "A2B").numpy()
        to_a = self.translate(torch.from_numpy(images[labels == ib]), "B2A").numpy()
        return np.concatenate([to_b, to_a]), np.concatenate(
            [np.full(len(to_b), ib), np.full(len(to_a), ia)]
        ).astype(np.int64)
