#!/usr/bin/env python
"""Bounded fuzzing of medgan's file readers with atheris (optional; not run by CI).

The coverage-guided engine needs ``pip install atheris`` (Linux / macOS, CPython with a matching
wheel); atheris is not a dependency of medgan. ``--engine random`` needs nothing extra: it draws
the same choices from seeded ``random`` generators. The property is the one of
``tests/io/test_fuzz.py`` (see ``tests/io/fuzzing.py``): every reader loads the file or raises a
one-line ``MedganError`` naming it; anything else (another exception, a hang, an allocation beyond
the memory budget, an unpickled object) is a crash.

Modes of the atheris engine:

* ``structured`` (default): the fuzz input drives the same choices as the hypothesis tests (seed
  kind, header edits, byte mutations), so coverage guidance explores the structured mutations;
* ``raw``: the fuzz input *is* the file, starting from a corpus of valid seed files.

Examples::

    python scripts/fuzz_atheris.py --format dicom --runs 3000 --max-len 4096
    python scripts/fuzz_atheris.py --format all --runs 2000 --mode raw --stats fuzz-stats.json
    python scripts/fuzz_atheris.py --engine random --format all --runs 5000 --seed 7

libFuzzer saves a crashing input as ``<artifacts>/<format>-crash-*`` (in structured mode that is
the choice stream; ``--reproduce FILE --format F`` rebuilds the file the readers saw, next to it,
and prints the violation); the random engine saves the offending file itself. A minimised crash
belongs in ``tests/io/corpus/<format>/`` with a line in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("dicom", "nifti", "npz", "png", "csv", "yaml")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--format", default="all", choices=(*FORMATS, "all"), help="reader family to fuzz")
    p.add_argument("--runs", type=int, default=2000, help="inputs per format (libFuzzer -runs)")
    p.add_argument(
        "--max-len", type=int, default=4096, help="largest fuzz input in bytes (libFuzzer -max_len)"
    )
    p.add_argument("--mode", default="structured", choices=("structured", "raw"))
    p.add_argument("--timeout", type=int, default=20, help="seconds per input before it counts as a hang")
    p.add_argument("--rss-limit-mb", type=int, default=4096, help="libFuzzer's memory limit")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer -seed, for repeatable runs")
    p.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"), help="where crash files go")
    p.add_argument("--stats", type=Path, default=None, help="write the input counts as JSON here")
    p.add_argument("--engine", default="atheris", choices=("atheris", "random"))
    p.add_argument(
        "--reproduce", type=Path, default=None, help="rebuild and check one structured crash input"
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _worker(args: argparse.Namespace) -> None:
    """Fuzz one format in this process (atheris.Fuzz never returns; libFuzzer exits)."""
    os.environ.setdefault("MEDGAN_FUZZ_TIMEOUT", "0")  # libFuzzer's -timeout owns SIGALRM here
    sys.path.insert(0, str(REPO))
    import atheris

    with atheris.instrument_imports(include=["medgan", "pydicom", "nibabel", "PIL", "zipfile", "csv"]):
        import medgan.data.detect
        import medgan.data.sources
        import medgan.io.dicom
        import medgan.io.images
        import medgan.io.medmnist
        import medgan.io.nifti
        import medgan.io.npz  # noqa: F401
    from tests.io import fuzzing

    fmt = args.format
    work = Path(tempfile.mkdtemp(prefix=f"medgan-atheris-{fmt}-"))
    counts: collections.Counter[str] = collections.Counter()
    started = time.time()
    suffix = {"dicom": ".dcm", "nifti": ".nii", "npz": ".npz", "png": ".png", "csv": ".csv"}[fmt]

    class AtherisChooser(fuzzing.Chooser):
        def __init__(self, fdp: atheris.FuzzedDataProvider) -> None:
            self.fdp = fdp

        def integer(self, lo: int, hi: int) -> int:
            return self.fdp.ConsumeIntInRange(lo, hi)

        def raw(self, max_len: int) -> bytes:
            return self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, max_len))

    def record(outcomes: list[str]) -> None:
        counts["inputs"] += 1
        for o in outcomes:
            counts[o.rsplit(": ", 1)[-1]] += 1
        if args.stats is not None:
            stats = {"format": fmt, "mode": args.mode, "seconds": round(time.time() - started, 1), **counts}
            args.stats.write_text(json.dumps(stats, indent=1))

    def one_input(data: bytes) -> None:
        if args.mode == "structured":
            _, outcomes = fuzzing.fuzz_one(fmt, AtherisChooser(atheris.FuzzedDataProvider(data)), work)
        else:
            path = work / f"fuzz{suffix}"
            path.write_bytes(data)
            outcomes = fuzzing.check_file(fmt, path, work)
        record(outcomes)

    if args.reproduce is not None:
        data = args.reproduce.read_bytes()
        if args.mode == "structured":
            suffix, data = fuzzing.MAKERS[fmt](AtherisChooser(atheris.FuzzedDataProvider(data)))
        target = args.reproduce.with_name(args.reproduce.name + suffix)
        target.write_bytes(data)
        print(f"rebuilt {target}", file=sys.stderr)
        print(fuzzing.check_file(fmt, target, work), file=sys.stderr)  # raises PropertyViolation
        return

    seeds = work / "seeds"
    seeds.mkdir()
    for i in range(40):  # raw: mutated files of every seed kind; structured: random choice streams
        rng = random.Random(i)
        if args.mode == "raw":
            data = fuzzing.MAKERS[fmt](fuzzing.RandomChooser(i))[1]
        else:
            data = rng.randbytes(rng.randint(16, max(16, args.max_len // 4)))
        (seeds / f"seed{i}").write_bytes(data[: args.max_len])
    args.artifacts.mkdir(parents=True, exist_ok=True)
    libfuzzer = [
        sys.argv[0],
        str(seeds),
        f"-runs={args.runs}",
        f"-max_len={args.max_len}",
        "-len_control=0",  # use the whole --max-len from the start
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-seed={args.seed}",
        f"-artifact_prefix={args.artifacts}/{fmt}-",
        "-print_final_stats=1",
    ]
    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()


def _random(args: argparse.Namespace) -> int:
    """The random engine: ``--runs`` seeded inputs per format; returns the number of violations."""
    sys.path.insert(0, str(REPO))
    from tests.io import fuzzing

    violations = 0
    for fmt in FORMATS if args.format == "all" else (args.format,):
        counts: collections.Counter[str] = collections.Counter()
        started = time.time()
        with tempfile.TemporaryDirectory(prefix=f"medgan-fuzz-{fmt}-") as tmp:
            work = Path(tmp)
            for i in range(args.runs):
                counts["inputs"] += 1
                try:
                    _, outcomes = fuzzing.fuzz_one(
                        fmt, fuzzing.RandomChooser(args.seed * 1_000_003 + i), work
                    )
                except fuzzing.PropertyViolation as exc:
                    counts["violations"] += 1
                    args.artifacts.mkdir(parents=True, exist_ok=True)
                    src = next(iter(sorted(work.glob("fuzz.*"))), None)
                    if src is not None:
                        dst = args.artifacts / f"{fmt}-seed{args.seed}-{i}{''.join(src.suffixes)}"
                        dst.write_bytes(src.read_bytes())
                    print(f"[{fmt}] input {i}: {exc}", file=sys.stderr)
                    continue
                for o in outcomes:
                    counts[o.rsplit(": ", 1)[-1]] += 1
        stats = {"format": fmt, "engine": "random", "seconds": round(time.time() - started, 1), **counts}
        print(f"[{fmt}] {json.dumps(stats)}", file=sys.stderr)
        if args.stats is not None:
            out = args.stats.with_name(f"{args.stats.stem}-{fmt}{args.stats.suffix or '.json'}")
            out.write_text(json.dumps(stats, indent=1))
        violations += counts["violations"]
    return violations


def main(argv: list[str] | None = None) -> int:
    """Fuzz the chosen formats; returns non-zero when a run found a violation (or atheris is missing)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    args.artifacts = args.artifacts.absolute()  # the atheris workers run in the repository root
    args.stats = None if args.stats is None else args.stats.absolute()
    args.reproduce = None if args.reproduce is None else args.reproduce.absolute()
    if args.worker:
        _worker(args)
        return 0
    if args.engine == "random":
        return min(_random(args), 1)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print(
            "atheris is not installed: pip install atheris (it is not a medgan dependency)", file=sys.stderr
        )
        return 2
    failed = 0
    for fmt in FORMATS if args.format == "all" else (args.format,):
        cmd = [sys.executable, __file__, "--worker", "--format", fmt, "--runs", str(args.runs)]
        cmd += ["--max-len", str(args.max_len), "--mode", args.mode, "--timeout", str(args.timeout)]
        cmd += ["--rss-limit-mb", str(args.rss_limit_mb), "--seed", str(args.seed)]
        cmd += ["--artifacts", str(args.artifacts)]
        if args.reproduce is not None:
            cmd += ["--reproduce", str(args.reproduce)]
        stats = None
        if args.stats is not None:
            stats = args.stats.with_name(f"{args.stats.stem}-{fmt}{args.stats.suffix or '.json'}")
            cmd += ["--stats", str(stats)]
        started = time.time()
        rc = subprocess.call(cmd, cwd=REPO)
        counts = json.loads(stats.read_text()) if stats is not None and stats.is_file() else {}
        print(f"[{fmt}] exit {rc} in {time.time() - started:.0f} s: {counts}", file=sys.stderr)
        failed += rc != 0
    return failed


if __name__ == "__main__":
    sys.exit(main())
