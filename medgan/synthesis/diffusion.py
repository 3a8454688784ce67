"""The class-conditional diffusion model: MONAI's denoising UNet, DDPM training, DDIM sampling.

* The network is MONAI's :class:`~monai.networks.nets.DiffusionModelUNet` (2-D) with
  ``num_class_embeds = classes + 1``: the extra index is the *null class* of classifier-free
  guidance (Ho & Salimans 2022). During training a label is replaced by it with probability
  ``p_uncond``, so one network predicts both the conditional and the unconditional output.
  Channels, levels and attention follow the image size (:func:`unet_plan`); a size that the
  levels do not divide is zero-padded inside :class:`PaddedUNet` and cropped back.
* Training (:class:`DiffusionTask`, driven by the shared fit loop) draws a timestep and noise
  per image, noises the batch with MONAI's :class:`~monai.networks.schedulers.DDPMScheduler`
  and regresses the noise, the velocity or the clean image (``prediction_type``) with an MSE
  loss; an EMA of the weights is what sampling uses.
* Sampling is deterministic DDIM (eta = 0, Song et al. 2021) over ``sampling_steps`` steps
  spaced to end at the last training timestep ("trailing", Lin et al. 2024), from the initial
  noise ``noise_for_seeds(seed)``: image i is a pure function of (checkpoint, label, seed) and
  does not depend on the batch it is computed in beyond floating-point kernel choice. With
  ``guidance_scale`` w != 1 each step evaluates the conditional and the null class in one
  batch and uses ``u + w (c - u)``. :func:`ddim_update` is MONAI's ``DDIMScheduler.step`` for
  eta = 0 on this spacing (a test checks the two agree), written so TorchScript compiles it
  for the exported bundle.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler
from torch import nn

from medgan import distributed
from medgan.config import TrainConfig
from medgan.config.kinds.diffusion import DiffusionConfig
from medgan.device import autocast, cpu_has_bf16, fast_paths
from medgan.errors import InputError
from medgan.grids import make_grid
from medgan.progress import progress
from medgan.seeding import make_generator, noise_for_seeds
from medgan.synthesis.export import seeded_noise
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

#: ``prediction_type`` as the integer code :func:`ddim_update` takes (TorchScript has no Literal).
PREDICTION_CODES = {"epsilon": 0, "v_prediction": 1, "sample": 2}
#: Progress is shown for a sampling call of at least this many image-steps.
PROGRESS_IMAGE_STEPS = 20_000


def unet_plan(shape: Sequence[int], cfg: DiffusionConfig) -> dict[str, Any]:
    """The UNet for slices of ``shape`` (C, H, W): MONAI keyword arguments and the padding multiple.

    Unless ``cfg`` names them: 3 levels (32, 64, 64) with one residual block each up to 32 px,
    4 levels (32, 64, 128, 128) with two blocks up to 64 px, (32, 64, 128, 256) up to 128 px and
    5 levels (32, 64, 128, 256, 256) above; self-attention on every level whose feature map is
    16 px or smaller. The slice is zero-padded to a multiple of ``2 ** (levels - 1)``.
    """
    c, h, w = (int(s) for s in shape)
    side = min(h, w)
    if cfg.channels is not None:
        channels = list(cfg.channels)
    elif side <= 32:
        channels = [32, 64, 64]
    elif side <= 64:
        channels = [32, 64, 128, 128]
    elif side <= 128:
        channels = [32, 64, 128, 256]
    else:
        channels = [32, 64, 128, 256, 256]
    levels = len(channels)
    multiple = 2 ** (levels - 1)
    padded = math.ceil(side / multiple) * multiple
    attention = (
        list(cfg.attention_levels)
        if cfg.attention_levels is not None
        else [padded // 2**i <= 16 for i in range(levels)]
    )
    blocks = cfg.num_res_blocks or (1 if side <= 32 else 2)
    groups = math.gcd(32, *channels)
    heads = [min(cfg.head_channels, ch) for ch in channels]
    return {
        "unet": {
            "spatial_dims": 2,
            "in_channels": c,
            "out_channels": c,
            "channels": channels,
            "attention_levels": attention,
            "num_res_blocks": blocks,
            "num_head_channels": heads,
            "norm_num_groups": groups,
        },
        "multiple": multiple,
    }


class PaddedUNet(nn.Module):
    """MONAI's ``DiffusionModelUNet`` on slices zero-padded to a multiple of its levels, cropped back.

    ``forward(x, timesteps, labels)``: x (N, C, H, W), timesteps (N,) int64, labels (N,) int64 class
    indices (the null class included).
    """

    def __init__(self, shape: Sequence[int], cfg: DiffusionConfig, n_classes: int) -> None:
        super().__init__()
        plan = unet_plan(shape, cfg)
        self.h, self.w = int(shape[1]), int(shape[2])
        m = plan["multiple"]
        self.pad_h, self.pad_w = (-self.h) % m, (-self.w) % m
        self.unet = DiffusionModelUNet(**plan["unet"], num_class_embeds=n_classes + 1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The network's prediction for noisy slices ``x`` at ``timesteps`` of classes ``labels``."""
        if self.pad_h or self.pad_w:
            x = F.pad(x, (0, self.pad_w, 0, self.pad_h))
        out = self.unet(x, timesteps, class_labels=labels)
        return out[..., : self.h, : self.w]


def build_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    """MONAI's DDPM scheduler for ``cfg``'s noise schedule (training: noising, velocity targets)."""
    args: dict[str, Any] = {}
    if cfg.schedule != "cosine":
        args = {"beta_start": cfg.beta_start, "beta_end": cfg.beta_end}
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        schedule=cfg.schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=cfg.clip_sample,
        **args,
    )


def ddim_timesteps(num_train_timesteps: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` DDIM timesteps from the last training timestep down ("trailing" spacing), and each
    one's predecessor (-1 after the last: the clean image)."""
    t = torch.round(torch.arange(num_train_timesteps, 0, -num_train_timesteps / steps)).long() - 1
    t = t[:steps]
    prev = torch.cat([t[1:], torch.tensor([-1])])
    return t, prev


def ddim_update(
    out: torch.Tensor,
    x: torch.Tensor,
    alpha_t: torch.Tensor,
    alpha_prev: torch.Tensor,
    prediction: int,
    clip: bool,
) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0): ``x`` at a timestep with cumulative alpha ``alpha_t`` to
    its predecessor (``alpha_prev``), from the network output ``out`` (``prediction``: 0 noise, 1
    velocity, 2 clean image; ``clip``: the clean-image estimate clamped to [-1, 1])."""
    sa, sb = alpha_t.sqrt(), (1.0 - alpha_t).sqrt()
    if prediction == 0:
        x0 = (x - sb * out) / sa
        eps = out
    elif prediction == 1:
        x0 = sa * x - sb * out
        eps = sa * out + sb * x
    else:
        x0 = out
        eps = (x - sa * x0) / sb
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
    return alpha_prev.sqrt() * x0 + (1.0 - alpha_prev).sqrt() * eps


def guided(
    net: nn.Module, x: torch.Tensor, t: int, labels: torch.Tensor, null: int, scale: float
) -> torch.Tensor:
    """The network output at timestep ``t`` with classifier-free guidance ``scale`` (1: conditional only)."""
    n = x.shape[0]
    if scale == 1.0:
        return net(x, torch.full((n,), t, dtype=torch.long, device=x.device), labels)
    both = net(
        torch.cat([x, x]),
        torch.full((2 * n,), t, dtype=torch.long, device=x.device),
        torch.cat([labels, torch.full_like(labels, null)]),
    )
    cond, uncond = both[:n], both[n:]
    return uncond + scale * (cond - uncond)


@torch.no_grad()
def ddim_sample(
    net: nn.Module,
    labels: Sequence[int],
    seeds: Sequence[int],
    shape: Sequence[int],
    cfg: DiffusionConfig,
    alphas_cumprod: torch.Tensor,
    device: torch.device,
    *,
    steps: int,
    guidance: float,
    null: int,
    batch_size: int = 256,
    amp: str = "off",
) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] on the CPU: DDIM from ``noise_for_seeds(seeds)``, in fixed batches.

    Image i depends only on (weights, labels[i], seeds[i]) and the sampler settings; ``amp="bf16"``
    runs the network under bf16 autocast (faster where native; not bit-identical to fp32).
    """
    if len(labels) != len(seeds):
        raise ValueError("labels and seeds must have the same length")
    c, h, w = (int(s) for s in shape)
    if len(labels) == 0:
        return torch.empty((0, c, h, w))
    net.eval()
    ts, prev = ddim_timesteps(cfg.num_train_timesteps, steps)
    acp = alphas_cumprod.to(device=device, dtype=torch.float32)
    one = torch.ones((), device=device)
    code = PREDICTION_CODES[cfg.prediction_type]
    y_all = torch.as_tensor(list(labels), dtype=torch.long)
    s_all = list(seeds)
    batches = [(b, i) for b in range(0, len(y_all), batch_size) for i in range(len(ts))]
    show = len(y_all) * steps * (1 if guidance == 1.0 else 2) >= PROGRESS_IMAGE_STEPS
    outs: list[torch.Tensor] = []
    x = torch.empty(0)
    y = torch.empty(0, dtype=torch.long)
    for b, i in progress(batches, "sampling (DDIM)", minimum=0 if show else len(batches)):
        if i == 0:
            y = y_all[b : b + batch_size].to(device)
            x = noise_for_seeds(s_all[b : b + batch_size], c * h * w, device).view(-1, c, h, w)
        t, tp = int(ts[i]), int(prev[i])
        with autocast(device, amp):
            out = guided(net, x, t, y, null, guidance).float()
        x = ddim_update(out, x, acp[t], acp[tp] if tp >= 0 else one, code, cfg.clip_sample)
        if i == len(ts) - 1:
            outs.append(x.clamp(-1.0, 1.0).cpu())
    return torch.cat(outs)


class DiffusionTask:
    """The denoising UNet, its EMA, optimizer and training step (a :class:`~medgan.training.loop.Task`)."""

    kind = "diffusion"

    def __init__(
        self,
        model_cfg: DiffusionConfig,
        train_cfg: TrainConfig,
        n_classes: int,
        shape: Sequence[int],
        device: torch.device,
        seed: int,
    ) -> None:
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.n_classes, self.shape, self.device = n_classes, tuple(int(s) for s in shape), device
        torch.manual_seed(seed)
        self.net = PaddedUNet(self.shape, model_cfg, n_classes).to(device)
        self.amp, self.channels_last = fast_paths(device, train_cfg.amp, train_cfg.channels_last, self.shape)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.ema = make_ema(self.net)
        self.scheduler = build_scheduler(model_cfg)
        fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
        self.opt = torch.optim.Adam(self.net.parameters(), lr=train_cfg.lr_g, betas=train_cfg.betas, **fused)
        self.gen = make_generator(distributed.rank_seed(seed + 1), device)  # noise, timesteps, label dropout
        self.sampler: ClassBatchSampler | None = None
        self.net_sync: nn.Module = self.net
        if distributed.world_size() > 1:  # gradients averaged over ranks; self.net stays unwrapped
            self.net_sync = distributed.wrap_ddp(self.net, device)

    @property
    def null(self) -> int:
        """The null class index (classifier-free guidance)."""
        return self.n_classes

    def attach_data(self, images: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
        """Give the training images (N, C, H, W) in [-1, 1] and labels (N,); each rank draws from its share."""
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
        """The optimizer with its base learning rate (``train.lr_g``; the loop applies the schedule)."""
        return [(self.opt, self.train_cfg.lr_g)]

    def _target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        kind = self.model_cfg.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return self.scheduler.get_velocity(x0, noise, t)
        return x0

    def train_step(self, step: int) -> dict[str, float | torch.Tensor]:
        """One denoising step: noise a batch at random timesteps, regress the target, update the EMA."""
        assert self.sampler is not None, "attach_data() first"
        mc, tc = self.model_cfg, self.train_cfg
        self.net.train()
        x0, y = self.sampler.next()
        n = len(y)
        noise = torch.randn(x0.shape, generator=self.gen, device=self.device)
        t = torch.randint(0, mc.num_train_timesteps, (n,), generator=self.gen, device=self.device)
        drop = torch.rand(n, generator=self.gen, device=self.device) < mc.p_uncond
        y_in = torch.where(drop, torch.full_like(y, self.null), y)
        xt = self.scheduler.add_noise(x0, noise, t)
        if self.channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp):
            out = self.net_sync(xt, t, y_in)
        loss = F.mse_loss(out.float(), self._target(x0, noise, t))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        stats: dict[str, float | torch.Tensor] = {"loss": loss.detach()}
        if mc.grad_clip is not None:
            stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.net.parameters(), mc.grad_clip)
        self.opt.step()
        world = distributed.world_size()
        beta = ema_beta(
            mc.ema_decay,
            mc.ema_kimg,
            mc.ema_rampup,
            (step + 1) * tc.batch_size * world,
            tc.batch_size * world,
        )
        update_ema(self.ema, self.net, beta if step >= mc.ema_start else 0.0)
        stats["ema_beta"] = beta
        stats["lr"] = self.opt.param_groups[0]["lr"]
        return stats

    def _sample(self, labels: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        mc = self.model_cfg
        return ddim_sample(
            self.ema,
            labels,
            seeds,
            self.shape,
            mc,
            self.scheduler.alphas_cumprod,
            self.device,
            steps=mc.select_sampling_steps,
            guidance=mc.guidance_scale,
            null=self.null,
            amp=self.amp,
        )

    @torch.no_grad()
    def generate(self, labels: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """EMA samples with the cheap sampler (``select_sampling_steps``), for checkpoint selection."""
        return self._sample(labels, seeds).numpy()

    @torch.no_grad()
    def sample_grid(self, per_class: int, seed: int) -> np.ndarray:
        """A (C, H, W) grid in [-1, 1]: one row per class, ``per_class`` EMA samples (cheap sampler)."""
        labels = torch.arange(self.n_classes).repeat_interleave(per_class).tolist()
        seeds = [seed * 1000 + i for i in range(per_class)] * self.n_classes
        return make_grid(self._sample(labels, seeds).numpy(), per_class)

    def _nets(self) -> dict[str, nn.Module]:
        return {"unet": self.net, "unet_ema": self.ema}

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to resume (or to sample): flat tensors + JSON-able info."""
        t, info = flatten_training_state(self._nets(), {"opt": self.opt})
        t["rng.train"] = self.gen.get_state()
        if self.sampler is not None:
            t.update({f"rng.sampler.{k}": v for k, v in self.sampler.state().items()})
        return t, info

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Restore :meth:`state_tensors` (for ``--resume``)."""
        restore_training_state(tensors, info, self._nets(), {"opt": self.opt})
        self.gen.set_state(tensors["rng.train"].cpu())
        if self.sampler is not None:
            self.sampler.load(
                {k.split(".", 2)[2]: v.cpu() for k, v in tensors.items() if k.startswith("rng.sampler.")}
            )


class SeededDDIM(nn.Module):
    """TorchScript-ready sampler: ``forward(seeds, labels)`` runs the whole DDIM loop from each seed's noise.

    The same operations as :func:`ddim_sample` (noise by :func:`~medgan.synthesis.export.seeded_noise`,
    :func:`guided`, :func:`ddim_update`), so it gives the images ``medgan generate`` gives.
    """

    def __init__(
        self,
        net: nn.Module,
        shape: Sequence[int],
        alphas_cumprod: torch.Tensor,
        timesteps: torch.Tensor,
        prev: torch.Tensor,
        *,
        n_classes: int,
        guidance: float,
        prediction: int,
        clip: bool,
    ) -> None:
        super().__init__()
        self.net = net
        self.c, self.h, self.w = (int(s) for s in shape)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float().clone())
        self.register_buffer("timesteps", timesteps.long().clone())
        self.register_buffer("prev", prev.long().clone())
        self.n_classes, self.guidance = n_classes, float(guidance)
        self.prediction, self.clip = int(prediction), bool(clip)

    def _model(self, x: torch.Tensor, t: int, labels: torch.Tensor) -> torch.Tensor:
        n = x.size(0)
        if self.guidance == 1.0:
            return self.net(x, torch.full([n], t, dtype=torch.long, device=x.device), labels)
        both = self.net(
            torch.cat([x, x]),
            torch.full([2 * n], t, dtype=torch.long, device=x.device),
            torch.cat([labels, torch.full_like(labels, self.n_classes)]),
        )
        cond, uncond = both[:n], both[n:]
        return uncond + self.guidance * (cond - uncond)

    def forward(self, seeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) int64 seeds and class indices -> (N, C, H, W) float32 images in [-1, 1]."""
        if seeds.dim() != 1 or labels.dim() != 1 or seeds.size(0) != labels.size(0):
            raise ValueError("seeds and labels must be 1-D tensors of the same length")
        if labels.numel() > 0 and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError("labels must be class indices in [0, n_classes)")
        y = labels.to(torch.int64).to(self.alphas_cumprod.device)
        x = seeded_noise(seeds.to(self.alphas_cumprod.device), self.c * self.h * self.w)
        x = x.view(-1, self.c, self.h, self.w)
        one = torch.ones([], device=x.device)
        for i in range(self.timesteps.size(0)):
            t, tp = int(self.timesteps[i]), int(self.prev[i])
            out = self._model(x, t, y).float()
            a_prev = self.alphas_cumprod[tp] if tp >= 0 else one
            x = ddim_update(out, x, self.alphas_cumprod[t], a_prev, self.prediction, self.clip)
        return x.clamp(-1.0, 1.0)


class DiffusionSynthesizer(SamplerBase):
    """A trained diffusion model loaded from a checkpoint, for generation.

    ``sampling_steps`` and ``guidance_scale`` start at the recorded config's values; set them on
    the object to sample the same weights another way (the images then differ).
    """

    def __init__(self, checkpoint: str | Path, device: str | torch.device = "cpu") -> None:
        tensors, meta = load_model_checkpoint(checkpoint, "diffusion", "diffusion model")
        self.meta, self.sha256 = meta, meta.sha256
        self.classes: list[str] = list(meta.classes)
        self.shape: tuple[int, int, int] = meta.shape
        self.model_cfg = DiffusionConfig.model_validate(meta.model)
        self.device = torch.device(device)
        self.sampling_steps = self.model_cfg.sampling_steps
        self.guidance_scale = self.model_cfg.guidance_scale
        net = PaddedUNet(self.shape, self.model_cfg, len(self.classes))
        sd = state_dict_of(tensors, "unet_ema")
        finite_or_refuse({f"unet_ema.{k}": v for k, v in sd.items()}, checkpoint, "the network's weights")
        try:
            net.load_state_dict(sd)
        except RuntimeError as exc:
            raise InputError(
                checkpoint, f"network weights do not fit the recorded model ({str(exc)[:120]})"
            ) from None
        self.net = net.to(self.device).eval()
        self.alphas_cumprod = build_scheduler(self.model_cfg).alphas_cumprod.float()

    def generate(
        self,
        labels: Sequence[int],
        seeds: Sequence[int],
        batch_size: int | None = None,
        precision: str = "fp32",
    ) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1]; image i is a pure function of (checkpoint, labels[i], seeds[i])
        and the sampler settings. ``batch_size`` defaults to 1024 on CUDA and 256 elsewhere (keep it fixed
        for bit-identical results); ``precision="bf16"`` samples under bf16 autocast where the device
        runs bf16 natively (CUDA; a CPU with AVX512-BF16 or AMX: about 1.8x faster on 2 cores), fp32
        elsewhere. bf16 images are close to the fp32 ones, not equal."""
        native = self.device.type == "cuda" or (self.device.type == "cpu" and cpu_has_bf16())
        amp = "bf16" if precision == "bf16" and native else "off"
        return ddim_sample(
            self.net,
            labels,
            seeds,
            self.shape,
            self.model_cfg,
            self.alphas_cumprod,
            self.device,
            steps=self.sampling_steps,
            guidance=self.guidance_scale,
            null=len(self.classes),
            batch_size=batch_size or (1024 if self.device.type == "cuda" else 256),
            amp=amp,
        )

    def export(self) -> Export:
        """The whole DDIM sampler as TorchScript ``forward(seeds, labels)``, for a bundle."""
        net = copy.deepcopy(self.net).cpu().eval()
        for p in net.parameters():
            p.requires_grad_(False)
        c, h, w = self.shape
        example = (
            torch.zeros(2, c, h, w),
            torch.zeros(2, dtype=torch.long),
            torch.zeros(2, dtype=torch.long),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings of torch.jit
            traced = torch.jit.trace(net, example, check_trace=False)
            ts, prev = ddim_timesteps(self.model_cfg.num_train_timesteps, self.sampling_steps)
            module = torch.jit.script(
                SeededDDIM(
                    traced,
                    self.shape,
                    self.alphas_cumprod,
                    ts,
                    prev,
                    n_classes=len(self.classes),
                    guidance=self.guidance_scale,
                    prediction=PREDICTION_CODES[self.model_cfg.prediction_type],
                    clip=self.model_cfg.clip_sample,
                )
            )
        return Export(
            module=module.eval(),
            weights={k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
            what="class-conditional diffusion model (DDIM sampler)",
            noise="x_T = noise_for_seeds(seed) over C*H*W values: SplitMix64 counter hash + float64 "
            "Box-Muller (medgan.seeding); deterministic DDIM (eta = 0) from there",
            network={
                "sampling_steps": self.sampling_steps,
                "guidance_scale": self.guidance_scale,
                "prediction_type": self.model_cfg.prediction_type,
                "schedule": self.model_cfg.schedule,
                "num_train_timesteps": self.model_cfg.num_train_timesteps,
            },
            references=[
                "Ho J., Jain A., Abbeel P. Denoising Diffusion Probabilistic Models. NeurIPS 2020. https://arxiv.org/abs/2006.11239",
                "Song J., Meng C., Ermon S. Denoising Diffusion Implicit Models. ICLR 2021. https://arxiv.org/abs/2010.02502",
                "Ho J., Salimans T. Classifier-Free Diffusion Guidance. 2022. https://arxiv.org/abs/2207.12598",
            ],
            tolerance=1e-4,
        )
