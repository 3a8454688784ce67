"""``medgan run``: the main job — data -> synthesizer -> samples or translations -> metrics -> study ->
report, in one run folder.

What the synthesizer stage trains, and what comes out of it, is the config's ``model.kind``
(:mod:`medgan.synthesis.registry`), and nothing here names a kind: a kind that makes samples
generates the test split's class mix, scored against the test split; a kind that translates
turns the test split's slices of each domain into the other, scored against the real slices of
the target domain (:data:`STAGES`, by the registry entry's ``makes``). The data are read once
(:class:`~medgan.data.sources.RunData`) and handed to every stage. Re-running resumes finished stages.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medgan.config import RunConfig, dump_config
from medgan.data.inspect import summarize
from medgan.data.prepare import without_identifiers
from medgan.data.sources import RunData
from medgan.device import resolve_device, sampling_precision
from medgan.errors import InputError
from medgan.executor import Resources, preflight
from medgan.generate import RECORD, generate
from medgan.io.atomic import atomic_write_text
from medgan.io.npz import read_npz
from medgan.metrics.evaluate import eval_counts, evaluate_sets, split_class_counts
from medgan.metrics.features import get_extractor
from medgan.metrics.gates import gates_verdict
from medgan.metrics.pairs import describe as describe_pairs
from medgan.metrics.pairs import pair_scores
from medgan.metrics.records import EvaluationResult
from medgan.provenance import write_provenance
from medgan.report import build_report, pairs_figure, real_vs_synthetic_figure
from medgan.report.study_figures import study_figures
from medgan.study import run_study
from medgan.study.segmentation import run_seg_study
from medgan.synthesis import registry
from medgan.train import train_slices, training_masks, training_slices, val_split
from medgan.training import tracking
from medgan.training.checkpoint import (
    checkpoint_meta,
    checkpoint_step,
    list_checkpoints,
    resolve_checkpoint,
)
from medgan.training.loop import config_changes
from medgan.translate import translate

Log = Callable[[str], Any]


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _describe(counts: int | dict[int, int], classes: list[str]) -> str:
    if isinstance(counts, int):
        return f"{counts} per class"
    return ", ".join(f"{classes[c]}: {k}" for c, k in counts.items()) + " (test-split proportions)"


def _generate_fresh(
    ckpt: Path, folder: Path, counts: int | dict[int, int], seed: int, precision: str = "fp32"
) -> pd.DataFrame:
    """``generate`` (NPZ) into a folder the run owns; a generation left there by an earlier config
    (another checkpoint, seed, counts or precision) is removed first instead of being refused."""
    meta = checkpoint_meta(ckpt)
    want = counts if isinstance(counts, int) else {meta.classes[c]: k for c, k in counts.items()}
    rec = {"checkpoint_sha256": meta.sha256, "seed": seed, "n_per_class": want, "format": "npz"}
    _clear_if_other(folder, {**rec, "precision": precision if precision != "fp32" else None})
    return generate(ckpt, folder, counts, fmt="npz", seed=seed, precision=precision)


def _clear_if_other(folder: Path, want: dict[str, Any]) -> None:
    """Remove an output folder the run owns when its record (``generate.json``) was written for other
    parameters (an earlier config's), so the writer starts it afresh instead of refusing it."""
    rec_path = folder / RECORD
    if not rec_path.is_file():
        return
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        rec = {}
    if any(rec.get(k) != v for k, v in want.items()):
        shutil.rmtree(folder)


def _read_images(folder: Path, manifest: pd.DataFrame) -> np.ndarray:
    """The images of an NPZ generation or translation, in manifest order."""
    return np.concatenate([read_npz(folder / f)["images"] for f in dict.fromkeys(manifest["path"])])


def train_stage(cfg: RunConfig, data: RunData, out: Path, data_dir: Path) -> Path:
    """The config's synthesizer, trained in ``out/<model.kind>`` (or resumed, or already finished)."""
    folder = out / cfg.model.kind
    ckpts = list_checkpoints(folder / "checkpoints")
    if ckpts and checkpoint_step(ckpts[-1]) >= cfg.train.steps:
        return resolve_checkpoint(folder)  # the validation-selected best when there is one
    images, labels, meta = training_slices(cfg, data_dir, data)
    val = val_split(cfg, data_dir, data.data)
    masks = training_masks(cfg, data_dir, data)
    return train_slices(cfg, images, labels, meta, folder, resume=bool(ckpts), val=val, masks=masks)


def sample_stages(
    cfg: RunConfig, ckpt: Path, data: RunData, out: Path, data_dir: Path, sections: dict[str, Any], log: Log
) -> dict[str, Any] | None:
    """Samples in the test split's class mix, their figure and (``pipeline.evaluate``) their scores."""
    ss = data.data
    tr, test = ss.split("train"), ss.split("test")
    counts = eval_counts(cfg.pipeline, test, tr, len(ss.classes))
    # the run samples in the precision it trains in (bf16 only where the device runs it natively)
    prec = sampling_precision(resolve_device(cfg.train.device), cfg.train.amp)
    m = _generate_fresh(ckpt, out / "samples", counts, cfg.seed, prec)
    log(f"[3/5] generated {len(m)} slices into {out / 'samples'} ({_describe(counts, ss.classes)})")
    fig = out / "figures" / "real_vs_synthetic.png"
    syn, syn_y = _read_images(out / "samples", m), m["label"].to_numpy().astype(np.int64)
    real_vs_synthetic_figure(
        test.images, test.manifest["label"].to_numpy(), syn, syn_y, list(ss.classes), fig
    )
    sections["figures"]["Real (test split) vs synthetic slices per class"] = fig
    if not cfg.pipeline.evaluate:
        return None
    cas_set = None
    if cfg.pipeline.label_scores:
        cas_counts = split_class_counts(tr, cfg.pipeline.cas_n or len(tr), len(ss.classes))
        mc = _generate_fresh(ckpt, out / "samples-cas", cas_counts, cfg.seed, prec)
        cas_set = (_read_images(out / "samples-cas", mc), mc["label"].to_numpy().astype(np.int64))
    metrics = evaluate_sets(
        ss,
        "test",
        syn,
        syn_y,
        get_extractor(cfg.pipeline.features, resolve_device(cfg.train.device)),
        tag=cfg.data.model_dump_json(),
        real_name=f"{cfg.data.source.kind} source from the config:test",
        syn_name=str(out / "samples"),
        out=out / "evaluation",
        run_dir=out / cfg.model.kind,
        seed=cfg.seed,
        label_scores="if-possible" if cfg.pipeline.label_scores else False,
        classifier=cfg.classifier,
        classifier_dir=out / "real_classifier",
        cas_set=cas_set,
        gates=cfg.gates,
    )
    sections["metrics"] = metrics
    if registry.get(cfg.model.kind).pairs and ss.masks is not None:
        _pair_stage(cfg, ss, out, m, cas_set, sections, log)
    pairs = out / "evaluation" / "closest_pairs.png"
    if pairs.is_file():
        sections["figures"]["Memorization check: closest synthetic (top) / training (bottom) pairs"] = pairs
    r = EvaluationResult.model_validate(metrics)
    label = (
        f", label agreement {r.label_agreement['agreement']:.2f}, CAS AUC {_f((r.cas or {}).get('auc'))}"
        if r.label_agreement is not None
        else ""
    )
    log(
        f"[4/5] metrics: FID {r.fid:.1f} (floor {r.floor_fid or float('nan'):.1f}), "
        f"precision {_f(r.precision)}, recall {_f(r.recall)}, coverage {_f(r.coverage)}{label}"
    )
    if r.gates is not None:
        what = registry.get(cfg.model.kind).noun
        sections["gates"][f"{cfg.model.kind} (this run's {what})"] = r.gates
        log(f"      gates: {gates_verdict(f'the {what}', r.gates['results'])}")
    return metrics


def _read_masks(folder: Path, manifest: pd.DataFrame) -> np.ndarray:
    """The masks of an NPZ generation of image + mask pairs, in manifest order."""
    return np.concatenate([read_npz(folder / f)["masks"] for f in dict.fromkeys(manifest["path"])])


def _pair_stage(
    cfg: RunConfig,
    ss: Any,
    out: Path,
    samples: pd.DataFrame,
    cas_set: tuple[np.ndarray, np.ndarray] | None,
    sections: dict[str, Any],
    log: Log,
) -> None:
    """Mask fidelity and (with ``pipeline.label_scores``) the segmentation CAS of the run's pairs,
    their overlay figure, into ``evaluation/pair_scores.json`` and the report."""
    syn_x = _read_images(out / "samples", samples)
    syn_m = _read_masks(out / "samples", samples)
    syn_y = samples["label"].to_numpy().astype(np.int64)
    tr, va, te = (ss.split(s) for s in ("train", "val", "test"))
    cas = None
    if cas_set is not None:
        cm = pd.read_csv(out / "samples-cas" / "manifest.csv")
        cas = (cas_set[0], _read_masks(out / "samples-cas", cm))
    scores = pair_scores(
        (tr.images, tr.masks),
        (va.images, va.masks),
        (te.images, te.masks),
        (syn_x, syn_m),
        cas,
        cfg.segmenter,
    )
    atomic_write_text(
        out / "evaluation" / "pair_scores.json", json.dumps(scores, indent=1, allow_nan=False) + "\n"
    )
    sections["pair_scores"] = scores
    fig = out / "figures" / "pairs.png"
    te_y = te.manifest["label"].to_numpy().astype(np.int64)
    pairs_figure((te.images, te.masks, te_y), (syn_x, syn_m, syn_y), list(ss.classes), fig)
    sections["figures"]["Real (test split) and synthetic slices with their lesion masks' contours"] = fig
    log(f"      {describe_pairs(scores)}")


def translation_stages(
    cfg: RunConfig, ckpt: Path, data: RunData, out: Path, data_dir: Path, sections: dict[str, Any], log: Log
) -> dict[str, Any] | None:
    """The test split's slices of each domain translated into the other (NPZ, traced to their
    sources), the label-preservation check and (``pipeline.evaluate``) scores against the real
    slices of the target domain, beside the real-real floor. Between two datasets, A -> B
    translates ``data`` and B -> A ``data_b``."""
    features = cfg.pipeline.features if cfg.pipeline.evaluate else None
    results: dict[str, Any] = {}
    shown: list[tuple[np.ndarray, np.ndarray, str]] = []
    sha = checkpoint_meta(ckpt).sha256
    for direction in ("A2B", "B2A"):
        source = data.data_b if direction == "B2A" and data.data_b is not None else data.data
        test = source.split("test")
        by_id = dict(zip(test.manifest["slice_id"].to_numpy(), range(len(test)), strict=True))
        folder = out / "translations" / direction
        _clear_if_other(folder, {"checkpoint_sha256": sha})
        m = translate(
            ckpt, folder, direction, source, data_dir, split="test", fmt="npz", features=features, data=data
        )
        results[direction] = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        src_ids = m["source_slice_id"].to_numpy()
        sources = test.images[[by_id[i] for i in src_ids]] if len(m) else test.images[:0]
        r = results[direction]
        shown.append(
            (
                sources,
                _read_images(folder, m) if len(m) else sources,
                f"{r['source_domain']} -> {r['target_domain']}",
            )
        )
        q = r.get("quality") or {}
        log(
            f"[3/5] translated {r['n_written']} test slices {direction} ({r['source_domain']} -> {r['target_domain']}): "
            f"{r['share_classified_as_target']:.0%} classified as the target"
            + (
                f", FID {q['fid']:.1f} (floor {q.get('floor_fid') or float('nan'):.1f})"
                if q.get("fid") is not None
                else ""
            )
        )
    sections["translations"] = results
    fig = out / "figures" / "translations.png"
    real_vs_synthetic_figure(
        np.concatenate([s for s, _, _ in shown]),
        np.concatenate([np.full(len(s), i) for i, (s, _, _) in enumerate(shown)]),
        np.concatenate([t for _, t, _ in shown]),
        np.concatenate([np.full(len(t), i) for i, (_, t, _) in enumerate(shown)]),
        [name for _, _, name in shown],
        fig,
        kinds=("test slice", "its translation"),
    )
    sections["figures"]["Test slices (real) and their translations (synthetic), per direction"] = fig
    log("[4/5] translation scores in translations/<direction>/metrics.json")
    return None


#: What ``medgan run`` does with the synthesizer, by what its kind makes (the registry's ``makes``).
STAGES: dict[str, Callable[..., dict[str, Any] | None]] = {
    "samples": sample_stages,
    "translations": translation_stages,
}


def study_stage(
    cfg: RunConfig,
    ckpt: Path,
    metrics: dict[str, Any] | None,
    data: RunData,
    out: Path,
    data_dir: Path,
    sections: dict[str, Any],
    log: Log,
) -> None:
    """The augmentation study (the run's synthesizer reused for its own arm) and its figures."""
    study = run_study(
        cfg,
        data_dir,
        out / "study",
        synthesizer_checkpoint=ckpt,
        real_classifier_dir=out / "real_classifier",
        data=data,
    )
    sections["study"] = study
    for name, g in study.get("gates", {}).items():  # decided on the validation split
        sections["gates"][f"{name} (study synthesizer, validation split)"] = g
    sections["figures"].update(study_figures(study, out / "figures"))
    log(f"[5/5] study: {len(study['summary'])} arm settings")


def check_same_run(out: Path, cfg: RunConfig) -> None:
    """Refuse an ``--out`` that holds a run of another config (other data, model, seed or training
    settings; the rule ``medgan train --resume`` and ``generate`` follow). Stages that only read the
    synthesizer (pipeline, study, classifier, augment) and the settings a resume may change
    (``train.steps``, ...) may differ: their outputs are redone or resumed."""
    path = out / "config.resolved.yaml"
    if not path.is_file():
        return
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(
            path, f"not a readable run config ({exc.__class__.__name__}); give a new --out"
        ) from None
    if not isinstance(saved, dict):
        raise InputError(path, "not a run config; give a new --out")
    changed = config_changes(saved, cfg.model_dump(mode="json"))
    if changed:
        raise InputError(
            out,
            f"holds a run of another config: {changed}; give a new --out, or delete this folder to start "
            "again (a run resumes only with the same data, model and training settings)",
        )


def run(cfg: RunConfig, out: Path, data_dir: Path, log: Log = print) -> Path:
    """Every stage of ``cfg`` into ``out``; re-running resumes finished stages. Returns ``report.html``."""
    t0 = time.perf_counter()
    check_same_run(out, cfg)
    # the tracker and the study's cluster before anything is written
    tracking.resolve(cfg.train.tracking)
    if cfg.pipeline.study:
        preflight(
            cfg.study.executor,
            cfg.study.ray_address,
            Resources(cfg.study.cpus_per_task, cfg.study.gpus_per_task),
        )
    out.mkdir(parents=True, exist_ok=True)
    write_provenance(out)
    atomic_write_text(out / "config.resolved.yaml", dump_config(cfg))
    data = RunData.load(cfg, data_dir)
    summary = without_identifiers(summarize(data.data), data.data.manifest)  # no UID or patient ID in a run
    atomic_write_text(out / "data_summary.json", json.dumps(summary, indent=2, default=float))
    log(f"[1/5] data: {summary['n_slices']} slices {tuple(summary['shape'])}, splits {summary['per_split']}")
    for w in summary.get("warnings", []):  # e.g. patients in two splits (data.splits.allow_patient_overlap)
        log(f"      warning: {w}")

    entry = registry.get(cfg.model.kind)
    ckpt = train_stage(cfg, data, out, data_dir)
    log(f"[2/5] {entry.description}: {ckpt}")

    sections: dict[str, Any] = {"data": summary, "config": dump_config(cfg), "figures": {}, "gates": {}}
    metrics = STAGES[entry.makes](cfg, ckpt, data, out, data_dir, sections, log)
    if cfg.pipeline.study:
        study_stage(cfg, ckpt, metrics, data, out, data_dir, sections, log)
    if cfg.seg_study.run:
        seg = run_seg_study(cfg, data_dir, out / "seg_study", ckpt, data)
        sections["seg_study"] = seg
        log(f"[5/5] segmentation study: {len(seg['summary'])} arm settings (seg_study/seg_study.json)")
    _, html = build_report(out, f"medgan run: {cfg.name}", sections)
    log(f"report: {html} ({time.perf_counter() - t0:.0f} s)")
    return html
