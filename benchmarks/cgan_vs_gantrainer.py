"""Conditional GAN training step: medgan's loop against MONAI's ``GanTrainer``, same networks.

    python -m benchmarks.cgan_vs_gantrainer [--data-dir DIR] [--size 28] [--repeats 5] [--steps 30]

Both sides train the same medgan networks (``ConditionalGenerator`` + ``ProjectionDiscriminator``
from ``configs/quickstart.yaml``, two classes), from the same initial weights, with the same
batch (64), the same hinge loss, Adam 2e-4 (0.5, 0.999) and no DiffAugment, on the same device,
on BreastMNIST's training slices (resized when ``--size`` is not 28):

- **MONAI ``GanTrainer``** (the baseline): ``monai.data.Dataset`` of dicts + ``monai.data.DataLoader``
  (shuffled; on CUDA 4 persistent workers, pinned memory and non-blocking copies), its default
  ``prepare_batch`` and decollation, a conditional ``Inferer`` that passes (z, label) to the
  generator, plain ``torch.optim.Adam`` and fp32 (GanTrainer has no autocast in its iteration).
- **medgan** as ``medgan train`` runs it: ``ConditionalGAN.train_step`` plus the loop's per-step
  work (learning-rate schedule, one read-back of the logged scalars), the training set resident
  on the device and sampled by index, foreach/fused Adam, a multi-tensor EMA update of the
  generator (work the baseline does not do). Measured twice on CUDA: fp32 (same precision as
  the baseline) and medgan's CUDA defaults (bf16 autocast + channels_last). On a CPU with
  native bf16 (AVX512-BF16 / AMX), also with ``train.amp: bf16`` (CPU autocast).

Each figure is the median (min-max) steps/s of ``--repeats`` timings of ``--steps`` steps after
a warm-up; the baseline is timed in the same process, interleaved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._common import append_section, time_runs


def _data(data_dir: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(Path(data_dir) / "medmnist/breastmnist.npz") as z:
        x = torch.from_numpy(z["train_images"][:, None].astype(np.float32) / 127.5 - 1.0)
        y = torch.from_numpy(z["train_labels"].reshape(-1).astype(np.int64))
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, y


def _configs(size: int, amp: str, channels_last: str) -> tuple[Any, Any]:
    from medgan.config import load_config

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(
        repo / "configs/quickstart.yaml",
        ["model.diffaugment=[]", f"train.amp='{amp}'", f"train.channels_last='{channels_last}'"],
    )
    return cfg.model, cfg.train


def medgan_runner(
    x: torch.Tensor, y: torch.Tensor, dev: torch.device, steps: int, amp: str, channels_last: str
) -> Any:
    """A callable that runs ``steps`` medgan training steps as the fit loop does."""
    from medgan.synthesis.cgan import ConditionalGAN
    from medgan.training.loop import lr_factor, scalars

    mc, tc = _configs(x.shape[-1], amp, channels_last)
    task = ConditionalGAN(mc, tc, 2, tuple(x.shape[1:]), dev, 0)
    task.attach_data(x, y, 0)
    counter = {"s": 0}

    def run() -> None:
        for _ in range(steps):
            f = lr_factor(counter["s"], 10**6, tc.lr_schedule, tc.decay_start)
            for opt, base in task.optimizers():
                for group in opt.param_groups:
                    group["lr"] = base * f
            scalars(task.train_step(counter["s"]))
            counter["s"] += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return run


def gantrainer_runner(x: torch.Tensor, y: torch.Tensor, dev: torch.device, steps: int) -> Any:
    """A callable that runs ``steps`` iterations of MONAI's GanTrainer on the same networks."""
    from monai.data import DataLoader, Dataset
    from monai.engines import GanTrainer
    from monai.inferers import Inferer

    from medgan.synthesis.networks import build_cgan

    mc, tc = _configs(x.shape[-1], "off", "off")
    torch.manual_seed(0)
    g, d = build_cgan(mc, 2, tuple(x.shape[1:]))
    g.to(dev)
    d.to(dev)
    opt_g = torch.optim.Adam(g.parameters(), lr=tc.lr_g, betas=tc.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=tc.lr_d, betas=tc.betas)
    ds = Dataset([{"image": x[i], "label": int(y[i])} for i in range(len(x))])
    cuda = dev.type == "cuda"
    loader = DataLoader(
        ds,
        batch_size=tc.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=4 if cuda else 0,
        persistent_workers=cuda,
        pin_memory=cuda,
    )

    class ConditionalInferer(Inferer):
        def __call__(self, inputs: Any, network: Any, *args: Any, **kwargs: Any) -> Any:
            z, labels = inputs
            return network(z, labels), labels

    def make_latent(num_latents: int, latent_size: int, device: Any = None, **_: Any) -> Any:
        z = torch.randn(num_latents, latent_size, device=device)
        return z, torch.randint(0, 2, (num_latents,), device=device)

    def d_loss(g_out: Any, d_in: Any) -> torch.Tensor:
        (fake, yf), (real, yr) = g_out, d_in
        return F.relu(1 - d(real, yr)).mean() + F.relu(1 + d(fake.detach(), yf)).mean()

    def g_loss(g_out: Any) -> torch.Tensor:
        fake, yf = g_out
        return -d(fake, yf).mean()

    def run() -> None:
        trainer = GanTrainer(
            device=dev,
            max_epochs=1,
            train_data_loader=loader,
            epoch_length=steps,
            g_network=g,
            g_optimizer=opt_g,
            g_loss_function=g_loss,
            d_network=d,
            d_optimizer=opt_d,
            d_loss_function=d_loss,
            g_inferer=ConditionalInferer(),
            latent_shape=mc.z_dim,
            non_blocking=cuda,
            g_prepare_batch=make_latent,
        )
        trainer.run()
        if cuda:
            torch.cuda.synchronize()

    return run


def _rate(t: dict[str, float], steps: int) -> dict[str, float]:
    return {"median": steps / t["median"], "min": steps / t["max"], "max": steps / t["min"]}


def _fmt(r: dict[str, float]) -> str:
    return f"{r['median']:,.1f} ({r['min']:,.1f}-{r['max']:,.1f})"


def main(argv: list[str] | None = None) -> None:
    """Measure and append to docs/benchmarks.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--size", type=int, nargs="+", default=[28])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args(argv)
    from medgan.device import cpu_has_bf16

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for size in args.size:
        x, y = _data(args.data_dir, size)
        runners = {"baseline": gantrainer_runner(x, y, dev, args.steps)}
        runners["medgan fp32"] = medgan_runner(x, y, dev, args.steps, "off", "off")
        if dev.type == "cuda":
            runners["medgan defaults"] = medgan_runner(x, y, dev, args.steps, "auto", "auto")
        elif cpu_has_bf16():  # train.amp: bf16 on a CPU with native bf16 (AVX512-BF16 / AMX)
            runners["medgan bf16 (train.amp: bf16)"] = medgan_runner(x, y, dev, args.steps, "bf16", "off")
        times: dict[str, list[float]] = {k: [] for k in runners}
        for fn in runners.values():  # warm-up (cuDNN autotune, workers, allocator)
            fn()
        for _ in range(args.repeats):  # interleaved, so drift hits every side alike
            for k, fn in runners.items():
                times[k].append(time_runs(fn, 1, warmup=0)["median"])
        rates = {
            k: _rate({"median": float(np.median(v)), "min": min(v), "max": max(v)}, args.steps)
            for k, v in times.items()
        }
        base = rates["baseline"]["median"]
        for k in runners:
            if k == "baseline":
                continue
            rows.append(
                [
                    f"{size} px",
                    k if dev.type == "cuda" or k != "medgan fp32" else "medgan (fp32; CPU default)",
                    _fmt(rates[k]),
                    _fmt(rates["baseline"]),
                    f"{rates[k]['median'] / base:.2f}x",
                ]
            )
        print(rows)
    text = append_section(
        "Conditional GAN training step: medgan loop vs MONAI GanTrainer (same networks)",
        "python -m benchmarks.cgan_vs_gantrainer " + " ".join(argv if argv is not None else sys.argv[1:]),
        ["size", "medgan setting", "medgan steps/s", "GanTrainer steps/s (baseline)", "ratio"],
        rows,
        f"Batch 64, hinge loss, no DiffAugment, {args.repeats} interleaved repeats of "
        f"{args.steps} steps after a warm-up; median (min-max).",
    )
    print(text)


if __name__ == "__main__":
    main()
