"""The diffusion model on CPU (or GPU): training images/s and generation images/s, beside the cGAN.

    python -m benchmarks.diffusion_speed [--data-dir DIR] [--repeats 3] [--steps 10] [--n 1000] [--sweep]

BreastMNIST, 28 px, batch 64, the configs' settings (``configs/diffusion_breastmnist.yaml`` and
``configs/quickstart.yaml``):

- training images/s of one diffusion step (noise, UNet forward/backward, Adam, EMA), median of
  ``--repeats`` timings of ``--steps`` steps after a warm-up, in fp32 and in bf16 autocast where
  the CPU has it natively; baseline in the same run: the quickstart cGAN's step;
- generation: ``medgan generate`` of ``--n`` slices (NPZ) with the default sampler (the config's
  DDIM steps and guidance) in fp32 (the reproducible default) and with ``--precision bf16`` where
  the CPU runs it natively, wall seconds and images/s, median of ``--repeats`` runs; baseline in
  the same run: the same command on a cGAN checkpoint;
- with ``--sweep``, the sampler's cost per setting (DDIM steps x guidance), images/s in memory
  (docs/results.md's diffusion ablation has the same per setting as "sample s").

The weights are a one-step checkpoint: speed does not depend on what the network learned.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import append_section, machine, time_runs


def _task(cfg_path: str, data_dir: Path, amp: str, device: str = "cpu"):
    from medgan.config import load_config
    from medgan.synthesis import registry
    from medgan.train import checkpoint_meta, training_slices

    cfg = load_config(cfg_path, [f"train.amp='{amp}'"])
    images, labels, meta = training_slices(cfg, data_dir, None)
    entry = registry.get(cfg.model.kind)
    meta = checkpoint_meta(cfg, labels, meta)
    return entry.build_task(cfg, images, labels, meta, torch.device(device)), cfg


def _train_rate(cfg_path: str, data_dir: Path, amp: str, repeats: int, steps: int, device: str) -> float:
    task, cfg = _task(cfg_path, data_dir, amp, device)
    counter = iter(range(10**9))

    def run() -> None:
        for _ in range(steps):
            task.train_step(next(counter))
        if device == "cuda":
            torch.cuda.synchronize()

    t = time_runs(run, repeats=repeats, warmup=1)
    return steps * cfg.train.batch_size / t["median"]


def _checkpoint(cfg_path: str, data_dir: Path, folder: Path) -> Path:
    from medgan.config import load_config
    from medgan.train import train

    cfg = load_config(cfg_path, ["train.steps=1", "train.select.every=0"])
    return train(cfg, folder, data_dir)


def _generate_seconds(
    ckpt: Path, n: int, repeats: int, folder: Path, precision: str, device: str
) -> list[float]:
    from medgan.generate import generate

    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        generate(ckpt, folder / f"g{r}", n // 2, fmt="npz", seed=r, device=device, precision=precision)
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> None:
    """Measure and append the tables to docs/benchmarks.md."""
    from medgan.device import cpu_has_bf16
    from medgan.paths import resolve_data_dir
    from medgan.synthesis import registry

    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sweep", action="store_true", help="also time DDIM steps x guidance settings")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    diff, gan = "configs/diffusion_breastmnist.yaml", "configs/quickstart.yaml"
    native = cpu_has_bf16() if args.device == "cpu" else torch.cuda.is_bf16_supported()
    amps = ["off", "bf16"] if native else ["off"]
    rows = []
    for amp in amps:
        for name, path in (("diffusion", diff), ("cGAN (baseline)", gan)):
            rate = _train_rate(path, data_dir, amp, args.repeats, args.steps, args.device)
            rows.append([name, "bf16" if amp == "bf16" else "fp32", f"{rate:.1f}"])
            print(rows[-1], flush=True)
    append_section(
        "Diffusion model: training images/s at 28 px, batch 64 (BreastMNIST)",
        f"python -m benchmarks.diffusion_speed --repeats {args.repeats} --steps {args.steps} --device {args.device}",
        ["model", "precision", f"images/s (median of {args.repeats} x {args.steps} steps)"],
        rows,
    )
    grows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        precisions = ["fp32", "bf16"] if native else ["fp32"]
        for name, path in (("diffusion", diff), ("cGAN (baseline)", gan)):
            ck = _checkpoint(path, data_dir, t / name.split()[0])
            synth = registry.load_sampler(ck)
            how = (
                f"DDIM {synth.sampling_steps} steps, guidance {synth.guidance_scale:g}"  # type: ignore[attr-defined]
                if hasattr(synth, "sampling_steps")
                else "one generator pass"
            )
            for prec in precisions:
                out = t / f"out-{name.split()[0]}-{prec}"
                secs = _generate_seconds(ck, args.n, args.repeats, out, prec, args.device)
                med = statistics.median(secs)
                row = [
                    name,
                    how,
                    prec,
                    f"{med:.1f}",
                    f"{min(secs):.1f}-{max(secs):.1f}",
                    f"{args.n / med:.1f}",
                ]
                grows.append(row)
                print(row, flush=True)
        ck = t / "diffusion"
        synth = registry.load_sampler(ck, args.device)
        labels, seeds = [i % 2 for i in range(256)], list(range(256))
        srows = []
        for steps in (10, 25, 50) if args.sweep else ():
            for scale in (1.0, 2.0):
                synth.sampling_steps, synth.guidance_scale = steps, scale  # type: ignore[attr-defined]
                r = time_runs(
                    lambda: synth.generate(labels, seeds), repeats=max(2, args.repeats // 2), warmup=0
                )
                srows.append([str(steps), f"{scale:g}", f"{256 / r['median']:.1f}"])
                print(srows[-1], flush=True)
    append_section(
        f"Diffusion model: generating {args.n:,} slices at 28 px (medgan generate, NPZ)",
        f"python -m benchmarks.diffusion_speed --n {args.n} --repeats {args.repeats} --device {args.device}"
        + (" --sweep" if args.sweep else ""),
        ["checkpoint", "sampler", "precision", f"wall s (median of {args.repeats})", "min-max s", "images/s"],
        grows,
        notes=(
            (
                "The sampler's cost by setting (256 slices in memory, batch 256, fp32; guidance != 1 "
                "evaluates the conditional and the null class in one batch of 512):\n\n"
                "| DDIM steps | guidance | images/s |\n|---|---|---|\n"
                + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in srows)
                + "\n\n"
                if srows
                else ""
            )
            + f"({machine()}; native bf16: {native})"
        ),
    )


if __name__ == "__main__":
    main()
