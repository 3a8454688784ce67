"""Classical augmentation per slice: MONAI's transforms with and without ``MetaTensor`` bookkeeping.

    python -m benchmarks.augment_speed [--n 512] [--repeats 5]

The classifier's batch transform (:func:`medgan.classifier.augment.classical_augmentation`: flip,
affine, intensity) at 28 px (MedMNIST) and 64 px (BUSI), and the segmenter's image + mask transform
at 64 px, each on ``--n`` slices: milliseconds per slice, median of ``--repeats`` after a warm-up.
Baseline in the same run: the same transforms with MONAI's metadata tracking on (``untracked``
replaced by a no-op), which is how they ran before 2026-12-08. Both give the same numbers
(tests/classifier/test_augment.py, tests/segmenter/test_train.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable

import torch

from benchmarks._common import append_section, time_runs


def _slices(n: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1


def _classifier(size: int, n: int) -> Callable[[], object]:
    from medgan.classifier.augment import classical_augmentation

    x = _slices(n, size)
    return lambda: classical_augmentation(0)(x)


def _pairs(size: int, n: int) -> Callable[[], object]:
    from medgan.segmenter import train as seg

    x = _slices(n, size)
    m = (x > 0.5).float()

    def run() -> object:
        aug = seg._pair_augmentation(0)
        with seg.untracked():  # what train_segmenter does (patched to a no-op for the baseline)
            return [aug({"image": xi, "label": mi}) for xi, mi in zip(x, m, strict=True)]

    return run


def main(argv: list[str] | None = None) -> None:
    """Time each transform tracked (baseline) and untracked; append the table to docs/benchmarks.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)

    from medgan.classifier import augment
    from medgan.segmenter import train as seg

    fast = augment.untracked
    rows = []
    for name, make in (
        ("classifier: flip + affine + intensity, 28 px", lambda: _classifier(28, args.n)),
        ("classifier: flip + affine + intensity, 64 px", lambda: _classifier(64, args.n)),
        ("segmenter: image + mask flip + affine, 64 px", lambda: _pairs(64, args.n)),
    ):
        ms = {}
        for mode, ctx in (("tracked", contextlib.nullcontext), ("untracked", fast)):
            augment.untracked = seg.untracked = ctx
            try:
                t = time_runs(make(), repeats=args.repeats, warmup=1)
            finally:
                augment.untracked = seg.untracked = fast
            ms[mode] = 1e3 * t["median"] / args.n
        rows.append(
            [
                name,
                f"{ms['tracked']:.3f}",
                f"{ms['untracked']:.3f}",
                f"{ms['tracked'] / ms['untracked']:.2f}x",
            ]
        )
        print(rows[-1], flush=True)
    append_section(
        "Classical augmentation: ms per slice, MONAI metadata on (before) and off (now)",
        f"python -m benchmarks.augment_speed --n {args.n} --repeats {args.repeats}",
        [
            "transform",
            f"tracked ms/slice (baseline, median of {args.repeats})",
            "untracked ms/slice (now)",
            "speed-up",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
