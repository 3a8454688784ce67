"""The study over seeds: one row per arm setting with intervals, verdicts, power and equivalents.

Per (arm, ratio, fraction), over its seeds (docs/study.md, "Reading the study"):

* mean test metrics with t-intervals (``auc`` is the macro one-vs-rest AUC for more than two
  classes: ``metric`` names it), ``one_class_seeds`` (classifiers that predicted one class
  everywhere on test);
* the paired differences with ``real`` (and, for synthetic arms, ``classical``) on the same seed:
  mean, t-interval, verdict, the t-test p-value, its Holm-adjusted value over every comparison
  of the study (``p_holm``, ``verdict_holm``) and ``mde``, the smallest difference the study
  could detect with 80 % power given its repeats and the observed paired spread;
* ``real_plus_share``: the share of the positive control's gain (``real+``, the same number of
  extra real slices, same ratio and fraction) that the arm reached, where that gain was detected;
* ``worth_real``: the arm's gain in units of real slices, read off the learning curve of every
  real-only classifier of the study (``real`` at each fraction and ``real+``), with a bootstrap
  interval over repeats (:func:`medgan.study.curves.worth_real_slices`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from medgan.classifier.metrics import summarize_over_seeds
from medgan.config.study import REAL_ARMS
from medgan.study.curves import LearningCurve, worth_real_slices
from medgan.study.plan import arm_config, arm_specs, epoch_samples
from medgan.study.statistics import holm, paired_summary, verdict

#: Test metrics summarized over seeds (those a study's rows hold).
METRICS = ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1", "kappa")
#: The reference arms, the suffix of their fields and the words of their verdicts.
REFERENCES = {
    "real": ("", "helped", "hurt"),
    "classical": ("_vs_classical", "better than classical", "worse than classical"),
}
ALPHA = 0.05


def _nan_to_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _compare(rec: dict[str, Any], g: pd.DataFrame, ref: str) -> None:
    """The paired comparison of an arm setting with ``ref`` over its seeds, into ``rec``."""
    sfx, better, worse = REFERENCES[ref]
    col = f"auc_diff_vs_{ref}"
    if col not in g or not g[col].notna().any():
        return
    sm = paired_summary(g[col].tolist(), bounds=(-1.0, 1.0))
    diff_key = "auc_diff_vs_real" if ref == "real" else "auc_diff_vs_classical"
    ci_key = "auc_diff_ci" if ref == "real" else "auc_diff_vs_classical_ci"
    rec[diff_key], rec[ci_key] = sm["mean"], list(sm["ci"])
    rec[f"verdict{sfx}"] = verdict(sm["ci"], better, worse)
    rec[f"p_value{sfx}"], rec[f"mde{sfx}"] = _nan_to_none(sm["p_value"]), _nan_to_none(sm["mde"])
    for metric in ("balanced_acc", "kappa"):
        c = f"{metric}_diff_vs_{ref}"
        if c in g and g[c].notna().any():
            m = paired_summary(g[c].tolist(), bounds=(-1.0, 1.0))
            rec[c], rec[f"{c}_ci"] = m["mean"], list(m["ci"])


def _per_class(rec: dict[str, Any], g: pd.DataFrame, real: pd.DataFrame | None) -> None:
    """Mean one-vs-rest AUC per class (more than two classes) and its paired difference with real."""
    for c in [
        c for c in g.columns if c.startswith("auc_") and c[4:] and not c.startswith(("auc_ci", "auc_diff"))
    ]:
        if not g[c].notna().any():
            continue
        rec[c] = float(g[c].mean())
        if real is not None and c in real and rec["arm"] != "real":
            paired = g.set_index("seed")[c] - real.set_index("seed")[c]
            if paired.notna().any():
                rec[f"{c}_diff_vs_real"] = float(paired.mean())


def _summary_row(
    arm: str, ratio: Any, f: float, g: pd.DataFrame, skipped: list[dict], real: pd.DataFrame | None
) -> dict[str, Any]:
    """One arm setting over seeds: mean metrics with t-intervals, the comparisons with real and classical."""
    rec: dict[str, Any] = {
        "arm": arm,
        "ratio": None if pd.isna(ratio) else ratio,
        "fraction": f,
        "seeds": len(g),
        "n_real": float(g["n_real"].mean()),
    }
    if "n_added" in g and g["n_added"].notna().any():
        rec["n_added"] = float(g["n_added"].mean())
    for metric in METRICS:
        if metric in g and g[metric].notna().any():
            sm = summarize_over_seeds(g[metric].tolist(), bounds=(-1.0 if metric == "kappa" else 0.0, 1.0))
            rec[metric], rec[f"{metric}_ci"] = sm["mean"], list(sm["ci"])
    if "one_class" in g:
        rec["one_class_seeds"] = int(g["one_class"].fillna(False).astype(bool).sum())
    _per_class(rec, g, real)
    if arm != "real":
        _compare(rec, g, "real")
    if arm not in REAL_ARMS:
        _compare(rec, g, "classical")
    n_skipped = sum((k["arm"], k["ratio"], k["fraction"]) == (arm, rec["ratio"], f) for k in skipped)
    if n_skipped:
        rec["skipped_seeds"] = n_skipped
    return rec


def _holm(summary: list[dict[str, Any]]) -> None:
    """Holm-adjusted p-values and verdicts over every comparison of the study (one family)."""
    slots = [
        (r, sfx) for r in summary for sfx, *_ in REFERENCES.values() if r.get(f"p_value{sfx}") is not None
    ]
    adjusted = holm([r[f"p_value{sfx}"] for r, sfx in slots])
    words = {sfx: (better, worse) for sfx, better, worse in REFERENCES.values()}
    for (r, sfx), p in zip(slots, adjusted, strict=True):
        r[f"p_holm{sfx}"] = _nan_to_none(p)
        diff = r["auc_diff_vs_real"] if sfx == "" else r["auc_diff_vs_classical"]
        better, worse = words[sfx]
        clear = math.isfinite(p) and p < ALPHA
        r[f"verdict{sfx}_holm"] = (better if diff > 0 else worse) if clear else "no clear difference"


def _real_plus_share(summary: list[dict[str, Any]]) -> None:
    """Each synthetic arm's mean gain as a share of ``real+``'s at the same ratio and fraction,
    where ``real+`` was detected as helping (a share of a gain the study could not see is noise)."""
    control = {
        (r["ratio"], r["fraction"]): r.get("auc_diff_vs_real")
        for r in summary
        if r["arm"] == "real+" and r.get("verdict") == "helped"
    }
    for r in summary:
        if r["arm"] in REAL_ARMS or r.get("auc_diff_vs_real") is None:
            continue
        gain = control.get((r["ratio"], r["fraction"]))
        if gain is not None and math.isfinite(gain) and gain > 0:
            r["real_plus_share"] = float(r["auc_diff_vs_real"] / gain)


def curve_cells(results: pd.DataFrame) -> pd.DataFrame:
    """Every classifier trained on real slices only (``real`` and ``real+``): fraction, seed, n, auc."""
    if results.empty or "arm" not in results:
        return pd.DataFrame(columns=["fraction", "seed", "n", "auc", "arm"])
    rows = results[results["arm"].isin(["real", "real+"]) & results["auc"].notna()]
    cells = rows[["fraction", "seed", "n_real", "auc", "arm"]].rename(columns={"n_real": "n"})
    return cells.reset_index(drop=True)


def learning_curve(results: pd.DataFrame) -> dict[str, Any] | None:
    """The real-only learning curve of a study: its points and the monotone fit (None with < 2 sizes)."""
    cells = curve_cells(results)
    if cells["n"].nunique() < 2:
        return None
    fit = LearningCurve.fit(cells["n"].to_numpy(float), cells["auc"].to_numpy(float))
    points = [
        {
            "n": float(r.n),
            "auc": float(r.auc),
            "arm": r.arm,
            "fraction": float(r.fraction),
            "seed": int(r.seed),
        }
        for r in cells.itertuples()
    ]
    return {"points": points, "fit": fit.to_dict()}


def _worth(summary: list[dict[str, Any]], results: pd.DataFrame, n_boot: int) -> None:
    """``worth_real`` (with its interval) for every arm setting that adds slices, where a curve exists."""
    cells = curve_cells(results)
    if cells["n"].nunique() < 2:
        return
    real_n = cells[cells["arm"] == "real"].groupby("fraction")["n"].mean()
    for i, r in enumerate(summary):
        if (
            r["arm"] in ("real", "classical")
            or r.get("auc_diff_vs_real") is None
            or r["fraction"] not in real_n
        ):
            continue
        g = results[
            (results["arm"] == r["arm"])
            & (results["fraction"] == r["fraction"])
            & (results["ratio"].isna() if r["ratio"] is None else results["ratio"] == r["ratio"])
        ]
        diffs = dict(zip(g["seed"].astype(int), g["auc_diff_vs_real"].astype(float), strict=True))
        w = worth_real_slices(
            cells, r["fraction"], float(real_n[r["fraction"]]), diffs, n_boot=n_boot, seed=i
        )
        if math.isfinite(w["worth"]):
            r["worth_real"], r["worth_real_ci"], r["worth_censored"] = w["worth"], w["ci"], w["censored"]


def summarize(
    results: pd.DataFrame, skipped: list[dict[str, Any]], n_classes: int = 2, n_boot: int = 1000
) -> list[dict[str, Any]]:
    """``summary.csv``: one row per (arm, ratio, fraction) over seeds; arm settings every seed of
    which was skipped (a failing synthesizer) get one row that says why. ``n_boot``: replicates of
    the "worth N real slices" intervals."""
    metric = "AUC" if n_classes == 2 else "macro AUC (one-vs-rest)"
    summary = []
    if len(results):
        reals = {f: g for (arm, f), g in results.groupby(["arm", "fraction"], sort=False) if arm == "real"}
        for (arm, ratio, f), g in results.groupby(["arm", "ratio", "fraction"], dropna=False, sort=False):
            row = _summary_row(arm, ratio, f, g, skipped, reals.get(f))
            row["metric"] = metric
            summary.append(row)
        _holm(summary)
        _real_plus_share(summary)
        _worth(summary, results, n_boot)
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


def design(cfg: Any, plan: list[tuple[float, int, np.ndarray]], kinds: list[str]) -> dict[str, Any]:
    """What the study's cells were built from, for the report: repeats and real N per fraction, the
    length of each kind's synthesizers per fraction, and where every synthesizer's data came from."""
    st = cfg.study
    specs = arm_specs(st)
    sizes: dict[str, list[int]] = {}
    for f, _, idx in plan:
        sizes.setdefault(f"{f:g}", []).append(len(idx))
    return {
        "seeds": {f"{f:g}": st.seeds_for(f) for f in st.fractions},
        "ensemble": {f"{f:g}": st.ensemble_for(f) for f in st.fractions},
        "n_real": {f: float(np.mean(v)) for f, v in sizes.items()},
        "ratios": {f"{f:g}": st.ratios_for(f) for f in st.fractions},
        "synthesizer_steps": {
            k: {f"{f:g}": arm_config(cfg, k, f).train.steps for f in st.fractions} for k in kinds
        },
        "step_scaling": st.step_scaling,
        "equal_steps": st.equal_steps,
        "classifier_epoch_samples": {
            f: int(np.mean([epoch_samples(st, specs, float(f), n) for n in v])) for f, v in sizes.items()
        },
        "subset_note": (
            "each repeat draws its own stratified subset of the train split; every synthesizer of "
            "that repeat is trained on that subset only and never sees the rest"
            + ("; real+ adds real train slices the subset left out" if "real+" in st.arms else "")
        ),
    }
