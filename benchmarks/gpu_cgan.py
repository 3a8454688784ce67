"""GPU check for the conditional GAN (one prepared script, < 5 minutes on one GPU).

    python -m benchmarks.gpu_cgan --data-dir DIR

Trains 500 steps at 64 px (PneumoniaMNIST resized) with bf16 autocast and channels_last,
then generates 10,000 images in memory and to NPZ; prints the figures with the GPU's name and
appends them to docs/benchmarks.md. Skips (exit 0, message) when no CUDA device is present.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import append_section


def main(argv: list[str] | None = None) -> None:
    """Run the GPU training + generation check."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--n-gen", type=int, default=10_000)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    from medgan.config import load_config
    from medgan.generate import generate
    from medgan.train import train

    repo = Path(__file__).resolve().parents[1]
    over = [
        "data.source.name=pneumoniamnist",
        "data.size=64",
        f"train.steps={args.steps}",
        "train.amp=bf16",
        "train.sample_every=100000",
        f"train.checkpoint_every={args.steps}",
    ]
    cfg = load_config(repo / "configs/quickstart.yaml", over)
    with tempfile.TemporaryDirectory() as tmp:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        ckpt = train(cfg, Path(tmp) / "run", Path(args.data_dir))
        torch.cuda.synchronize()
        t_train = time.perf_counter() - t0
        from medgan.synthesis.cgan import CGANSynthesizer

        synth = CGANSynthesizer(ckpt, "cuda")
        labels = [i % 2 for i in range(args.n_gen)]
        seeds = list(range(args.n_gen))
        synth.generate(labels[:512], seeds[:512], 1024)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        synth.generate(labels, seeds, 1024)
        torch.cuda.synchronize()
        t_mem = time.perf_counter() - t0
        t0 = time.perf_counter()
        generate(ckpt, Path(tmp) / "npz", args.n_gen // 2, fmt="npz", device="cuda", batch_size=1024)
        t_npz = time.perf_counter() - t0
    rows = [
        [
            torch.cuda.get_device_name(0),
            f"{args.steps / t_train:.1f} (incl. data loading and start-up)",
            f"{args.n_gen / t_mem:,.0f}",
            f"{args.n_gen / t_npz:,.0f}",
            f"{torch.cuda.max_memory_allocated() / 2**30:.2f}",
        ]
    ]
    print(
        append_section(
            "Conditional GAN on GPU, 64 px, bf16",
            "python -m benchmarks.gpu_cgan --data-dir ../shared/data",
            [
                "GPU",
                "train steps/s (500 steps)",
                "generation slices/s in memory",
                "to NPZ slices/s",
                "peak GPU GiB",
            ],
            rows,
            notes="Single run of each (a device check, not a median); see benchmarks.train_cgan for CPU medians.",
        )
    )


if __name__ == "__main__":
    main()
