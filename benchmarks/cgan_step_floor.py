"""The floor of the cGAN training step: the same networks and updates in bare PyTorch, nothing else.

    python -m benchmarks.cgan_step_floor [--data-dir DIR] [--repeats 5] [--steps 20]

Times, interleaved in one process (median (min-max) ms per step of ``--repeats`` x ``--steps``
steps after a warm-up): the bare step (random batch by index, G forward without grad, D on
real and fake, D update, G forward, D, G update; foreach Adam), medgan's step as
``medgan train`` runs it (``benchmarks.cgan_vs_gantrainer.medgan_runner``: fp32, no
DiffAugment, with its EMA, learning-rate schedule and sampler) and MONAI's ``GanTrainer`` on
the same networks. It says how far above the arithmetic each side is: what a training loop can
still save without changing the math. Prints; the figures are copied into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.cgan_vs_gantrainer import _configs, _data, gantrainer_runner, medgan_runner


def bare_runner(x: torch.Tensor, y: torch.Tensor, steps: int) -> Callable[[], None]:
    """``steps`` bare cGAN steps (the same networks, loss and optimizer as the other two sides)."""
    from medgan.synthesis.networks import build_cgan

    mc, tc = _configs(int(x.shape[-1]), "off", "off")
    torch.manual_seed(0)
    g, d = build_cgan(mc, 2, tuple(x.shape[1:]))
    opt_g = torch.optim.Adam(g.parameters(), lr=tc.lr_g, betas=tc.betas, foreach=True)
    opt_d = torch.optim.Adam(d.parameters(), lr=tc.lr_d, betas=tc.betas, foreach=True)
    batch = tc.batch_size

    def run() -> None:
        for _ in range(steps):
            idx = torch.randint(0, len(x), (batch,))
            real, labels = x[idx], y[idx]
            with torch.no_grad():
                fake = g(torch.randn(batch, mc.z_dim), labels)
            loss_d = F.relu(1 - d(real, labels)).mean() + F.relu(1 + d(fake, labels)).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = -d(g(torch.randn(batch, mc.z_dim), labels), labels).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()

    return run


def main(argv: list[str] | None = None) -> None:
    """Time the three sides, interleaved, and print ms per step."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    x, y = _data(args.data_dir, 28)
    dev = torch.device("cpu")
    runs = {
        "bare PyTorch (floor)": bare_runner(x, y, args.steps),
        "medgan loop": medgan_runner(x, y, dev, args.steps, "off", "off"),
        "MONAI GanTrainer": gantrainer_runner(x, y, dev, args.steps),
    }
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) / args.steps * 1e3)
    floor = statistics.median(times["bare PyTorch (floor)"])
    for k, v in times.items():
        med = statistics.median(v)
        print(f"{k}: {med:.1f} ms/step ({min(v):.1f}-{max(v):.1f}), {med / floor:.3f}x the floor")


if __name__ == "__main__":
    main()
