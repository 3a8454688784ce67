"""The study's figures beyond AUC-vs-ratio: the real-data learning curve with every arm on it, and the
paired AUC difference against the synthetic ratio (where a gain peaks or turns)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from medgan.io.atomic import atomic_path
from medgan.report import _finite, _pair, auc_plot

if TYPE_CHECKING:
    from medgan.study.curves import LearningCurve

__all__ = ["learning_curve_plot", "ratio_sweep_plot", "shown_ratio"]


def _rows(summary: Sequence[Mapping[str, Any]] | pd.DataFrame) -> list[dict[str, Any]]:
    if isinstance(summary, pd.DataFrame):
        return [
            {k: (None if (isinstance(v, float) and math.isnan(v)) else v) for k, v in r.items()}
            for r in summary.to_dict("records")
        ]
    return [dict(r) for r in summary]


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def shown_ratio(ratios: Sequence[float]) -> float | None:
    """The ratio a learning-curve line shows for an arm: 1 when it ran, else the one closest to 1
    (on a log scale; the smaller on a tie). Chosen before looking at AUCs, so no line is a best-of."""
    rs = sorted({float(r) for r in ratios if _finite(r) is not None and float(r) > 0})
    if not rs:
        return None
    return min(rs, key=lambda r: (abs(math.log(r)), r))


def _real_n(r: Mapping[str, Any], n_train: float | None) -> float | None:
    """A summary row's real training-set size: its ``n_real``, else fraction x the train split."""
    n = _finite(r.get("n_real"))
    if n is not None:
        return n
    f = _finite(r.get("fraction"))
    return f * n_train if f is not None and n_train is not None else None


def _curve(
    study: Mapping[str, Any], rows: list[dict[str, Any]], n_train: float | None
) -> tuple[LearningCurve | None, list[tuple[float, float, str]]]:
    """The real-only learning curve (``study["learning_curve"]``'s fit, else fitted here) and its points."""
    from medgan.study.curves import LearningCurve  # lazy: the study package imports torch

    lc = study.get("learning_curve") or {}
    points = [
        (float(p["n"]), float(p["auc"]), str(p.get("arm", "real")))
        for p in lc.get("points") or []
        if _finite(p.get("n")) is not None and _finite(p.get("auc")) is not None
    ]
    if not points:  # none in study.json: the real and real+ rows (a real+ row's n_real counts its extras)
        for r in rows:
            n, auc = _real_n(r, n_train), _finite(r.get("auc"))
            if r.get("arm") in ("real", "real+") and n is not None and auc is not None:
                points.append((n, auc, str(r["arm"])))
    fit = lc.get("fit") or {}
    if fit.get("n") and fit.get("auc") and len(fit["n"]) == len(fit["auc"]):
        return LearningCurve.from_dict(fit), points
    if points:
        return LearningCurve.fit([p[0] for p in points], [p[1] for p in points]), points
    return None, points


def learning_curve_plot(study: Mapping[str, Any], path: Path) -> Path | None:
    """Test AUC against the real training-set size N (log x), one line per arm with its 95 % band over
    seeds, and the real-only curve's isotonic fit dashed (the points it was fitted to as markers).

    Synthetic arms show one ratio each (:func:`shown_ratio`: 1, else the ratio closest to 1). An
    arm's x is its summary row's ``n_real`` (else fraction x ``n_train``). None when the real-only
    curve has fewer than two distinct N (one fraction and no ``real+`` arm): nothing to draw.
    """
    rows = [
        r
        for r in _rows(study.get("summary") or [])
        if _finite(r.get("auc")) is not None and r.get("seeds") != 0
    ]
    n_train = _finite(study.get("n_train"))
    curve, points = _curve(study, rows, n_train)
    if curve is None or len(curve.n) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    colors: dict[str, str] = {}
    arms = list(dict.fromkeys(str(r["arm"]) for r in rows if r["arm"] != "real+"))
    for i, arm in enumerate(arms):
        colors[arm] = "black" if arm == "real" else f"C{i % 10}"
    for arm in arms:
        own = [r for r in rows if r["arm"] == arm]
        ratio = shown_ratio([r["ratio"] for r in own if r.get("ratio") is not None])
        if ratio is not None:
            own = [
                r
                for r in own
                if _finite(r.get("ratio")) is not None and math.isclose(float(r["ratio"]), ratio)
            ]
        pts = sorted(
            (x, float(r["auc"]), _pair(r.get("auc_ci")))
            for r in own
            if (x := _real_n(r, n_train)) is not None and x > 0
        )
        if not pts:
            continue
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        label = arm if ratio is None else f"{arm} (ratio {ratio:g})"
        ax.plot(x, y, marker="o", ms=4, lw=1.4, color=colors[arm], label=label)
        band = [(p[0], *p[2]) for p in pts if p[2] is not None]
        if len(band) >= 2:
            bx, lo, hi = (np.array(v) for v in zip(*band, strict=True))
            ax.fill_between(bx, lo, hi, color=colors[arm], alpha=0.12, lw=0)
        elif band:
            ax.errorbar(
                [band[0][0]],
                [y[0]],
                yerr=[[y[0] - band[0][1]], [band[0][2] - y[0]]],
                color=colors[arm],
                capsize=3,
            )
    for kind, marker in (("real", "."), ("real+", "x")):
        px = [p[0] for p in points if p[2] == kind]
        if px:
            ax.scatter(
                px,
                [p[1] for p in points if p[2] == kind],
                marker=marker,
                s=14,
                color="0.45",
                alpha=0.6,
                zorder=1,
                label=f"{kind} classifiers (fit points)",
            )
    ax.plot(curve.n, curve.auc, ls="--", lw=1.2, color="0.2", label="real-only fit (isotonic in N)")
    ax.set_xscale("log")
    ticks = sorted(
        {float(x) for x in curve.n[[0, -1]]}
        | {x for r in rows if r["arm"] == "real" and (x := _real_n(r, n_train))}
    )
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:,.0f}" for t in ticks], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("real training slices N (log scale)")
    ax.set_ylabel("test AUC (mean, 95% CI over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def ratio_sweep_plot(summary: Sequence[Mapping[str, Any]] | pd.DataFrame, path: Path) -> Path | None:
    """Paired AUC difference vs ``real`` (mean and 95 % CI over seeds) against the synthetic ratio (log
    x), one panel per real fraction, one line per arm with a ratio (``real+`` included, dashed), and
    a zero line. None when fewer than two distinct ratios have a difference: nothing to sweep."""
    rows = [
        r
        for r in _rows(summary)
        if _finite(r.get("ratio")) is not None
        and float(r["ratio"]) > 0
        and _finite(r.get("auc_diff_vs_real")) is not None
    ]
    if len({float(r["ratio"]) for r in rows}) < 2:
        return None
    fractions = sorted({float(r["fraction"]) for r in rows})
    arms = list(dict.fromkeys(str(r["arm"]) for r in rows))
    synth = [a for a in arms if a != "real+"]
    colors = {a: f"C{i % 10}" for i, a in enumerate(synth)} | {"real+": "black"}
    n_real = {
        float(r["fraction"]): float(r["n_real"])
        for r in _rows(summary)
        if r.get("arm") == "real" and _finite(r.get("n_real")) is not None
    }
    plt = _pyplot()
    nf = len(fractions)
    fig, axes = plt.subplots(1, nf, figsize=(min(4.2 * nf, 14), 3.4), sharey=True, squeeze=False)
    ratios = sorted({float(r["ratio"]) for r in rows})
    for ax, f in zip(axes[0], fractions, strict=True):
        ax.axhline(0.0, color="0.4", lw=0.9)
        for k, arm in enumerate(arms):
            g = sorted(
                (float(r["ratio"]), float(r["auc_diff_vs_real"]), _pair(r.get("auc_diff_ci")))
                for r in rows
                if r["arm"] == arm and math.isclose(float(r["fraction"]), f)
            )
            if not g:
                continue
            x = np.array([p[0] for p in g]) * (
                1.0 + 0.025 * (k - (len(arms) - 1) / 2)
            )  # dodge overlapping bars
            y = np.array([p[1] for p in g])
            lo = np.array([p[1] - p[2][0] if p[2] else 0.0 for p in g])
            hi = np.array([p[2][1] - p[1] if p[2] else 0.0 for p in g])
            ax.errorbar(
                x,
                y,
                yerr=[lo, hi],
                marker="o",
                ms=4,
                capsize=3,
                color=colors[arm],
                ls="--" if arm == "real+" else "-",
                label=arm,
            )
        ax.set_xscale("log")
        ax.set_xticks(ratios)
        ax.set_xticklabels([f"{r:g}" for r in ratios], fontsize=7)
        ax.minorticks_off()
        n = n_real.get(f)
        ax.set_title(f"real fraction {f:g}" + (f" (N = {n:,.0f})" if n is not None else ""), fontsize=9)
        ax.set_xlabel("synthetic ratio (log scale)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("AUC difference vs real-only\n(paired, mean and 95% CI)")
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    axes[0][-1].legend(handles, labels, fontsize=7, loc="best")
    return _save(fig, path)


def study_figures(study: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """Every figure of a study (``study.json``'s content) written into ``folder``: caption -> PNG.

    AUC against the synthetic ratio and (with several fractions) against the real fraction, the
    learning curve with each arm over it, and the paired ratio sweep; figures with nothing to
    draw are left out. ``medgan run`` and ``medgan study`` both use it.
    """
    figures: dict[str, Path] = {}
    summ = pd.DataFrame([r for r in study["summary"] if r.get("auc") is not None])
    for x, name in (("ratio", "auc_vs_ratio.png"), ("fraction", "auc_vs_fraction.png")):
        if x == "fraction" and (summ.empty or summ["fraction"].nunique() < 2):
            continue
        p = auc_plot(summ, x, folder / name)
        if p is not None:
            what = "synthetic ratio" if x == "ratio" else "real-data fraction"
            figures[f"Test AUC against {what} (95% CI over seeds)"] = p
    p = learning_curve_plot(study, folder / "learning_curve.png")
    if p is not None:
        figures[
            "Test AUC against the number of real training slices (log scale), mean and 95% band over seeds; "
            "each synthetic arm at ratio 1 (else its ratio closest to 1, chosen before seeing results); "
            "dashed: the real-only learning curve (isotonic fit of the real and real+ classifiers)"
        ] = p
    p = ratio_sweep_plot(study["summary"], folder / "ratio_sweep.png")
    if p is not None:
        figures[
            "Paired test-AUC difference vs real-only (mean and 95% CI over seeds) against the synthetic ratio, "
            "per real fraction; real+ adds as many extra real slices instead"
        ] = p
    return figures
