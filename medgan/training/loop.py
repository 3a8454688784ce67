"""The shared fit loop: every synthesizer trains through :func:`fit`.

It owns the run folder (``config.resolved.yaml``, ``stats.jsonl``, ``samples/``,
``checkpoints/``), the progress display, periodic sample grids and checkpoints, ``--resume``
(networks, optimizers, RNG streams and data position restored, so a resumed run continues to
the same result as an uninterrupted one), and Ctrl-C (a checkpoint is written, then
:class:`TrainingInterrupted` is raised).

A *task* is any object with ``train_step(step) -> dict`` (floats or 0-d tensors; tensors are read
back in one transfer per step, so a GPU step does not stall on each scalar), ``optimizers() -> [(optimizer, base_lr)]``
(the loop applies the learning-rate schedule), ``state_tensors() -> (tensors, info)``,
``load_state(tensors, info)`` and ``sample_grid(per_class, seed) -> (C, H, W) array``; with a
*selector* (checkpoint selection on the validation split, :class:`Selector`) also
``generate(labels, seeds) -> (N, C, H, W) array`` from the generator that sampling uses.

With a selector, every ``selector.every`` steps (and at the last step) the loop scores the task,
logs the score as its own ``stats.jsonl`` line, writes a checkpoint at that step, and copies it to
``checkpoints/best.*`` when the score is a new best. The selector's state goes into every
checkpoint's JSON (``select``); on resume it is restored, and a ``best`` copy that a kill left
behind its recorded step is repaired from that step's checkpoint.

Under ``torchrun`` (:mod:`medgan.distributed`) every rank runs this loop; only rank 0 writes the
run folder. Logged stats are averaged over ranks, and each rank's own random streams (keys
under :data:`PER_RANK_PREFIXES`) go into rank 0's checkpoints as ``rank<r>.<key>``, so a resume
with the same number of processes continues every rank where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import torch
from pydantic import ValidationError

from medgan import distributed
from medgan.config import DEFAULT_KIND, RunConfig, dump_config, legacy_keys, resumable_model_keys, upgrade_raw
from medgan.errors import ConfigError, InputError, MedganError
from medgan.io.atomic import atomic_write_text
from medgan.io.images import write_png
from medgan.provenance import write_provenance
from medgan.training import tracking
from medgan.training.checkpoint import (
    META_VERSION,
    RunMeta,
    best_checkpoint,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint,
    save_best,
    save_checkpoint,
)
from medgan.training.tracking import Tracker

#: Config keys that may change between a run and its ``--resume`` without changing the result
#: of the steps already taken (``train.steps`` extends or shortens the run).
RESUMABLE_KEYS = (
    "name",  # a label (report title, tracker run name): a renamed config goes on with the same model
    "train.steps",
    "train.sample_every",
    "train.checkpoint_every",
    "train.keep_last",
    "train.log_every",
    "train.device",
    "train.samples_per_class",
    "train.tracking",
)

#: Config sections that never shape a synthesizer's training run (what is done with it afterwards:
#: the study, its classifier, the pipeline stages, ``medgan augment``), ignored on resume.
IGNORED_SECTIONS = ("augment.", "study.", "classifier.", "segmenter.", "seg_study.", "pipeline.")

#: State keys that differ between ranks under ``torchrun`` (random streams, sampler positions,
#: image pools); networks and optimizers are identical on every rank.
PER_RANK_PREFIXES = ("rng.", "pool.")


@runtime_checkable
class Task(Protocol):
    """What :func:`fit` drives: every synthesizer kind's training task implements it."""

    def train_step(self, step: int) -> dict[str, float | torch.Tensor]:
        """One optimisation step; its losses and diagnostics (floats or 0-d tensors)."""
        ...

    def optimizers(self) -> list[tuple[torch.optim.Optimizer, float]]:
        """Each optimizer with its base learning rate (the loop applies the schedule)."""
        ...

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to resume exactly: flat tensors and JSON-able info."""
        ...

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Restore :meth:`state_tensors`."""
        ...

    def sample_grid(self, per_class: int, seed: int) -> np.ndarray:
        """A (C, H, W) image in [-1, 1] of samples for the run folder."""
        ...


@runtime_checkable
class SelectableTask(Task, Protocol):
    """A task whose generator a :class:`Selector` can score (kinds with checkpoint selection)."""

    def generate(self, labels: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """(N, C, H, W) images in [-1, 1] from the generator that sampling uses."""
        ...


class Selector(Protocol):
    """Scores a task's generator on held-out data every ``every`` steps (lower is better)."""

    every: int

    def __call__(self, generate: Any, step: int) -> tuple[dict[str, Any], bool]: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, st: dict[str, Any] | None) -> None: ...


class TrainingInterrupted(MedganError):
    """Ctrl-C during training: a checkpoint was written; exit code 130."""

    exit_code = 130


def check_resumable(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    """Refuse to resume when a config value that shapes the run changed (other than :data:`RESUMABLE_KEYS`)."""
    shown = config_changes(saved, current)
    if shown:
        raise ConfigError(
            str(where),
            f"cannot resume: the config changed: {shown}; only {', '.join(RESUMABLE_KEYS)} may change",
        )


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """The config values that shape a synthesizer's run and differ between ``saved`` and ``current``
    (up to 4, as ``key ('old' -> 'new')``); empty when a run of ``saved`` may go on as ``current``."""
    raw = upgrade_raw(saved, strict=False)
    a, b = tracking.flat_params(raw), tracking.flat_params(current)
    kind = str(a.get("model.kind", DEFAULT_KIND))
    for k, v in legacy_keys(kind).items():
        if k not in a and k in b:  # a run from before the key existed behaved as its legacy value
            a[k] = v
    if any(k not in a for k in b):  # a key added since the run was written: its default then
        try:
            filled = tracking.flat_params(RunConfig.model_validate(raw).model_dump(mode="json"))
        except ValidationError:
            filled = {}
        a.update({k: filled[k] for k in b if k not in a and k in filled})
    free = set(RESUMABLE_KEYS) | resumable_model_keys(kind)  # e.g. a diffusion model's sampler settings
    changed = sorted(
        k
        for k in set(a) | set(b)
        if a.get(k) != b.get(k) and k not in free and not k.startswith(IGNORED_SECTIONS)
    )
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    return ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in changed[:4]) + (more if changed else "")


def scalars(stats: dict[str, Any]) -> dict[str, float]:
    """A step's stats as floats: all tensor values are stacked and read back in one transfer."""
    keys = [k for k, v in stats.items() if isinstance(v, torch.Tensor)]
    out = {k: float(v) for k, v in stats.items() if k not in keys}
    if keys:
        values = torch.stack([stats[k].detach().float().reshape(()) for k in keys]).tolist()
        out.update(zip(keys, values, strict=True))
    return {k: out[k] for k in stats}


def _with_rank_streams(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Under ``torchrun``: ``tensors`` plus every other rank's own streams as ``rank<r>.<key>``."""
    if distributed.world_size() == 1:
        return tensors
    mine = {k: v.detach().cpu() for k, v in tensors.items() if k.startswith(PER_RANK_PREFIXES)}
    out = dict(tensors)
    for r, streams in enumerate(distributed.gather_objects(mine)):
        if r > 0:
            out.update({f"rank{r}.{k}": v for k, v in streams.items()})
    return out


def _own_rank_streams(
    tensors: dict[str, torch.Tensor], saved: dict[str, Any], where: Path
) -> dict[str, torch.Tensor]:
    """A checkpoint's state as this rank saved it (inverse of :func:`_with_rank_streams`)."""
    world, saved_world = distributed.world_size(), int(saved.get("world_size", 1))
    if saved_world != world:
        raise ConfigError(
            str(where),
            f"cannot resume: written by {saved_world} process(es), this run has {world}; "
            "resume with the same number of processes",
        )
    r = distributed.rank()
    if r == 0:
        return tensors
    head = f"rank{r}."
    own = {k: v for k, v in tensors.items() if not k.startswith(PER_RANK_PREFIXES)}
    own.update({k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)})
    return own


def _repair_best(ckpt_dir: Path, best_step: int | None) -> None:
    """Make ``best.*`` the checkpoint of ``best_step`` again when a kill left it behind (or ahead of) it."""
    if best_step is None:
        return
    best = best_checkpoint(ckpt_dir)
    if best is not None and checkpoint_step(best) == best_step:
        return
    src = ckpt_dir / f"step-{int(best_step):07d}.safetensors"
    if src.is_file() and src.with_suffix(".json").is_file():
        save_best(src)


def lr_factor(step: int, total: int, schedule: str, decay_start: float) -> float:
    """Learning-rate multiplier: 1 (``constant``), or 1 until ``decay_start`` x total steps, then linear to 0."""
    if schedule == "constant":
        return 1.0
    start = int(total * decay_start)
    if step < start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / max(1, total - start))


def _truncate_stats(path: Path, step: int) -> None:
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            break  # a line cut by a kill: drop it and everything after
    atomic_write_text(path, "".join(x + "\n" for x in keep))


class _Progress:
    """A rich progress bar (TTY) or a few plain lines (logs, CI)."""

    def __init__(self, total: int, start: int, enabled: bool = True) -> None:
        self.total, self.tty, self.enabled = total, enabled and sys.stderr.isatty(), enabled
        self.every = max(1, (total - start) // 10)
        self.bar = None
        if self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self.task = self.bar.add_task("train", total=total, completed=start, stats="")
            self.bar.start()

    def update(self, step: int, stats: dict[str, float]) -> None:
        text = " ".join(f"{k} {stats[k]:.3f}" for k in ("loss", "loss_d", "loss_g") if k in stats)
        if self.bar is not None:
            self.bar.update(self.task, completed=step, stats=text)
        elif self.enabled and (step % self.every == 0 or step == self.total):
            print(f"step {step}/{self.total} {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class _Checkpoints:
    """Writes the run's checkpoints: the task's state with the run's metadata (rank 0 only)."""

    def __init__(
        self, task: Task, cfg: RunConfig, run_dir: Path, meta: dict[str, Any], selector: Selector | None
    ) -> None:
        self.task, self.selector, self.seed = task, selector, cfg.seed
        self.folder, self.keep_last = run_dir / "checkpoints", cfg.train.keep_last
        self.config = cfg.model_dump(mode="json")
        try:  # what the run records about its data, checked before the first step
            self.meta = RunMeta.model_validate(meta).model_dump(mode="json", exclude_unset=True)
        except ValidationError as err:
            raise ValueError(f"fit: meta does not fit RunMeta: {err}") from None
        self.main, self.world = distributed.is_main(), distributed.world_size()

    def __call__(self, step: int) -> Path:
        """Write the checkpoint of ``step`` (a collective under ``torchrun``); returns its path."""
        tensors, info = self.task.state_tensors()
        tensors = _with_rank_streams(tensors)  # collective under torchrun: every rank gets here
        if not self.main:
            distributed.barrier()  # returns once rank 0 has written it
            return self.folder / f"step-{step:07d}.safetensors"
        full = {
            **self.meta,
            "config": self.config,
            "model": self.config["model"],
            "state_info": info,
            "seed": self.seed,
            "meta_version": META_VERSION,
            **({"world_size": self.world} if self.world > 1 else {}),
            **({"select": self.selector.state()} if self.selector is not None else {}),
        }
        path = save_checkpoint(self.folder, step, tensors, full, keep_last=self.keep_last)
        distributed.barrier()
        return path


def _start(
    task: Task,
    cfg: RunConfig,
    run_dir: Path,
    resume: bool,
    device: torch.device | str,
    selector: Selector | None,
) -> Path | None:
    """Prepare the run folder; on ``resume``, restore the task (and selector) from the last checkpoint.

    Returns the checkpoint resumed from (None for a fresh run). A folder with checkpoints is
    refused without ``resume``; a config that changed what the steps taken so far did is refused
    on resume (:func:`check_resumable`).
    """
    existing = list_checkpoints(run_dir / "checkpoints")
    main = distributed.is_main()
    if resume:
        if not existing:
            raise InputError(run_dir, "nothing to resume: no checkpoint in this run folder")
        tensors, saved = load_checkpoint(existing[-1], device)
        check_resumable(saved["config"], cfg.model_dump(mode="json"), existing[-1])
        task.load_state(_own_rank_streams(tensors, saved, existing[-1]), saved["state_info"])
        if selector is not None:
            selector.load_state(saved.get("select"))
        if main:
            _truncate_stats(run_dir / "stats.jsonl", int(saved["step"]))
            _repair_best(run_dir / "checkpoints", (saved.get("select") or {}).get("best_step"))
    elif existing:
        raise InputError(
            run_dir, "already holds checkpoints; pass --resume to continue it, or choose another --out"
        )
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_provenance(run_dir)
        atomic_write_text(run_dir / "config.resolved.yaml", dump_config(cfg))
    return existing[-1] if resume else None


class _Loop:
    """The steps of one :func:`fit`: learning rate, train step, logging, samples, selection, checkpoints."""

    def __init__(
        self, task: Task, cfg: RunConfig, run_dir: Path, checkpoints: _Checkpoints, selector: Selector | None
    ) -> None:
        self.task, self.cfg, self.tc, self.run_dir = task, cfg, cfg.train, run_dir
        self.checkpoint, self.selector = checkpoints, selector
        self.main, self.world = distributed.is_main(), distributed.world_size()
        # only rank 0 scores (it alone holds a selector under torchrun), but every rank must write the
        # same checkpoints: all take rank 0's cadence
        self.select_every = distributed.broadcast_object(selector.every if selector is not None else 0)
        self.t_window, self.n_window = time.perf_counter(), 0
        self.tracker: Tracker | None = None  # set by fit on rank 0
        self.grid_rows: list[str] = []

    def step(self, step: int) -> tuple[dict[str, float], bool]:
        """One training step at ``step`` (the schedule applied first); its stats and whether it diverged."""
        tc = self.tc
        factor = lr_factor(step, tc.steps, tc.lr_schedule, tc.decay_start)
        for opt, base_lr in self.task.optimizers():
            for group in opt.param_groups:
                group["lr"] = base_lr * factor
        stats = scalars(self.task.train_step(step))
        self.n_window += 1
        return stats, not all(np.isfinite(v) for v in stats.values())

    def log(self, step: int, stats: dict[str, float], stats_file: Any) -> dict[str, float]:
        """Every ``log_every`` steps (and the last): the stats averaged over ranks, written by rank 0."""
        if step % self.tc.log_every and step != self.tc.steps:
            return stats
        now = time.perf_counter()
        rate = self.n_window * self.tc.batch_size * self.world / max(now - self.t_window, 1e-9)
        stats = distributed.mean_scalars(stats)  # over ranks under torchrun
        if self.main:
            stats_file.write(json.dumps({"step": step, **stats, "images_per_s": round(rate, 2)}) + "\n")
            stats_file.flush()
            if self.tracker is not None:
                self.tracker.scalars({**stats, "images_per_s": rate}, step, "train")
        self.t_window, self.n_window = now, 0
        return stats

    def after(self, step: int, stats_file: Any, last: Path | None) -> Path | None:
        """Sample grid, validation score and checkpoint when their step comes; returns the last checkpoint."""
        tc, last_step = self.tc, step == self.tc.steps
        if self.main and (step % tc.sample_every == 0 or last_step):
            grid = self.task.sample_grid(tc.samples_per_class, self.cfg.seed)
            write_png(self.run_dir / "samples" / f"step-{step:07d}.png", grid)
            if self.tracker is not None:
                self.tracker.grid("samples", grid, step, self.grid_rows)
        selecting = self.select_every > 0 and (step % self.select_every == 0 or last_step)
        improved = False
        if selecting and self.selector is not None and self.main:
            sel, improved = self.selector(cast(SelectableTask, self.task).generate, step)
            stats_file.write(json.dumps({"step": step, **sel}) + "\n")
            stats_file.flush()
            if self.tracker is not None:
                self.tracker.scalars(sel, step, "val")
        if step % tc.checkpoint_every == 0 or last_step or selecting:
            last = self.checkpoint(step)
            if improved:
                save_best(last)
        return last


def fit(
    task: Task,
    cfg: RunConfig,
    run_dir: str | Path,
    meta: dict[str, Any],
    *,
    resume: bool = False,
    device: torch.device | str = "cpu",
    selector: Selector | None = None,
) -> Path:
    """Train ``task`` for ``cfg.train.steps`` steps into ``run_dir``; returns the last checkpoint.

    ``meta`` (classes, shape, intensity, ...) goes into every checkpoint's JSON beside the config.
    ``selector``: checkpoint selection (see the module docstring); ``checkpoints/best.*`` then
    holds the best-scoring checkpoint. The run folder gets ``provenance.json`` (command line,
    versions, code revision, device) at every start.
    """
    run_dir = Path(run_dir)
    trackers = tracking.resolve(cfg.train.tracking)  # a tracker that is not installed fails before any work
    last = _start(task, cfg, run_dir, resume, device, selector)
    step = 0 if last is None else checkpoint_step(last)
    checkpoint = _Checkpoints(task, cfg, run_dir, meta, selector)
    loop = _Loop(task, cfg, run_dir, checkpoint, selector)
    main, world = distributed.is_main(), distributed.world_size()
    if main and trackers and step < cfg.train.steps:  # a finished run's rerun writes no new records
        config = cfg.model_dump(mode="json")
        loop.tracker = Tracker(
            trackers, run_dir, cfg.name or run_dir.name, tracking.flat_params(config), step
        )
        loop.grid_rows = [str(r) for r in getattr(task, "grid_rows", None) or meta.get("classes") or []]
    status = "FAILED"
    stop = threading.Event()
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGINT, lambda *_: stop.set())
    progress = _Progress(cfg.train.steps, step, enabled=main)
    stats_path = run_dir / "stats.jsonl"
    try:
        with open(stats_path, "a", encoding="utf-8") if main else contextlib.nullcontext() as stats_file:
            while step < cfg.train.steps:
                stats, diverged = loop.step(step)
                step += 1
                stopping = False
                if world > 1:  # every rank takes the same decisions (one small CPU all-reduce)
                    diverged, stopping = distributed.any_flags(diverged, stop.is_set())
                if diverged:
                    raise MedganError(
                        f"{run_dir}: training diverged at step {step} (non-finite loss {stats})"
                    )
                progress.update(step, loop.log(step, stats, stats_file))
                last = loop.after(step, stats_file, last)
                if stopping if world > 1 else stop.is_set():
                    if last is None or not last.name.endswith(f"{step:07d}.safetensors"):
                        last = checkpoint(step)
                    status = "KILLED"
                    raise TrainingInterrupted(
                        f"{run_dir}: interrupted at step {step}; checkpoint written ({last.name}); continue with --resume"
                    )
        status = "FINISHED"
    finally:
        progress.close()
        if loop.tracker is not None:
            loop.tracker.close(status)
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    if last is None:  # resumed a run that was already complete
        last = checkpoint(step)
    return last
