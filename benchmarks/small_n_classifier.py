"""The real-only classifier at small N: which class balancing, and which decision threshold?

    python -m benchmarks.small_n_classifier [--data-dir DIR] [--fraction 0.1 0.25] [--seeds 10]
        [--balance none loss sampler] [--out small_n_classifier.json]

BreastMNIST (read by medgan's own ``load_source``; the classifier section of
``configs/study_breastmnist_fractions.yaml``: resnet10, 25 epochs, patience 6). For each fraction
and seed ``s`` the study's real-only cell is trained: the stratified subset
``stratified_subsample(train_labels, fraction, s, 2)`` of the train split, classifier seed ``s``,
early stopping on the whole validation split; once per ``classifier.balance`` setting. On the test
split each classifier gives its AUC, its balanced accuracy at the validation-chosen threshold
(Youden's J, ``TrainedClassifier.threshold``) and at 0.5, and whether it predicts a single class.

Per setting and fraction: mean and sample std over the seeds, the number of seeds predicting one
class on the whole test split, and the mean paired difference against the first setting. Writes
every cell and the summary to ``--out`` (JSON) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import machine
from medgan.classifier.metrics import diagnostic_metrics
from medgan.classifier.train import predict_labels, train_classifier
from medgan.config import ClassifierConfig, load_config
from medgan.data.sources import load_source
from medgan.mixing import stratified_subsample
from medgan.paths import resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "study_breastmnist_fractions.yaml"
SETTINGS = ("none", "loss", "sampler")


def _splits(
    config: Path, data_dir: Path
) -> tuple[ClassifierConfig, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The config's classifier section and its data's ``{split: (images, labels)}``."""
    cfg = load_config(config)
    ss = load_source(cfg.data, data_dir)
    out = {}
    for name in ("train", "val", "test"):
        part = ss.split(name)
        out[name] = (part.images, part.manifest["label"].to_numpy().astype(np.int64))
    return cfg.classifier, out


def _cell(
    base: ClassifierConfig,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    fraction: float,
    seed: int,
    balance: str,
    device: str,
) -> dict[str, Any]:
    """Train one real-only classifier and score it on the test split."""
    tx, ty = data["train"]
    vx, vy = data["val"]
    sx, sy = data["test"]
    idx = stratified_subsample(ty, fraction, seed, 2)
    n_classes = int(max(ty.max(), vy.max(), sy.max())) + 1
    cfg = ClassifierConfig.model_validate(
        {**base.model_dump(mode="json"), "seed": seed, "balance": balance, "device": device}
    )
    t0 = time.perf_counter()
    clf = train_classifier(tx[idx], ty[idx], vx, vy, n_classes, cfg)
    seconds = time.perf_counter() - t0
    p = clf.predict_proba(sx)
    at_thr = diagnostic_metrics(sy, p, threshold=clf.threshold)
    at_half = diagnostic_metrics(sy, p, threshold=0.5)
    return {
        "fraction": fraction,
        "seed": seed,
        "balance": balance,
        "n_train": len(idx),
        "train_counts": np.bincount(ty[idx], minlength=n_classes).tolist(),
        "best_epoch": clf.best_epoch,
        "epochs_run": len(clf.history),
        "seconds": seconds,
        "val_auc": clf.val_auc,
        "threshold": clf.threshold,
        "val_balanced_acc": clf.val_balanced_acc,
        "auc": at_thr["auc"],
        "balanced_acc": at_thr["balanced_acc"],
        "sensitivity": at_thr["sensitivity"],
        "specificity": at_thr["specificity"],
        "balanced_acc_05": at_half["balanced_acc"],
        "one_class": len(np.unique(predict_labels(p, clf.threshold))) < 2,
        "one_class_05": len(np.unique(predict_labels(p, 0.5))) < 2,
    }


def _mean_sd(v: list[float]) -> tuple[float, float]:
    a = np.asarray(v, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def summarize(cells: list[dict[str, Any]], settings: list[str]) -> list[dict[str, Any]]:
    """Per (fraction, setting): means and sds over seeds, one-class counts, paired diffs vs ``settings[0]``."""
    rows = []
    ref = settings[0]
    for f in sorted({c["fraction"] for c in cells}):
        by = {(c["balance"], c["seed"]): c for c in cells if c["fraction"] == f}
        seeds = sorted({s for _, s in by})
        for b in settings:
            mine = [by[(b, s)] for s in seeds if (b, s) in by]
            row: dict[str, Any] = {"fraction": f, "balance": b, "n_seeds": len(mine)}
            for key in ("auc", "balanced_acc", "balanced_acc_05", "sensitivity", "specificity", "threshold"):
                row[key], row[f"{key}_sd"] = _mean_sd([c[key] for c in mine])
            row["one_class"] = sum(c["one_class"] for c in mine)
            row["one_class_05"] = sum(c["one_class_05"] for c in mine)
            row["seconds"] = float(np.mean([c["seconds"] for c in mine]))
            for key in ("auc", "balanced_acc"):
                d = [by[(b, s)][key] - by[(ref, s)][key] for s in seeds if (b, s) in by and (ref, s) in by]
                row[f"{key}_diff_vs_{ref}"], row[f"{key}_diff_vs_{ref}_sd"] = _mean_sd(d)
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], ref: str) -> str:
    head = [
        "fraction",
        "balance",
        "test AUC",
        "bal. acc @ val thr",
        "bal. acc @ 0.5",
        "one-class seeds (val thr / 0.5)",
        f"Δ AUC vs {ref}",
        f"Δ bal. acc vs {ref}",
        "mean thr",
        "s / clf",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n = r["n_seeds"]
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{r['fraction']:g}",
                    r["balance"],
                    f"{r['auc']:.3f} ± {r['auc_sd']:.3f}",
                    f"{r['balanced_acc']:.3f} ± {r['balanced_acc_sd']:.3f}",
                    f"{r['balanced_acc_05']:.3f} ± {r['balanced_acc_05_sd']:.3f}",
                    f"{r['one_class']}/{n} / {r['one_class_05']}/{n}",
                    f"{r[f'auc_diff_vs_{ref}']:+.3f}",
                    f"{r[f'balanced_acc_diff_vs_{ref}']:+.3f}",
                    f"{r['threshold']:.2f}",
                    f"{r['seconds']:.1f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="data directory (else $MEDGAN_DATA_DIR)")
    ap.add_argument(
        "--config", type=Path, default=CONFIG, help="run config (its data and classifier sections)"
    )
    ap.add_argument("--fraction", type=float, nargs="+", default=[0.1], help="fractions of the train split")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (subset and classifier seed)")
    ap.add_argument(
        "--balance",
        nargs="+",
        choices=SETTINGS,
        default=list(SETTINGS),
        help="settings; the first is the reference",
    )
    ap.add_argument("--device", default="cpu", help="classifier device (default cpu)")
    ap.add_argument(
        "--out", type=Path, default=Path("small_n_classifier.json"), help="JSON of every cell + summary"
    )
    args = ap.parse_args(argv)

    base, data = _splits(args.config, resolve_data_dir(args.data_dir))
    cells = []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's one-class AUC warnings on tiny subsets
        for f in args.fraction:
            for s in range(args.seeds):
                for b in args.balance:
                    c = _cell(base, data, f, s, b, args.device)
                    cells.append(c)
                    print(
                        f"f={f:g} seed={s} {b:8s} auc={c['auc']:.3f} bacc={c['balanced_acc']:.3f} "
                        f"bacc@0.5={c['balanced_acc_05']:.3f} thr={c['threshold']:.3f} "
                        f"epoch={c['best_epoch']}/{c['epochs_run']} {c['seconds']:.1f}s",
                        flush=True,
                    )
    rows = summarize(cells, args.balance)
    md = table(rows, args.balance[0])
    result = {
        "machine": machine(),
        "config": str(args.config),
        "classifier": base.model_dump(mode="json"),
        "fractions": args.fraction,
        "seeds": args.seeds,
        "wall_seconds": time.perf_counter() - t0,
        "summary": rows,
        "cells": cells,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\n{machine()}\n\n{md}\n\nwrote {args.out}")


if __name__ == "__main__":
    main()
