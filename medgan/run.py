"""``medgan run``: the main job — data -> conditional GAN -> samples -> metrics -> study -> report, one run folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from medgan.config import RunConfig, dump_config
from medgan.io.atomic import atomic_write_text


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _describe(counts: int | dict[int, int], classes: list[str]) -> str:
    if isinstance(counts, int):
        return f"{counts} per class"
    return ", ".join(f"{classes[c]}: {k}" for c, k in counts.items()) + " (test-split proportions)"


def _generate_fresh(ckpt: Path, folder: Path, counts: int | dict[int, int], seed: int) -> Any:
    """``generate`` (NPZ) into a folder the run owns; a generation left there by an earlier config
    (another checkpoint, seed or counts) is removed first instead of being refused."""
    import shutil

    from medgan.generate import RECORD, generate
    from medgan.training.checkpoint import read_checkpoint_meta

    meta = read_checkpoint_meta(ckpt)
    want = counts if isinstance(counts, int) else {meta["classes"][c]: k for c, k in counts.items()}
    rec_path = folder / RECORD
    if rec_path.is_file():
        try:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            rec = {}
        got = (rec.get("checkpoint_sha256"), rec.get("seed"), rec.get("n_per_class"), rec.get("format"))
        if got != (meta.get("sha256"), seed, want, "npz"):
            shutil.rmtree(folder)
    return generate(ckpt, folder, counts, fmt="npz", seed=seed)


def run(cfg: RunConfig, out: Path, data_dir: Path, log: Any = print) -> Path:
    """Every stage of ``cfg`` into ``out``; re-running resumes finished stages. Returns ``report.html``."""
    from medgan.data.inspect import summarize
    from medgan.data.sources import load_source
    from medgan.metrics.evaluate import eval_counts, split_class_counts
    from medgan.report import auc_plot, build_report, real_vs_synthetic_figure
    from medgan.train import data_meta, train_cgan_arrays, train_split, val_split
    from medgan.training.checkpoint import list_checkpoints, resolve_checkpoint

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.resolved.yaml", dump_config(cfg))
    ss = load_source(cfg.data, data_dir)
    summary = summarize(ss)
    atomic_write_text(out / "data_summary.json", json.dumps(summary, indent=2, default=float))
    log(f"[1/5] data: {summary['n_slices']} slices {tuple(summary['shape'])}, splits {summary['per_split']}")

    tr = train_split(cfg, data_dir, ss)
    cgan_dir = out / "cgan"
    ckpts = list_checkpoints(cgan_dir / "checkpoints")
    if ckpts and int(ckpts[-1].stem.split("-")[1]) >= cfg.train.steps:
        ckpt = resolve_checkpoint(cgan_dir)  # the validation-selected best when there is one
    else:
        meta = {"classes": list(tr.classes), "shape": list(tr.shape), "data": data_meta(tr)}
        ckpt = train_cgan_arrays(
            cfg,
            tr.images,
            tr.manifest["label"].to_numpy(),
            meta,
            cgan_dir,
            resume=bool(ckpts),
            val=val_split(cfg, data_dir, ss),
        )
    log(f"[2/5] conditional GAN: {ckpt}")

    test = ss.split("test")
    samples = out / "samples"
    counts = eval_counts(cfg.pipeline, test, tr, len(ss.classes))
    m = _generate_fresh(ckpt, samples, counts, cfg.seed)
    log(f"[3/5] generated {len(m)} slices into {samples} ({_describe(counts, ss.classes)})")

    sections: dict[str, Any] = {"data": summary, "config": dump_config(cfg), "figures": {}, "gates": {}}
    figs = out / "figures"
    from medgan.io.npz import read_npz

    syn = np.concatenate([read_npz(samples / f)["images"] for f in dict.fromkeys(m["path"])])
    real_vs_synthetic_figure(
        test.images,
        test.manifest["label"].to_numpy(),
        syn,
        m["label"].to_numpy(),
        list(ss.classes),
        figs / "real_vs_synthetic.png",
    )
    sections["figures"]["Real (test split) vs synthetic slices per class"] = figs / "real_vs_synthetic.png"

    metrics = None
    clf_dir = out / "real_classifier"
    if cfg.pipeline.evaluate:
        from medgan.metrics.evaluate import evaluate
        from medgan.metrics.features import get_extractor
        from medgan.training.seeding import resolve_device

        cas_spec = None
        if cfg.pipeline.label_scores:
            cas_counts = split_class_counts(tr, cfg.pipeline.cas_n or len(tr), len(ss.classes))
            _generate_fresh(ckpt, out / "samples-cas", cas_counts, cfg.seed)
            cas_spec = str(out / "samples-cas")
        ext = get_extractor(cfg.pipeline.features, resolve_device(cfg.train.device))
        metrics = evaluate(
            cfg.data,
            str(samples),
            ext,
            data_dir,
            out=out / "evaluation",
            run_dir=cgan_dir,
            seed=cfg.seed,
            label_scores="if-possible" if cfg.pipeline.label_scores else False,
            classifier=cfg.classifier,
            classifier_dir=clf_dir,
            cas_synthetic=cas_spec,
            gates=cfg.gates,
        )
        sections["metrics"] = metrics
        if (out / "evaluation" / "closest_pairs.png").is_file():
            sections["figures"]["Memorization check: closest synthetic (top) / training (bottom) pairs"] = (
                out / "evaluation" / "closest_pairs.png"
            )
        if "gates" in metrics:
            sections["gates"]["cgan (this run's conditional GAN)"] = metrics["gates"]
        log(
            f"[4/5] metrics: FID {metrics['fid']:.1f} (floor {metrics.get('floor_fid') or float('nan'):.1f}), "
            f"precision {_f(metrics['precision'])}, recall {_f(metrics['recall'])}, "
            f"coverage {_f(metrics['coverage'])}"
            + (
                f", label agreement {metrics['label_agreement']['agreement']:.2f}, CAS AUC {_f(metrics['cas']['auc'])}"
                if "label_agreement" in metrics
                else ""
            )
        )
        if "gates" in metrics:
            from medgan.metrics.gates import gates_verdict

            log(f"      gates: {gates_verdict('the conditional GAN', metrics['gates']['results'])}")

    if cfg.pipeline.study:
        import pandas as pd

        from medgan.study import run_study

        study = run_study(
            cfg,
            data_dir,
            out / "study",
            cgan_checkpoint=ckpt,
            cgan_metrics=metrics,
            real_classifier_dir=clf_dir,
        )
        sections["study"] = study
        for name, g in study.get("gates", {}).items():
            if g.get("checkpoint") != str(ckpt) or not sections["gates"]:
                sections["gates"][f"{name} (study synthesizer)"] = g
        summ = pd.DataFrame([r for r in study["summary"] if r.get("auc") is not None])
        for x, name in (("ratio", "auc_vs_ratio.png"), ("fraction", "auc_vs_fraction.png")):
            if x == "fraction" and (summ.empty or summ["fraction"].nunique() < 2):
                continue
            p = auc_plot(summ, x, figs / name)
            if p is not None:
                sections["figures"][
                    f"Test AUC against {'synthetic ratio' if x == 'ratio' else 'real-data fraction'} (95% CI over seeds)"
                ] = p
        log(f"[5/5] study: {len(study['summary'])} arm settings")

    _, html = build_report(out, f"medgan run: {cfg.name}", sections)
    log(f"report: {html} ({time.perf_counter() - t0:.0f} s)")
    return html
