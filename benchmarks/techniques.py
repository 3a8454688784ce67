"""Each speed technique medgan uses, measured on its own against the plain way, same run.

    python -m benchmarks.techniques [--repeats 5]

On the current device (CPU here; the GPU figures are in the GPU section of docs/benchmarks.md):

1. foreach (CPU) / fused (CUDA) Adam against the per-parameter loop, in the cGAN training step;
2. ``torch.compile`` of the discriminator (``train.compile: true``) against eager, in the same
   step (compile time reported separately);
3. the multi-tensor EMA update against a per-parameter ``lerp_`` loop;
4. vectorised counter-based per-seed noise (``noise_for_seeds``) against a ``torch.Generator``
   seeded per image;
5. thread-pool file writers in ``medgan generate`` (PNG, DICOM) against one writer thread.

Each figure: median (min-max) of ``--repeats`` timings after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import append_section, time_runs


def _fmt(t: dict[str, float], n: float, unit: str) -> str:
    return f"{n / t['median']:,.1f} {unit} ({n / t['max']:,.1f}-{n / t['min']:,.1f})"


def _cgan_task(**train: object):
    from medgan.config import load_config
    from medgan.synthesis.cgan import ConditionalGAN

    repo = Path(__file__).resolve().parents[1]
    over = [f"train.{k}={v}" for k, v in train.items()]
    cfg = load_config(repo / "configs/quickstart.yaml", over)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = ConditionalGAN(cfg.model, cfg.train, 2, (1, 28, 28), dev, 0)
    task.attach_data(torch.rand(546, 1, 28, 28) * 2 - 1, torch.randint(0, 2, (546,)), 0)
    return task


def _steps(task, n: int) -> None:
    from medgan.training.loop import scalars

    for i in range(n):
        scalars(task.train_step(i))
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    """Measure every technique and append one table to docs/benchmarks.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    rows: list[list[str]] = []
    n = args.steps

    # 1. Adam implementation
    fast = _cgan_task()
    plain = _cgan_task()
    for opt in (plain.opt_g, plain.opt_d):
        for group in opt.param_groups:
            group["foreach"], group["fused"] = False, False
    t_fast = time_runs(lambda: _steps(fast, n), args.repeats)
    t_plain = time_runs(lambda: _steps(plain, n), args.repeats)
    rows.append(
        [
            "Adam: foreach (CPU) / fused (CUDA) vs per-parameter loop, cGAN step",
            _fmt(t_fast, n, "steps/s"),
            _fmt(t_plain, n, "steps/s"),
            f"{t_plain['median'] / t_fast['median']:.2f}x",
        ]
    )

    # 2. torch.compile of the discriminator
    compiled = _cgan_task(compile=True)
    t0 = time.perf_counter()
    try:
        _steps(compiled, 2)  # compiles
        t_compile = time.perf_counter() - t0
        t_c = time_runs(lambda: _steps(compiled, n), args.repeats)
        rows.append(
            [
                f"torch.compile(D) (train.compile: true) vs eager, cGAN step; compile {t_compile:.0f} s",
                _fmt(t_c, n, "steps/s"),
                _fmt(t_fast, n, "steps/s"),
                f"{t_fast['median'] / t_c['median']:.2f}x",
            ]
        )
    except Exception as exc:  # a missing compiler toolchain must not lose the other figures
        rows.append([f"torch.compile(D): failed ({exc.__class__.__name__}: {str(exc)[:80]})", "", "", ""])

    # 3. EMA update
    from medgan.training.ema import update_ema

    g, ema = fast.g, fast.g_ema

    def loop_ema() -> None:
        with torch.no_grad():
            params = dict(ema.named_parameters())
            for name, p in g.named_parameters():
                params[name].lerp_(p, 0.001)

    reps = 50
    t_multi = time_runs(lambda: [update_ema(ema, g, 0.999) for _ in range(reps)], args.repeats)
    t_loop = time_runs(lambda: [loop_ema() for _ in range(reps)], args.repeats)
    rows.append(
        [
            "EMA: one multi-tensor lerp vs per-parameter lerp_",
            _fmt(t_multi, reps, "updates/s"),
            _fmt(t_loop, reps, "updates/s"),
            f"{t_loop['median'] / t_multi['median']:.2f}x",
        ]
    )

    # 4. per-seed noise
    from medgan.seeding import noise_for_seeds

    seeds = list(range(20_000))

    def per_image() -> None:
        out = torch.empty((len(seeds), 128))
        gen = torch.Generator()
        for i, s in enumerate(seeds):
            gen.manual_seed(s)
            out[i] = torch.randn(128, generator=gen)

    t_vec = time_runs(lambda: noise_for_seeds(seeds, 128), args.repeats)
    t_per = time_runs(per_image, args.repeats)
    rows.append(
        [
            "per-seed noise, 20,000 x 128: vectorised counter-based vs a generator per image",
            _fmt(t_vec, len(seeds), "vectors/s"),
            _fmt(t_per, len(seeds), "vectors/s"),
            f"{t_per['median'] / t_vec['median']:.2f}x",
        ]
    )

    # 5. thread-pool writers
    import medgan.generate as gen_mod
    from medgan.training.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tensors, _ = fast.state_tensors()
        meta = {
            "classes": ["a", "b"],
            "shape": [1, 28, 28],
            "model": fast.model_cfg.model_dump(mode="json"),
            "data": {"intensity": {"lo": 0.0, "hi": 255.0}, "spacing": [None, None]},
        }
        ckpt = save_checkpoint(Path(tmp) / "ck", 1, tensors, meta)
        real_count = gen_mod.os.cpu_count
        for fmt, count in (("png", 1000), ("dicom", 500)):
            k = {"i": 0}

            def run(fmt: str = fmt, count: int = count, k: dict = k) -> None:
                k["i"] += 1
                gen_mod.generate(ckpt, Path(tmp) / f"{fmt}{k['i']}", count // 2, fmt=fmt, device="cpu")

            t_pool = time_runs(run, max(3, args.repeats // 2))
            gen_mod.os.cpu_count = lambda: 1  # the writer pool then has one thread
            try:
                t_one = time_runs(run, max(3, args.repeats // 2))
            finally:
                gen_mod.os.cpu_count = real_count
            rows.append(
                [
                    f"generate {count} slices to {fmt}: writer thread pool vs one writer thread",
                    _fmt(t_pool, count, "slices/s"),
                    _fmt(t_one, count, "slices/s"),
                    f"{t_one['median'] / t_pool['median']:.2f}x",
                ]
            )
    for r in rows:
        print(r, flush=True)
    print(
        append_section(
            "Speed techniques, one at a time",
            "python -m benchmarks.techniques " + " ".join(argv if argv is not None else sys.argv[1:]),
            ["technique", "with it", "without it (same run)", "speed-up"],
            rows,
            notes=f"Median (min-max) of {args.repeats} runs after a warm-up ({n} cGAN steps per run, "
            "quickstart networks at 28 px, batch 64).",
        )
    )


if __name__ == "__main__":
    main()
