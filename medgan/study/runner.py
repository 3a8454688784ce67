"""The study's driver: plans the jobs, hands them to the executor, keeps the cell cache, writes the results."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan.config import RunConfig, dump_config
from medgan.data.prepare import without_identifiers
from medgan.data.sources import RunData
from medgan.executor import RayExecutor, Resources, make_executor
from medgan.io.atomic import atomic_write_text
from medgan.provenance import write_provenance
from medgan.report import build_report
from medgan.report.study_figures import study_figures
from medgan.study.cells import (
    FILTER_POOL,
    Context,
    StudyRow,
    cell_job,
    load_splits,
    synth_job,
)
from medgan.study.gates import Gates
from medgan.study.pairs import compare_cells
from medgan.study.plan import (
    ArmSpec,
    arm_kinds,
    arm_specs,
    cell_key,
    epoch_samples,
    fingerprint,
    kind_is_sized,
    make_plan,
    synth_dir,
)
from medgan.study.summary import design, learning_curve, summarize
from medgan.training import tracking
from medgan.training.tracking import Tracker


class Study:
    """The driver: plans the jobs, hands them to the executor, keeps the cell cache and the rows."""

    def __init__(
        self,
        ctx: Context,
        gates: Gates,
        reuse: dict[str, Path],
        executor: Any,
        make_tracker: Callable[[], Tracker] | None = None,
    ) -> None:
        self.ctx, self.gates, self.reuse, self.ex = ctx, gates, reuse, executor
        self.make_tracker, self.tracker = make_tracker, None
        self.specs = arm_specs(ctx.cfg.study)
        self.kinds = arm_kinds(self.specs)
        st = ctx.cfg.study
        self.resources = Resources(st.cpus_per_task, st.gpus_per_task)
        self.results: dict[str, dict[str, Any]] = {}  # cell key -> its row (and test probabilities)
        self.probas: dict[tuple, np.ndarray] = {}  # (arm, ratio, fraction, seed) -> test probabilities
        self.pairs: dict[tuple, dict[str, float]] = {}  # the DeLong tests computed so far
        self.skipped: list[dict[str, Any]] = []

    def _keys(self, f: float, s: int, n: int) -> list[tuple[ArmSpec, float | None, str]]:
        st = self.ctx.cfg.study
        e, m = st.ensemble_for(f), epoch_samples(st, self.specs, f, n)
        return [(sp, r, cell_key(sp.name, r, f, s, e, m)) for sp in self.specs for r in sp.ratios_at(st, f)]

    def _done(self, key: str) -> bool:
        return (self.ctx.cells / f"{key}.json").is_file()

    def synthesizers(self, plan: list[tuple[float, int, np.ndarray]], shared: Any) -> dict[tuple, Path]:
        """Every subset's synthesizer of every arm kind (jobs), where a cell or a gate needs it."""
        jobs: dict[Path, Any] = {}  # one job per folder: the 100 % synthesizer serves every seed
        for f, s, idx in plan:
            if all(self._done(k) for _, _, k in self._keys(f, s, len(idx))) and not self.gates.active:
                continue
            for kind in self.kinds:
                folder = synth_dir(self.ctx.out, kind, f, s)
                if folder in jobs:
                    continue
                steps_set = kind in self.ctx.cfg.study.steps
                reuse = self.reuse.get(kind) if f == 1.0 and not steps_set else None
                jobs[folder] = self.ex.submit(
                    synth_job,
                    shared,
                    kind,
                    f,
                    s,
                    idx,
                    reuse,
                    resources=self.resources,
                    name=f"synthesizer {folder.name}",
                )
        done = {folder: Path(self.ex.get(h)) for folder, h in jobs.items()}
        return {
            (kind, f, s): done[synth_dir(self.ctx.out, kind, f, s)]
            for f, s, _ in plan
            for kind in self.kinds
            if synth_dir(self.ctx.out, kind, f, s) in done
        }

    def failing(self, ckpts: dict[tuple, Path]) -> dict[tuple[float, int], dict[str, str]]:
        """The gate verdicts (checked here, in the driver) of synthesizers whose arms are skipped."""
        out: dict[tuple[float, int], dict[str, str]] = {}
        if not self.gates.active:
            return out
        for (kind, f, s), ckpt in ckpts.items():
            g = self.gates.check(synth_dir(self.ctx.out, kind, f, s).name, kind, ckpt, f, s)
            if self.ctx.cfg.study.skip_failing_synthesizers and not g["passed"]:
                out.setdefault((f, s), {})[kind] = g["verdict"]
        return out

    def cells(self, plan: list[tuple[float, int, np.ndarray]], shared: Any, ckpts: dict[tuple, Path]) -> None:
        """Run the cells not in the cache (jobs); each finished one is saved as it arrives."""
        failing = self.failing(ckpts)
        pending: dict[Any, tuple[str, Path, tuple]] = {}
        for f, s, idx in plan:
            real = None
            epoch = epoch_samples(self.ctx.cfg.study, self.specs, f, len(idx))  # as in the cell keys
            for sp, ratio, key in self._keys(f, s, len(idx)):
                cell = self.ctx.cells / f"{key}.json"
                if sp.synthetic and sp.pool in failing.get((f, s), {}):
                    reason = failing[(f, s)][sp.pool]
                    self.skipped.append(
                        {"arm": sp.name, "ratio": ratio, "fraction": f, "seed": s, "reason": reason}
                    )
                    continue
                if cell.is_file():
                    self._keep(key, (sp.name, ratio, f, s), json.loads(cell.read_text(encoding="utf-8")))
                    continue
                after = real if sp.synthetic and sp.min_confidence is not None else None
                h = self.ex.submit(
                    cell_job,
                    shared,
                    sp,
                    ratio,
                    f,
                    s,
                    idx,
                    ckpts.get((sp.pool, f, s)),
                    after,
                    epoch,
                    resources=self.resources,
                    name=f"cell {key}",
                )
                pending[h] = (key, cell, (sp.name, ratio, f, s))
                if sp.name == "real":
                    real = h
        for h, result in self.ex.as_completed(list(pending)):
            key, cell, name = pending[h]
            atomic_write_text(cell, json.dumps(result, default=float))
            self._keep(key, name, result)
            if self.tracker is None and self.make_tracker is not None:  # only a study that computes tracks
                self.tracker = self.make_tracker()
            if self.tracker is not None:
                row = result["row"]
                tag = row["arm"] if row["ratio"] is None else f"{row['arm']}@{row['ratio']:g}"
                self.tracker.scalars(
                    {
                        k: v
                        for k, v in row.items()
                        if k in ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1")
                    },
                    int(row["seed"]),
                    f"{tag}/f{row['fraction']:g}",
                )
            atomic_write_text(self.ctx.out / "results.csv", pd.DataFrame(self.rows(plan)).to_csv(index=False))

    def _keep(self, key: str, name: tuple, result: dict[str, Any]) -> None:
        """A finished cell's row, and its test probabilities as an array (converted once)."""
        self.results[key] = result
        self.probas[name] = np.asarray(result["proba"], dtype=np.float64)

    def rows(self, plan: list[tuple[float, int, np.ndarray]]) -> list[dict[str, Any]]:
        """The finished cells' rows in plan order, with the paired comparisons."""
        rows = [
            dict(self.results[key]["row"])
            for f, s, idx in plan
            for _, _, key in self._keys(f, s, len(idx))
            if key in self.results
        ]
        compare_cells(rows, self.probas, self.ctx.d.sy, self.pairs, self.ctx.cfg.study.n_boot)
        return [StudyRow.model_validate(r).record() for r in rows]  # the columns in one order


def run_study(
    cfg: RunConfig,
    data_dir: Path,
    out: Path,
    synthesizer_checkpoint: Path | None = None,
    real_classifier_dir: Path | None = None,
    data: RunData | None = None,
) -> dict[str, Any]:
    """Run every (fraction, seed, arm, ratio) cell; writes ``results.csv``, ``summary.csv`` and ``study.json``.

    ``data``: the config's data already read (``medgan run`` hands its own); read here otherwise.

    ``synthesizer_checkpoint``: the run's own synthesizer (``model.kind``), already trained on the
    whole train split (``medgan run``'s), reused by the arm of its kind for the 100 % fraction
    instead of training the same model again.

    Quality gates (``cfg.gates``): every synthesizer the study uses is compared with them (its
    metrics computed as ``medgan run`` does, on the validation split: decisions never see the
    test split; cached under ``out/gates/``, the real
    classifier of the label scores in ``real_classifier_dir``, default ``out/real_classifier``).
    The results go into ``study.json`` under ``gates``. With ``study.skip_failing_synthesizers``
    the cells of arms that use a failing synthesizer are skipped, listed under ``skipped`` and
    marked ``skipped`` in the summary.

    Resumable: each finished cell (its row and test-set probabilities) is saved atomically under
    ``out/cells/<fingerprint>/``; a rerun with the same config reuses finished cells and trains
    only the rest (the fingerprint covers everything a cell depends on).
    """
    d = load_splits(cfg, data_dir, data)
    plan = make_plan(cfg, d.ty, d.classes, arm_specs(cfg.study))  # every error before any training
    trackers = tracking.resolve(cfg.train.tracking)  # the tracker and the cluster before any file
    resources = Resources(cfg.study.cpus_per_task, cfg.study.gpus_per_task)
    executor = make_executor(cfg.study.executor, cfg.study.ray_address)
    if isinstance(executor, RayExecutor):
        try:
            executor.check_placement(resources)
        except BaseException:
            executor.close()
            raise
    out.mkdir(parents=True, exist_ok=True)
    write_provenance(out)
    reuse = {cfg.model.kind: synthesizer_checkpoint} if synthesizer_checkpoint is not None else {}
    cells = out / "cells" / fingerprint(cfg, synthesizer_checkpoint)
    cells.mkdir(parents=True, exist_ok=True)
    gates = Gates(cfg, d.ss, out, real_classifier_dir or out / "real_classifier")
    specs = arm_specs(cfg.study)
    filtering = any(
        sp.pool is not None and kind_is_sized(sp.pool) and sp.min_confidence is not None for sp in specs
    )
    ctx = Context(
        cfg,
        d,
        out,
        cells,
        keep_real_clf=any(sp.synthetic and sp.min_confidence is not None for sp in specs),
        factor=FILTER_POOL if filtering else 1,
    )
    params = tracking.flat_params(cfg.study.model_dump(mode="json"))
    make_tracker = (lambda: Tracker(trackers, out, f"{cfg.name} study", params)) if trackers else None
    status = "FAILED"
    runner = Study(ctx, gates, reuse, executor, make_tracker)
    try:
        shared = executor.put(ctx)
        ckpts = runner.synthesizers(plan, shared)
        runner.cells(plan, shared, ckpts)
        rows = runner.rows(plan)
        status = "FINISHED"
    finally:
        executor.close()
        if runner.tracker is not None:
            runner.tracker.close(status)
    text = pd.DataFrame(rows).to_csv(index=False)
    if not (out / "results.csv").is_file() or (out / "results.csv").read_text(encoding="utf-8") != text:
        atomic_write_text(out / "results.csv", text)  # a rerun with nothing new leaves the file alone
    results = pd.DataFrame(rows)
    summary = summarize(results, runner.skipped, len(d.classes), cfg.study.n_boot)
    atomic_write_text(out / "summary.csv", pd.DataFrame(summary).to_csv(index=False))
    report = {
        "classes": d.classes,
        "n_train": len(d.tr),
        "n_val": len(d.va),
        "n_test": len(d.te),
        # e.g. patients in two splits; reader warnings may quote a UID or a patient ID
        "data_warnings": without_identifiers(list(d.ss.info.get("warnings", [])), d.ss.manifest),
        "study": cfg.study.model_dump(mode="json"),
        "design": design(cfg, plan, runner.kinds),
        "summary": summary,
        "learning_curve": learning_curve(results),
        "gates": gates.records,
        "skipped": runner.skipped,
    }
    atomic_write_text(out / "study.json", json.dumps(report, indent=2, default=float))
    return report


def study_report(cfg: RunConfig, folder: Path, study: dict[str, Any]) -> tuple[Path, Path]:
    """``report.md`` / ``report.html`` of a study on its own (``medgan study``): the study section,
    its figures (under ``folder/figures``) and the config."""
    sections = {
        "study": study,
        "gates": {f"{k} (validation split)": g for k, g in study.get("gates", {}).items()},
        "figures": study_figures(study, folder / "figures"),
        "config": dump_config(cfg),
    }
    return build_report(folder, f"medgan study: {cfg.name}", sections)
