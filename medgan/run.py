"""``medgan run``: the main job — data -> conditional GAN -> samples -> metrics -> study -> report, one run folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from medgan.config import RunConfig, dump_config
from medgan.io.atomic import atomic_write_text


def run(cfg: RunConfig, out: Path, data_dir: Path, log: Any = print) -> Path:
    """Every stage of ``cfg`` into ``out``; re-running resumes finished stages. Returns ``report.html``."""
    from medgan.data.inspect import summarize
    from medgan.data.sources import load_source
    from medgan.generate import generate
    from medgan.report import auc_plot, build_report, real_vs_synthetic_figure
    from medgan.train import data_meta, train_cgan_arrays, train_split
    from medgan.training.checkpoint import list_checkpoints

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.resolved.yaml", dump_config(cfg))
    ss = load_source(cfg.data, data_dir)
    summary = summarize(ss)
    atomic_write_text(out / "data_summary.json", json.dumps(summary, indent=2, default=float))
    log(f"[1/5] data: {summary['n_slices']} slices {tuple(summary['shape'])}, splits {summary['per_split']}")

    tr = train_split(cfg, data_dir)
    cgan_dir = out / "cgan"
    ckpts = list_checkpoints(cgan_dir / "checkpoints")
    if ckpts and int(ckpts[-1].stem.split("-")[1]) >= cfg.train.steps:
        ckpt = ckpts[-1]
    else:
        meta = {"classes": list(tr.classes), "shape": list(tr.shape), "data": data_meta(tr)}
        ckpt = train_cgan_arrays(
            cfg, tr.images, tr.manifest["label"].to_numpy(), meta, cgan_dir, resume=bool(ckpts)
        )
    log(f"[2/5] conditional GAN: {ckpt}")

    samples = out / "samples"
    m = generate(ckpt, samples, cfg.pipeline.eval_per_class, fmt="npz", seed=cfg.seed)
    log(f"[3/5] generated {len(m)} slices into {samples}")

    sections: dict[str, Any] = {"data": summary, "config": dump_config(cfg), "figures": {}}
    figs = out / "figures"
    test = ss.split("test")
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

    if cfg.pipeline.evaluate:
        from medgan.metrics.evaluate import evaluate
        from medgan.metrics.features import get_extractor
        from medgan.training.seeding import resolve_device

        ext = get_extractor(cfg.pipeline.features, resolve_device(cfg.train.device))
        metrics = evaluate(
            cfg.data,
            str(samples),
            ext,
            data_dir,
            out=out / "evaluation",
            run_dir=cgan_dir,
            seed=cfg.seed,
        )
        sections["metrics"] = metrics
        if (out / "evaluation" / "closest_pairs.png").is_file():
            sections["figures"]["Memorization check: closest synthetic (top) / training (bottom) pairs"] = (
                out / "evaluation" / "closest_pairs.png"
            )
        log(
            f"[4/5] metrics: FID {metrics['fid']:.1f} (floor {metrics.get('floor_fid') or float('nan'):.1f}), precision {metrics['precision']:.2f}, recall {metrics['recall']:.2f}"
        )

    if cfg.pipeline.study:
        import pandas as pd

        from medgan.study import run_study

        study = run_study(cfg, data_dir, out / "study", cgan_checkpoint=ckpt)
        sections["study"] = study
        summ = pd.DataFrame(study["summary"])
        for x, name in (("ratio", "auc_vs_ratio.png"), ("fraction", "auc_vs_fraction.png")):
            if x == "fraction" and summ["fraction"].nunique() < 2:
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
