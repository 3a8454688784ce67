"""CycleGAN training throughput: medgan's defaults against the reference settings, same networks.

    python -m benchmarks.train_cyclegan [--repeats 3] [--sizes 64 256]

For 64 and 256 px (reference ResNet generator, 6 / 9 residual blocks, ngf 64, 70x70 PatchGAN
with ndf 64): training images/s (A and B images per second) of

- medgan's defaults: batch 8; on CUDA bf16 autocast, channels_last and fused Adam;
- the reference settings (junyanz/pytorch-CycleGAN-and-pix2pix): batch 1, fp32,

both through medgan's own training step on the same device in the same run. Each figure is
the median (min-max) of ``--repeats`` timings of a few steps after a warm-up step.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._common import append_section, time_runs
from medgan.config import CycleGANConfig, TrainConfig
from medgan.synthesis.cyclegan import CycleGAN


def images_per_s(
    size: int, batch: int, amp: str, channels_last: str, repeats: int, steps: int
) -> dict[str, float]:
    """Images/s for one setting (random images; throughput does not depend on content)."""
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mc = CycleGANConfig(kind="cyclegan")
    tc = TrainConfig(batch_size=batch, amp=amp, channels_last=channels_last, betas=(0.5, 0.999))
    task = CycleGAN(mc, tc, (1, size, size), dev, 0)
    data = torch.rand(max(16, batch * 2), 1, size, size) * 2 - 1
    task.attach_data(data, data.clone(), 0)
    counter = {"s": 0}

    def run() -> None:
        for _ in range(steps):
            task.train_step(counter["s"])
            counter["s"] += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t = time_runs(run, repeats)
    return {k: steps * batch / v for k, v in t.items() if k != "n"}


def main(argv: list[str] | None = None) -> None:
    """Measure and append to docs/benchmarks.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    args = ap.parse_args(argv)
    on_gpu = torch.cuda.is_available()
    rows = []
    for size in args.sizes:
        steps_ref = 4 if size <= 64 else 1
        ours = images_per_s(size, 8, "auto", "auto", args.repeats, max(1, steps_ref // 4))
        ref = images_per_s(size, 1, "off", "off", args.repeats, steps_ref)
        lo, hi = sorted((ours["min"], ours["max"]))
        rlo, rhi = sorted((ref["min"], ref["max"]))
        rows.append(
            [
                f"{size} x {size}",
                f"{ours['median']:.2f} ({lo:.2f}-{hi:.2f})",
                f"{ref['median']:.2f} ({rlo:.2f}-{rhi:.2f})",
                f"{ours['median'] / ref['median']:.2f}x",
            ]
        )
        print(rows[-1])
    setting = (
        "batch 8, bf16 autocast, channels_last, fused Adam"
        if on_gpu
        else "batch 8, fp32 (bf16 and channels_last are CUDA-only)"
    )
    print(
        append_section(
            "CycleGAN training images/s: medgan defaults vs reference settings",
            f"python -m benchmarks.train_cyclegan --repeats {args.repeats} --sizes {' '.join(map(str, args.sizes))}",
            ["size", f"medgan defaults ({setting})", "reference (batch 1, fp32)", "ratio"],
            rows,
            notes=(
                "Same networks (ResNet generator with 6 blocks below 256 px and 9 at 256, ngf 64; PatchGAN ndf 64), "
                "same training step (2 generators, 2 discriminators, cycle + identity losses, image pools), "
                "median (min-max) of the repeats after a warm-up."
            ),
        )
    )


if __name__ == "__main__":
    main()
