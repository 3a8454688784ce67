"""GPU check for the conditional GAN: training and generation at 64 px (one prepared script).

    python -m benchmarks.gpu_cgan --data-dir DIR [--steps 300] [--n-gen 100000] [--repeats 5]

- trains ``--steps`` steps at 64 px (PneumoniaMNIST resized, medgan's CUDA defaults: bf16
  autocast, channels_last, fused Adam) and reports steps/s;
- generation in memory, 64x64 slices/s (median of ``--repeats`` after a warm-up) for fp32 and
  ``--precision bf16``, against the straightforward way in the same run (a ``torch.Generator``
  seeded per image on the CPU, batch 256, fp32, each batch copied back as it is made);
- generation to disk, slices/s per format through ``medgan.generate.generate`` (NPZ with
  ``--n-gen`` / 5 slices, PNG / NIfTI / DICOM with 2,000), median of 3.

Prints the figures with the GPU's name and appends them to docs/benchmarks.md. Exits 0 with a
message when no CUDA device is present.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import append_section


def _old_way(g: torch.nn.Module, labels: list[int], seeds: list[int], z_dim: int) -> torch.Tensor:
    """The baseline: per-image CPU generator, batch 256, fp32, copy back per batch."""
    z = torch.empty((len(seeds), z_dim))
    gen = torch.Generator()
    for i, s in enumerate(seeds):
        gen.manual_seed(int(s))
        z[i] = torch.randn(z_dim, generator=gen)
    y = torch.as_tensor(labels)
    outs = []
    with torch.no_grad():
        for s in range(0, len(y), 256):
            outs.append(g(z[s : s + 256].cuda(), y[s : s + 256].cuda()).float().cpu())
    return torch.cat(outs)


def _timed(fn, repeats: int) -> list[float]:
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def _rate(n: int, times: list[float]) -> str:
    return f"{n / statistics.median(times):,.0f} ({n / max(times):,.0f}-{n / min(times):,.0f})"


def main(argv: list[str] | None = None) -> None:
    """Run the GPU training + generation check."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--n-gen", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    from medgan.config import load_config
    from medgan.generate import generate
    from medgan.synthesis.cgan import CGANSynthesizer
    from medgan.train import train

    repo = Path(__file__).resolve().parents[1]
    over = [
        "data.source.name=pneumoniamnist",
        "data.size=64",
        f"train.steps={args.steps}",
        "train.sample_every=100000",
        f"train.checkpoint_every={args.steps}",
    ]
    cfg = load_config(repo / "configs/quickstart.yaml", over)
    rows: list[list[str]] = []
    gpu = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ckpt = train(cfg, Path(tmp) / "run", Path(args.data_dir))
        torch.cuda.synchronize()
        t_train = time.perf_counter() - t0
        rows.append(
            [
                gpu,
                f"train {args.steps} steps, batch 64, bf16 (incl. data loading, start-up, one checkpoint)",
                f"{args.steps / t_train:.1f} steps/s",
                "",
                "",
            ]
        )
        synth = CGANSynthesizer(ckpt, "cuda")
        n = args.n_gen
        labels = [i % 2 for i in range(n)]
        seeds = list(range(n))
        t_old = _timed(lambda: _old_way(synth.g, labels, seeds, synth.model_cfg.z_dim), args.repeats)
        for prec in ("fp32", "bf16"):
            t_new = _timed(lambda prec=prec: synth.generate(labels, seeds, precision=prec), args.repeats)
            ratio = statistics.median(t_old) / statistics.median(t_new)
            rows.append(
                [
                    gpu,
                    f"generate {n:,} slices 64x64 in memory, {prec}",
                    _rate(n, t_new),
                    _rate(n, t_old),
                    f"{ratio:.1f}x",
                ]
            )
        for fmt, count in (("npz", n // 5), ("png", 2000), ("nifti", 2000), ("dicom", 2000)):
            times = []
            for k in range(3):
                t0 = time.perf_counter()
                generate(ckpt, Path(tmp) / f"{fmt}{k}", count // 2, fmt=fmt, device="cuda", batch_size=4096)
                times.append(time.perf_counter() - t0)
            rows.append(
                [
                    gpu,
                    f"generate {count:,} slices 64x64 to {fmt} (medgan generate)",
                    _rate(count, times),
                    "",
                    "",
                ]
            )
    mem = f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    print(
        append_section(
            "Conditional GAN on GPU, 64 px: training and generation",
            "python -m benchmarks.gpu_cgan " + " ".join(argv if argv is not None else sys.argv[1:]),
            ["GPU", "what", "medgan", "baseline (per-image CPU generator, batch 256, fp32)", "ratio"],
            rows,
            notes=f"Median (min-max) slices/s; {args.repeats} runs after a warm-up in memory, 3 runs to disk; {mem}.",
        )
    )


if __name__ == "__main__":
    main()
