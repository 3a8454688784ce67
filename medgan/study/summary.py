"""The study over seeds: one row per arm setting with intervals and verdicts."""

from __future__ import annotations

from typing import Any

import pandas as pd

from medgan.classifier.metrics import summarize_over_seeds


def _verdict(values: list[float], better: str, worse: str) -> tuple[float, list[float], str]:
    """Mean, t-interval over seeds and the verdict it supports (a CI clear of 0, or not)."""
    sm = summarize_over_seeds(values, bounds=(-1.0, 1.0))
    lo, hi = sm["ci"]
    return sm["mean"], list(sm["ci"]), better if lo > 0 else (worse if hi < 0 else "no clear difference")


def _summary_row(arm: str, ratio: Any, f: float, g: pd.DataFrame, skipped: list[dict]) -> dict[str, Any]:
    """One arm setting over seeds: mean metrics with t-intervals, the verdicts vs real and classical."""
    rec: dict[str, Any] = {
        "arm": arm,
        "ratio": None if pd.isna(ratio) else ratio,
        "fraction": f,
        "seeds": len(g),
    }
    for metric in ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1"):
        if metric in g:
            sm = summarize_over_seeds(g[metric].tolist(), bounds=(0.0, 1.0))
            rec[metric], rec[f"{metric}_ci"] = sm["mean"], list(sm["ci"])
    if arm != "real" and "auc_diff_vs_real" in g:
        values = g["auc_diff_vs_real"].dropna().tolist()
        rec["auc_diff_vs_real"], rec["auc_diff_ci"], rec["verdict"] = _verdict(values, "helped", "hurt")
    if arm not in ("real", "classical") and g.get("auc_diff_vs_classical", pd.Series()).notna().any():
        values = g["auc_diff_vs_classical"].dropna().tolist()
        mean, ci, verdict = _verdict(values, "better than classical", "worse than classical")
        rec["auc_diff_vs_classical"], rec["auc_diff_vs_classical_ci"], rec["verdict_vs_classical"] = (
            mean,
            ci,
            verdict,
        )
    n_skipped = sum((k["arm"], k["ratio"], k["fraction"]) == (arm, rec["ratio"], f) for k in skipped)
    if n_skipped:
        rec["skipped_seeds"] = n_skipped
    return rec


def summarize(results: pd.DataFrame, skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``summary.csv``: one row per (arm, ratio, fraction) over seeds; arm settings every seed of
    which was skipped (a failing synthesizer) get one row that says why."""
    summary = [
        _summary_row(arm, ratio, f, g, skipped)
        for (arm, ratio, f), g in results.groupby(["arm", "ratio", "fraction"], dropna=False, sort=False)
    ] if len(results) else []  # fmt: skip
    done = {(r["arm"], r["ratio"], r["fraction"]) for r in summary}
    for k in skipped:
        key = (k["arm"], k["ratio"], k["fraction"])
        if key in done:
            continue
        done.add(key)
        summary.append(
            {
                "arm": k["arm"],
                "ratio": k["ratio"],
                "fraction": k["fraction"],
                "seeds": 0,
                "skipped_seeds": sum((j["arm"], j["ratio"], j["fraction"]) == key for j in skipped),
                "verdict": "skipped: the synthesizer failed the quality gates",
                "skipped_reason": k["reason"],
            }
        )
    return summary
