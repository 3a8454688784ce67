"""A short GPU probe: where a conditional-GAN step's time goes, generation and CycleGAN throughput.

    python -m benchmarks.gpu_probe [--budget 140]

Prints each figure as soon as it is measured (so a time limit loses only what was not reached):

1. cGAN training step at 28 and 64 px (batch 64, quickstart networks): steps/s for fp32 and
   bf16 + channels-last, then a profile of one step: CUDA kernels launched, host (CPU) time and
   device (kernel) time per step -- a step whose host time exceeds its device time is bound by
   kernel launches, not by the GPU;
2. generation of 64x64 slices in memory: medgan (fp32, bf16) against a per-image CPU
   ``torch.Generator`` + batch 256 loop; then NPZ to disk through ``medgan.generate``;
3. CycleGAN images/s at 256 px: medgan defaults (batch 8, bf16, channels-last) against the
   reference settings (batch 1, fp32), same networks and step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _sync() -> None:
    torch.cuda.synchronize()


def _rate(fn, n: int, repeats: int = 3) -> str:
    fn()
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return f"{n / statistics.median(times):,.1f}/s ({n / max(times):,.1f}-{n / min(times):,.1f}, n={repeats})"


def cgan_steps(size: int, amp: str, cl: str, steps: int = 40) -> tuple[str, object]:
    """Steps/s of medgan's cGAN step at ``size`` px."""
    from benchmarks.cgan_vs_gantrainer import medgan_runner

    x = torch.rand(546, 1, size, size) * 2 - 1
    y = torch.randint(0, 2, (546,))
    run = medgan_runner(x, y, torch.device("cuda"), steps, amp, cl)
    return _rate(run, steps), run


def profile_step(run) -> str:
    """Kernels, host time and device time per step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        t0 = time.perf_counter()
        run()
        wall = time.perf_counter() - t0
    ev = p.key_averages()
    kernels = sum(e.count for e in ev if e.device_type.name == "CUDA")
    dev_us = sum(e.self_device_time_total for e in ev if e.device_type.name == "CUDA")
    return f"per step: {kernels / 40:.0f} kernels, wall {wall / 40 * 1e3:.2f} ms, kernel time {dev_us / 40 / 1e3:.2f} ms"


def main() -> None:
    """Run the probe within ``--budget`` seconds."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=140)
    args = ap.parse_args()
    t_start = time.perf_counter()

    def left() -> float:
        return args.budget - (time.perf_counter() - t_start)

    print("GPU", torch.cuda.get_device_name(0), "torch", torch.__version__, flush=True)
    for size in (28, 64):
        for amp, cl in (("off", "off"), ("auto", "auto")):
            r, run = cgan_steps(size, amp, cl)
            print(f"cgan step {size}px amp={amp} channels_last={cl}: {r}", flush=True)
            if size == 28:
                print("   ", profile_step(run), flush=True)
    from medgan.config import load_config
    from medgan.generate import generate
    from medgan.synthesis.cgan import CGANSynthesizer, ConditionalGAN
    from medgan.training.checkpoint import save_checkpoint

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs/quickstart.yaml", [])
    task = ConditionalGAN(cfg.model, cfg.train, 2, (1, 64, 64), torch.device("cuda"), 0)
    with tempfile.TemporaryDirectory() as tmp:
        tensors, _ = task.state_tensors()
        meta = {
            "classes": ["a", "b"],
            "shape": [1, 64, 64],
            "model": cfg.model.model_dump(mode="json"),
            "data": {"intensity": {"lo": 0.0, "hi": 255.0}, "spacing": [None, None]},
        }
        ckpt = save_checkpoint(Path(tmp) / "ck", 1, tensors, meta)
        synth = CGANSynthesizer(ckpt, "cuda")
        n = 50_000
        labels, seeds = [i % 2 for i in range(n)], list(range(n))
        from benchmarks.gpu_cgan import _old_way

        print(
            "gen 64px in memory, baseline (per-image CPU generator, batch 256, fp32):",
            _rate(lambda: _old_way(synth.g, labels, seeds, 128), n),
            flush=True,
        )
        for prec in ("fp32", "bf16"):
            print(
                f"gen 64px in memory, medgan {prec}:",
                _rate(lambda prec=prec: synth.generate(labels, seeds, precision=prec), n),
                flush=True,
            )
        k = {"i": 0}

        def to_npz() -> None:
            k["i"] += 1
            generate(ckpt, Path(tmp) / f"npz{k['i']}", 10_000, fmt="npz", device="cuda", batch_size=4096)

        print("gen 64px to npz (20,000 slices):", _rate(to_npz, 20_000, 2), flush=True)
    if left() > 25:
        from benchmarks.train_cyclegan import images_per_s

        for name, batch, amp, cl in (("medgan defaults", 8, "auto", "auto"), ("reference", 1, "off", "off")):
            if left() < 10:
                break
            r = images_per_s(256, batch, amp, cl, 3, 4 if batch > 1 else 16)
            print(f"cyclegan 256px {name}: {r}", flush=True)
    print(f"probe done in {time.perf_counter() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
