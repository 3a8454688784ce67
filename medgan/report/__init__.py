"""Run reports: ``report.md`` and a self-contained ``report.html`` (figures embedded as PNG data URIs)."""

from __future__ import annotations

import base64
import html
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan import __version__
from medgan.io.atomic import atomic_path, atomic_write_text
from medgan.metrics.gates import gates_verdict


def _versions() -> dict[str, str]:
    import monai
    import torch

    return {
        "medgan": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def _software_section(run_dir: Path) -> list[str]:
    """Versions, and (from the run folder's provenance.json) the command, code revision and device."""
    versions = _versions()
    md = ["## Software", "", _table([versions], list(versions)), ""]
    prov_path = run_dir / "provenance.json"
    if prov_path.is_file():
        try:
            prov = json.loads(prov_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return md
        git = prov.get("git") or {}
        rev = git.get("revision")
        rev_text = (
            "not a git checkout"
            if not rev
            else f"`{rev[:12]}`" + (" (uncommitted changes)" if git.get("dirty") else "")
        )
        dev = prov.get("device") or {}
        md += [
            f"Command: `{' '.join(prov.get('command') or [])}`; code revision: {rev_text}; "
            f"device: {dev.get('device') or 'unknown'}"
            " (run folder: provenance.json).",
            "",
        ]
    return md


def _savefig(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _slice_grid(rows: list[tuple[str, np.ndarray, np.ndarray | None]], k: int, path: Path) -> Path:
    """One row of up to ``k`` slices per (title, images, masks or None); a mask's contour is drawn over its slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), k, figsize=(k * 1.1, len(rows) * 1.2), squeeze=False)
    for r, (title, sel, masks) in enumerate(rows):
        for j in range(k):
            ax = axes[r][j]
            if j > 0 and j >= len(sel):
                ax.axis("off")
                continue
            ax.set_xticks([])  # not axis("off"): the first column keeps its y-label, the row's name
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(sel):
                img = sel[j]
                ax.imshow(
                    img[0] if img.shape[0] == 1 else np.moveaxis((img + 1) / 2, 0, -1),
                    cmap="gray",
                    vmin=-1,
                    vmax=1,
                )
                if masks is not None and masks[j].any():
                    ax.contour(masks[j][0] > 0, levels=[0.5], colors="#ff3b30", linewidths=0.8)
            if j == 0:  # the row's label left of its first image, never over the grid
                ax.set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center", labelpad=6)
    return _savefig(fig, path)


def real_vs_synthetic_figure(
    real: np.ndarray,
    real_labels: np.ndarray,
    syn: np.ndarray,
    syn_labels: np.ndarray,
    classes: list[str],
    path: Path,
    k: int = 8,
    kinds: tuple[str, str] = ("real", "synthetic"),
) -> Path:
    """Per class: a row of real slices above a row of synthetic ones (``kinds`` names the two rows)."""
    rows: list[Any] = []
    for c, name in enumerate(classes):
        for kind, imgs, labs in ((kinds[0], real, real_labels), (kinds[1], syn, syn_labels)):
            rows.append((f"{name}\n{kind}", imgs[labs == c][:k], None))
    return _slice_grid(rows, k, path)


def pairs_figure(
    real: tuple[np.ndarray, np.ndarray, np.ndarray],
    syn: tuple[np.ndarray, np.ndarray, np.ndarray],
    classes: list[str],
    path: Path,
    k: int = 8,
) -> Path:
    """Per class: real slices above synthetic ones, each with its lesion mask's contour drawn over it.

    ``real`` and ``syn`` are (images (N, C, H, W) in [-1, 1], masks (N, 1, H, W), labels (N,)).
    """
    rows: list[Any] = []
    for c, name in enumerate(classes):
        for kind, (x, m, y) in (("real", real), ("synthetic", syn)):
            sel = np.flatnonzero(np.asarray(y) == c)[:k]
            rows.append((f"{name}\n{kind}", x[sel], m[sel]))
    return _slice_grid(rows, k, path)


def _pair_scores_section(p: dict[str, Any]) -> list[str]:
    """Mask fidelity and segmentation CAS, each beside its real reference and target."""
    f = p["mask_fidelity"]
    rows = [
        {
            "score": "mask fidelity (real-trained segmenter on synthetic images)",
            "Dice": _num(f["synthetic"]["dice"]),
            "HD95 px": _num(f["synthetic"]["hd95"], 2),
            "reference (real test Dice)": _num(f["real_test_dice"]),
            "ratio": _num(f["ratio"], 2),
            "target": f"x{f['target']}",
            "met": "yes" if f["met"] else "no",
        }
    ]
    c = p.get("seg_cas")
    if c is not None:
        rows.append(
            {
                "score": f"segmentation CAS (segmenter trained on {c['n_train']} synthetic pairs only)",
                "Dice": _num(c["test"]["dice"]),
                "HD95 px": _num(c["test"]["hd95"], 2),
                "reference (real test Dice)": _num(c["real_only_test_dice"]),
                "ratio": _num(c["ratio"], 2),
                "target": f"x{c['target']}",
                "met": "yes" if c["met"] else "no",
            }
        )
    cols = ["score", "Dice", "HD95 px", "reference (real test Dice)", "ratio", "target", "met"]
    return [
        "## Image + mask pairs",
        "",
        "Dice of the lesion over images that hold one (MONAI UNet, DiceCELoss; weights chosen on the real validation pairs).",
        "",
        _table(rows, cols),
        "",
    ]


def _seg_study_section(st: dict[str, Any]) -> list[str]:
    """The segmentation study: per arm, ratio and fraction the test Dice, and each paired difference."""
    rows = []
    for r in st["summary"]:
        for ref in ("real", "classical"):
            c = r.get(f"vs_{ref}")
            if c is None and not (ref == "real" and r["arm"] == "real"):
                continue
            rows.append(
                {
                    "arm": r["arm"] + (f" x{r['ratio']:g}" if r["ratio"] is not None else ""),
                    "fraction": f"{r['fraction']:g}",
                    "real / synthetic pairs": f"{r['n_real']} / {r['n_synthetic']}",
                    "test Dice": _num(r["dice"]),
                    "HD95 px": _num(r["hd95"], 2),
                    "vs": ref if c is not None else "",
                    "difference [CI]": ""
                    if c is None
                    else f"{_num(c['mean'])} [{_num(c['ci'][0])}, {_num(c['ci'][1])}]",
                    "Holm p": "" if c is None else _num(c.get("p_holm")),
                    "verdict (Holm)": "" if c is None else c.get("verdict_holm", c["verdict"]),
                }
            )
            if c is None:
                break
    cols = [
        "arm",
        "fraction",
        "real / synthetic pairs",
        "test Dice",
        "HD95 px",
        "vs",
        "difference [CI]",
        "Holm p",
        "verdict (Holm)",
    ]
    d = st["design"]
    seeds = f"{d['seeds']} repeats per fraction"
    if isinstance(d["seeds"], dict):  # a number per fraction (JSON keys are strings)
        seeds = "repeats: " + ", ".join(f"{n} at fraction {float(f):g}" for f, n in d["seeds"].items())
    return [
        "## Segmentation study",
        "",
        f"MONAI UNet on the real test pairs ({st['n_test']} slices, {st['n_test_lesion']} with a lesion; Dice of the lesion"
        f" over those), {seeds}; differences are paired per repeat (same subset, segmenter seed"
        f" and synthetic pairs), {int(d['level'] * 100)} % t-intervals over repeats, Holm over every comparison.",
        "",
        _table(rows, cols),
        "",
    ]


def auc_plot(summary: pd.DataFrame, x: str, path: Path) -> Path | None:
    """Test AUC (mean and 95 % CI over seeds) against ``x`` (``ratio`` or ``fraction``), one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if summary.empty or x not in summary:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, (arm, g) in enumerate(summary.groupby("arm", sort=False)):
        color = f"C{i % 10}"  # one colour per arm, bands included, so every arm is told apart
        g = g.dropna(subset=[x]) if x == "ratio" and g[x].notna().any() else g
        if x == "ratio" and g[x].isna().all():
            lo, hi = (np.asarray(v, dtype=float) for v in zip(*g["auc_ci"], strict=True))
            if np.isfinite(lo).any() and np.isfinite(hi).any():  # one seed: no interval to shade
                ax.axhspan(float(np.nanmean(lo)), float(np.nanmean(hi)), color=color, alpha=0.12)
            ax.axhline(
                float(g["auc"].mean()), color=color, lw=1.2, ls="--", label=f"{arm} (no ratio; band = CI)"
            )
            continue
        g = g.sort_values(x)
        lo = np.array([c[0] for c in g["auc_ci"]])
        hi = np.array([c[1] for c in g["auc_ci"]])
        ax.errorbar(
            g[x], g["auc"], yerr=[g["auc"] - lo, hi - g["auc"]], marker="o", capsize=3, color=color, label=arm
        )
    ax.set_xlabel("synthetic ratio" if x == "ratio" else "real-data fraction")
    ax.set_ylabel("test AUC (mean, 95% CI over seeds)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _savefig(fig, path)


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.3f}"
        if isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(t, float) for t in v):
            return "" if any(np.isnan(t) for t in v) else f"[{v[0]:.3f}, {v[1]:.3f}]"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _num(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _gates_section(gates: dict[str, dict[str, Any]], study: dict[str, Any] | None) -> list[str]:
    """The quality-gate section: a plain verdict per synthesizer, failures spelled out, then a table."""
    md = ["## Quality gates", ""]
    failed = [name for name, g in gates.items() if not g["passed"]]
    skip = bool(study and study.get("study", {}).get("skip_failing_synthesizers"))
    for name, g in gates.items():
        verdict = gates_verdict(name, g["results"])
        md.append(f"**FAILED: {verdict}**" if not g["passed"] else f"Passed: {verdict}")
        md += [f"- {r['sentence']}" for r in g["results"] if r["passed"] is False]
        md.append("")
    if failed and study is not None:
        md += [
            "Arms that use a failing synthesizer were skipped (study.skip_failing_synthesizers: true)."
            if skip
            else "The study still ran the arms that use a failing synthesizer "
            "(study.skip_failing_synthesizers: false): read their rows below knowing the samples failed the gates.",
            "",
        ]
    rows = [
        {
            "synthesizer": name,
            "gate": r["metric"],
            "value": r["value"],
            "threshold": r["threshold"],
            "result": "not measured" if r["passed"] is None else ("pass" if r["passed"] else "FAIL"),
        }
        for name, g in gates.items()
        for r in g["results"]
    ]
    md += [_table(rows, ["synthesizer", "gate", "value", "threshold", "result"]), ""]
    md += ["Thresholds come from the config's gates section; docs/metrics.md says what each gate means.", ""]
    return md


def _data_section(d: dict[str, Any]) -> list[str]:
    """The data section: format, slice count and shape, split and label counts, the data's warnings."""
    return [
        "## Data",
        "",
        f"{d['format']}: {d['n_slices']} slices of shape {tuple(d['shape'])}; splits {d['per_split']}; labels {d['per_label']}.",
        "",
        *[f"**Warning:** {w}\n" for w in d.get("warnings", [])],
    ]


def _metrics_section(m: dict[str, Any]) -> list[str]:
    """The synthetic-data quality section: metrics with their floors, per class, label agreement, CAS."""
    md = [
        "## Synthetic data quality",
        "",
        f"Features: {m['features']}. N real = {m['n_real']}, N synthetic = {m['n_synthetic']}.",
        "",
        _table(
            [
                {
                    "metric": "FID",
                    "value": m["fid"],
                    "95% CI": m["fid_ci"],
                    "real-real floor": m.get("floor_fid"),
                },
                {
                    "metric": "KID",
                    "value": m["kid_mean"],
                    "95% CI": m.get("kid_ci"),
                    "real-real floor": m.get("floor_kid_mean"),
                },
                {
                    "metric": "precision",
                    "value": m["precision"],
                    "real-real floor": m.get("floor_precision"),
                },
                {"metric": "recall", "value": m["recall"], "real-real floor": m.get("floor_recall")},
                {
                    "metric": "MS-SSIM within class (lower = more diverse)",
                    "value": m["ms_ssim"],
                    "real-real floor": m.get("ms_ssim_real"),
                },
                {
                    "metric": "density (about 1 when matched)",
                    "value": m.get("density"),
                    "real-real floor": m.get("floor_density"),
                },
                {
                    "metric": "coverage",
                    "value": m.get("coverage"),
                    "real-real floor": m.get("floor_coverage"),
                },
                {
                    "metric": "memorized (near-copies of training images beyond chance)",
                    "value": m.get("memorized_count"),
                    "real-real floor": _memorization_note(m.get("memorization")),
                },
            ],
            ["metric", "value", "95% CI", "real-real floor"],
        ),
        "",
        "The floor is the same metric between real training and real evaluation images at the synthetic set's N "
        "and class mix: real data cannot do better. See docs/metrics.md for how to read these numbers.",
        "",
    ]
    if m.get("per_class"):
        md += [
            "Per class (each against the real slices of that class, with its own floor):",
            "",
            _table(
                [{"class": name, **pc} for name, pc in m["per_class"].items()],
                [
                    "class",
                    "n_real",
                    "n_synthetic",
                    "fid",
                    "floor_fid",
                    "precision",
                    "floor_precision",
                    "recall",
                    "floor_recall",
                    "coverage",
                    "floor_coverage",
                ],
            ),
            "",
        ]
    if "label_agreement" in m:
        la, cas = m["label_agreement"], m["cas"]
        md += [
            f"Label agreement: a classifier trained on real slices gives {la['agreement']:.1%} of the synthetic "
            f"slices their intended class (its accuracy on real test slices: {la['real_test_acc']:.1%}).",
            "",
            f"CAS: the same classifier trained on {cas['n_synthetic']} synthetic slices only reaches test AUC "
            f"{_num(cas['auc'])} (trained on the real train split: {_num(cas.get('real_auc'))}; on "
            f"{cas.get('real_same_n')} real slices, the synthetic set's N: {_num(cas.get('real_same_n_auc'))}).",
            "",
        ]
    elif m.get("label_scores_skipped"):
        md += [f"Label agreement and CAS were not computed: {m['label_scores_skipped']}.", ""]
    return md


def _translations_section(t: dict[str, dict[str, Any]]) -> list[str]:
    """A CycleGAN run's translations of the test split: label preservation and scores per direction."""
    rows = []
    for direction, m in t.items():
        q = m.get("quality") or {}
        fid = q.get("fid")
        rows.append(
            {
                "direction": direction,
                "source -> target": f"{m['source_domain']} -> {m['target_domain']}",
                "translated": m["n_written"],
                "classified as target": f"{m['share_classified_as_target']:.2f}",
                "sources classified as target": f"{m['share_sources_classified_as_target']:.2f}",
                "FID (floor)": "n/a" if fid is None else f"{fid:.1f} ({_num(q.get('floor_fid'), 1)})",
                "precision": _num(q.get("precision")),
                "recall": _num(q.get("recall")),
                "coverage": _num(q.get("coverage")),
            }
        )
    return [
        "## Translations",
        "",
        "The test split's slices of each domain translated into the other. *Classified as target*: the "
        "share of translations that a classifier trained on the real train split (domain A vs B) "
        "assigns to the target domain, beside the same share for the untranslated sources; FID, "
        "precision, recall and coverage compare the translations with the real test slices of the "
        "target domain, the floor with real train slices of it (docs/metrics.md).",
        "",
        _table(rows, list(rows[0])) if rows else "No translations.",
        "",
    ]


#: The verdicts vs real-only data that come from a computed paired interval.
_COMPUTED = ("helped", "hurt", "no clear difference")
_COMPUTED_CLASSICAL = ("better than classical", "worse than classical", "no clear difference")


def _finite(v: Any) -> float | None:
    """``v`` as a finite float, else None (missing, None, NaN, strings, bools)."""
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        return None
    f = float(v)
    return f if np.isfinite(f) else None


def _pair(v: Any) -> tuple[float, float] | None:
    """A finite ``[lo, hi]`` pair, else None."""
    if isinstance(v, list | tuple) and len(v) == 2:
        lo, hi = _finite(v[0]), _finite(v[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def _p(v: Any) -> str:
    """A p-value for a table or sentence: 3 decimals, ``<0.001`` below that, empty when missing."""
    p = _finite(v)
    return "" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _count(v: Any) -> str:
    """A (mean) slice count with thousands separators, empty when missing."""
    n = _finite(v)
    return "" if n is None else f"{n:,.0f}"


def _where(r: dict[str, Any], holm_key: str | None = None) -> str:
    """``arm (ratio r, real fraction f)``, with the Holm-adjusted verdict inside when the row has one."""
    ratio = "" if r.get("ratio") is None else f"ratio {r['ratio']:g}, "
    holm = r.get(holm_key) if holm_key else None
    return f"{r['arm']} ({ratio}real fraction {r['fraction']:g}" + (f"; Holm: {holm}" if holm else "") + ")"


def _seeds_text(st: dict[str, Any]) -> str:
    """The seeds per fraction: study.json's top-level ``seeds`` (an int or fraction -> seeds), else the config's."""
    seeds = st.get("seeds")
    if seeds is None:
        seeds = (st.get("design") or {}).get("seeds")
    if seeds is None:
        seeds = (st.get("study") or {}).get("seeds")
    if isinstance(seeds, dict) and seeds:
        items = sorted(seeds.items(), key=lambda kv: _finite(_as_float(kv[0])) or 0.0)
        return ", ".join(f"{n} at real fraction {_as_float(f):g}" for f, n in items)
    return "unknown" if seeds is None else str(seeds)


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _design_lines(st: dict[str, Any]) -> list[str]:
    """study.json's ``design`` (synthesizer lengths, how subsets are drawn) and the learning curve, in sentences."""
    design = st.get("design") or {}
    out: list[str] = []
    n_real = design.get("n_real")
    if isinstance(n_real, dict) and n_real:
        at = sorted(n_real.items(), key=lambda kv: _as_float(kv[0]))
        out.append(
            "Real training slices per repeat: "
            + ", ".join(f"{_count(n)} at fraction {_as_float(f):g}" for f, n in at)
            + "."
        )
    ratios = design.get("ratios")
    if isinstance(ratios, dict) and len({str(v) for v in ratios.values()}) > 1:  # only when they differ
        at = sorted(ratios.items(), key=lambda kv: _as_float(kv[0]))
        out.append(
            "Synthetic ratios: "
            + "; ".join(f"{', '.join(f'{x:g}' for x in v)} at fraction {_as_float(f):g}" for f, v in at)
            + "."
        )
    steps = design.get("synthesizer_steps")
    if isinstance(steps, dict) and steps:
        parts = []
        for kind, v in steps.items():
            if isinstance(v, dict) and v:
                at = sorted(v.items(), key=lambda kv: _as_float(kv[0]))
                parts.append(
                    f"{kind} " + ", ".join(f"{_count(n)} at fraction {_as_float(f):g}" for f, n in at)
                )
            elif _finite(v) is not None:
                parts.append(f"{kind} {_count(v)}")
        scaling = design.get("step_scaling")
        how = {"sqrt": " (the full length x sqrt(fraction))", "none": " (the full length at every fraction)"}
        if parts:
            out.append("Synthesizer training steps: " + "; ".join(parts) + how.get(str(scaling), "") + ".")
    epochs = design.get("classifier_epoch_samples")
    if design.get("equal_steps") and isinstance(epochs, dict) and any(_finite(v) for v in epochs.values()):
        at = sorted(epochs.items(), key=lambda kv: _as_float(kv[0]))
        out.append(
            "Every classifier of a fraction takes the same optimizer steps (an epoch of "
            + ", ".join(f"{_count(n)} samples at fraction {_as_float(f):g}" for f, n in at if _finite(n))
            + ", the largest arm's training set), so an arm that adds slices does not also train longer."
        )
    elif design.get("equal_steps") is False:
        out.append(
            "Each classifier passes once over its own training set per epoch (study.equal_steps: false): "
            "an arm that adds slices also takes more optimizer steps, and its gain includes theirs."
        )
    note = design.get("subset_note")
    if isinstance(note, str) and note.strip():
        note = note.strip()
        out.append(note[0].upper() + note[1:] + ("" if note.endswith(".") else "."))
    fit = (st.get("learning_curve") or {}).get("fit") or {}
    ns, aucs = fit.get("n") or [], fit.get("auc") or []
    if ns and len(ns) == len(aucs):
        knots = list(zip(ns, aucs, strict=True))
        shown = knots if len(knots) <= 4 else [knots[0], knots[-1]]
        pts = (", " if len(shown) == len(knots) else " ... ").join(
            f"{_num(a)} at {_count(n)}" for n, a in shown
        )
        out.append(
            f"Real-only learning curve (isotonic fit over every classifier trained on real slices only, "
            f"{len(knots)} sizes): AUC {pts} real slices."
        )
    return out


def _one_class_lines(summary: list[dict[str, Any]]) -> list[str]:
    """A warning per real-only row whose classifier predicted one class on the whole test set in some seeds."""
    md = []
    others = []
    for r in summary:
        k = _finite(r.get("one_class_seeds"))
        if not k:
            continue
        text = f"{int(k)} of {r.get('seeds', '?')} seeds"
        if r.get("arm") == "real":
            md.append(
                f"**Warning: the real-only classifier predicted one class everywhere in {text} at fraction "
                f"{r['fraction']:g}**: the paired differences at that fraction compare with a classifier that did not learn."
            )
        else:
            others.append(f"{_where(r)}: {text}")
    if others:
        md.append("Classifiers that predicted one class on the whole test set: " + "; ".join(others) + ".")
    return md


def _shown(rows: list[dict[str, Any]], cols: list[str], optional: set[str]) -> list[str]:
    """``cols`` less the ``optional`` ones that no row holds a value for."""
    return [c for c in cols if c not in optional or any(r.get(c) not in (None, "") for r in rows)]


def _study_tables(summary: list[dict[str, Any]]) -> list[str]:
    """Three narrower tables instead of one wide one: scores; paired with real; paired with classical."""
    scores = []
    for r in summary:
        d = dict(r)
        for key in ("n_real", "n_added"):
            d[key] = _count(r.get(key))
        scores.append(d)
    score_cols = _shown(
        scores,
        ["arm", "ratio", "fraction", "auc", "auc_ci", "seeds", "n_real", "n_added", "balanced_acc", "balanced_acc_ci",
         "kappa", "kappa_ci", "acc", "sensitivity", "specificity", "one_class_seeds"],
        {"n_real", "n_added", "balanced_acc", "balanced_acc_ci", "kappa", "kappa_ci", "one_class_seeds"},
    )  # fmt: skip
    md = ["### Scores", "", _table(scores, score_cols), ""]
    vs_real = []
    for r in summary:
        if r.get("arm") == "real" or not any(
            k in r for k in ("verdict", "auc_diff_vs_real", "p_value", "worth_real", "real_plus_share")
        ):
            continue
        d = dict(r)
        d["p_value"], d["p_holm"] = _p(r.get("p_value")), _p(r.get("p_holm"))
        d["mde"] = "" if _finite(r.get("mde")) is None else f"{r['mde']:+.3f}"
        share = _finite(r.get("real_plus_share"))
        d["real_plus_share"] = "" if share is None else f"{share:.0%}"
        d["worth_real"], d["worth_real_ci"] = _worth_cells(r)
        vs_real.append(d)
    if vs_real:
        cols = _shown(
            vs_real,
            ["arm", "ratio", "fraction", "auc_diff_vs_real", "auc_diff_ci", "p_value", "p_holm", "verdict",
             "verdict_holm", "mde", "real_plus_share", "worth_real", "worth_real_ci", "balanced_acc_diff_vs_real",
             "balanced_acc_diff_vs_real_ci", "kappa_diff_vs_real", "kappa_diff_vs_real_ci"],
            {"p_value", "p_holm", "verdict_holm", "mde", "real_plus_share", "worth_real", "worth_real_ci",
             "balanced_acc_diff_vs_real", "balanced_acc_diff_vs_real_ci", "kappa_diff_vs_real",
             "kappa_diff_vs_real_ci"},
        )  # fmt: skip
        md += ["### Paired with real-only data (same seed: same real subset, same initialisation)", ""]
        md += [_table(vs_real, cols), ""]
    vs_cl = []
    for r in summary:
        if not any(k in r for k in ("auc_diff_vs_classical", "verdict_vs_classical", "p_value_vs_classical")):
            continue
        d = dict(r)
        d["p_value_vs_classical"] = _p(r.get("p_value_vs_classical"))
        d["p_holm_vs_classical"] = _p(r.get("p_holm_vs_classical"))
        mde = _finite(r.get("mde_vs_classical"))
        d["mde_vs_classical"] = "" if mde is None else f"{mde:+.3f}"
        vs_cl.append(d)
    if vs_cl:
        cols = _shown(
            vs_cl,
            ["arm", "ratio", "fraction", "auc_diff_vs_classical", "auc_diff_vs_classical_ci", "p_value_vs_classical",
             "p_holm_vs_classical", "verdict_vs_classical", "verdict_vs_classical_holm", "mde_vs_classical"],
            {"p_value_vs_classical", "p_holm_vs_classical", "verdict_vs_classical_holm", "mde_vs_classical"},
        )  # fmt: skip
        md += ["### Paired with classical augmentation (same seed)", "", _table(vs_cl, cols), ""]
    return md


def _worth_cells(r: dict[str, Any]) -> tuple[str, str]:
    """The worth-in-real-slices table cells: the estimate (``>=`` / ``<=`` when censored) and its CI."""
    w = _finite(r.get("worth_real"))
    if w is None:
        return "", ""
    sign = {"above": ">= ", "below": "<= "}.get(r.get("worth_censored") or "", "")
    ci = _pair(r.get("worth_real_ci"))
    return f"{sign}{w:+,.0f}", "" if ci is None else f"[{ci[0]:,.0f}, {ci[1]:,.0f}]"


def _study_section(st: dict[str, Any]) -> list[str]:
    """The study section: design, scores and paired comparisons, then which arms helped, hurt or beat classical."""
    summary = st["summary"]
    metric = next((r["metric"] for r in summary if r.get("metric")), None) or st.get("metric")
    md = [
        "## Does synthetic data help the classifier?",
        "",
        f"Test set: {st['n_test']} real slices (the same for every arm); train {st['n_train']}, val {st['n_val']}. "
        f"Seeds: {_seeds_text(st)}. AUC is the mean over seeds with its 95% CI; the difference is paired "
        "with the real-only arm on the same seed "
        "(and, for synthetic arms, with the classical-augmentation arm when it runs)."
        + (f" AUC here is the {metric}." if metric and metric != "AUC" else ""),
        "",
    ]
    design = _design_lines(st)
    if design:
        md += [" ".join(design), ""]
    warn = [f"**Warning (data):** {w}" for w in st.get("data_warnings", [])] + _one_class_lines(summary)
    for line in warn:
        md += [line, ""]
    md += _study_tables(summary)
    md += _study_findings(summary, st)
    md.append("")
    return md


def _not_computed_reason(summary: list[dict[str, Any]], st: dict[str, Any] | None) -> str | None:
    """Why no verdict vs real-only data was computed, when the summary (and study) tell."""
    ran = [r for r in summary if (r.get("seeds") or 0) > 0]
    if not any(r.get("arm") == "real" for r in ran):
        return "the real-only arm did not run, so no arm could be paired with it"
    others = [r for r in ran if r.get("arm") != "real"]
    if others and all(_finite(r.get("auc_diff_vs_real")) is None for r in others):
        classes = (st or {}).get("classes") or []
        if len(classes) > 2:
            return f"no paired AUC difference was recorded (this task has {len(classes)} classes)"
        if max(r.get("seeds") or 0 for r in others) < 2:
            return "an interval over seeds needs at least 2 seeds per arm"
        return "no paired AUC difference was recorded"
    if others and max(r.get("seeds") or 0 for r in others) < 2:
        return "an interval over seeds needs at least 2 seeds per arm"
    return None


def _worth_line(r: dict[str, Any]) -> str | None:
    """``cgan (ratio 1, fraction 0.1): +546 synthetic slices worth 120 real slices [40, 210]``, when estimated."""
    w = _finite(r.get("worth_real"))
    if w is None:
        return None
    added = _finite(r.get("n_added"))
    lead = f"+{added:,.0f} synthetic slices " if added else ""
    ci = _pair(r.get("worth_real_ci"))
    ci_text = "" if ci is None else f" [{ci[0]:,.0f}, {ci[1]:,.0f}]"
    cens = r.get("worth_censored")
    if cens == "above":
        text = f"worth at least {w:,.0f} real slices (beyond the largest N measured)"
    elif cens == "below" and w > 0:
        text = f"worth at most {w:,.0f} real slices (below the smallest N measured)"
    elif cens == "below":
        text = "worth fewer than 0 real slices (below the smallest N measured)"
    elif w < 0:
        text = f"worth fewer than 0 real slices ({w:+,.0f}{ci_text})"
    else:
        text = f"worth {w:,.0f} real slices{ci_text}"
    ratio = "" if r.get("ratio") is None else f"ratio {r['ratio']:g}, "
    share = _finite(r.get("real_plus_share"))
    tail = "" if share is None else f"; {share:.0%} of the gain of as many extra real slices (real+)"
    return f"- {r['arm']} ({ratio}fraction {r['fraction']:g}): {lead}{text}{tail}."


def _power_line(r: dict[str, Any], ref: str) -> str | None:
    """A no-clear-difference comparison with the smallest difference the study could have detected."""
    sfx = "" if ref == "real" else "_vs_classical"
    if r.get(f"verdict{sfx}") != "no clear difference" or f"mde{sfx}" not in r:
        return None
    from medgan.study.statistics import detectable_line  # lazy: the study package imports torch

    mean = _finite(r.get("auc_diff_vs_real" if ref == "real" else "auc_diff_vs_classical"))
    ci = _pair(r.get("auc_diff_ci" if ref == "real" else "auc_diff_vs_classical_ci"))
    stats_ = (
        [] if mean is None else [f"{mean:+.3f}" + ("" if ci is None else f" [{ci[0]:+.3f}, {ci[1]:+.3f}]")]
    )
    if _p(r.get(f"p_value{sfx}")):
        stats_.append(f"p = {_p(r.get(f'p_value{sfx}'))}")
    if _p(r.get(f"p_holm{sfx}")):
        stats_.append(f"Holm p = {_p(r.get(f'p_holm{sfx}'))}")
    what = "real-only data" if ref == "real" else "classical augmentation"
    return (
        f"- {_where(r)} vs {what}: no clear difference"
        + (f" ({', '.join(stats_)})" if stats_ else "")
        + f"; {detectable_line(r.get(f'mde{sfx}'))}."
    )


def _verdict_lines(summary: list[dict[str, Any]], computed: list[dict[str, Any]]) -> list[str]:
    """The arms that helped or hurt (vs real-only) and did better or worse than classical, Holm beside each."""
    md: list[str] = []
    helped = [r for r in computed if r["verdict"] == "helped"]
    hurt = [r for r in computed if r["verdict"] == "hurt"]
    if helped:
        md.append(
            "Augmentation helped (the 95% CI of the paired AUC difference lies above 0) for: "
            + ", ".join(_where(r, "verdict_holm") for r in helped)
            + "."
        )
    if hurt:
        md.append("It hurt (CI below 0) for: " + ", ".join(_where(r, "verdict_holm") for r in hurt) + ".")
    for word, verdict_ in (("better", "better than classical"), ("worse", "worse than classical")):
        arms = [r for r in summary if r.get("verdict_vs_classical") == verdict_]
        if arms:
            md.append(
                f"Synthetic slices did {word} than classical augmentation alone (paired CI "
                f"{'above' if word == 'better' else 'below'} 0) for: "
                + ", ".join(_where(r, "verdict_vs_classical_holm") for r in arms)
                + "."
            )
    holm_done = all(r.get("verdict_holm") for r in computed)
    if helped and holm_done and not any(r["verdict_holm"] == "helped" for r in computed):
        md.append(
            "After Holm's correction for the study's comparisons with real-only data, no improvement remains clear."
        )
    return md


def _control_lines(control: list[dict[str, Any]]) -> list[str]:
    """What the positive control (``real+``: as many extra real slices) shows: can this study see a gain at all?"""
    if not control:
        return []
    helped = [r for r in control if r["verdict"] == "helped"]
    if helped:
        return [
            "The positive control (real+: the same number of extra real slices instead of synthetic ones) "
            "helped for: " + ", ".join(_where(r, "verdict_holm") for r in helped) + "."
        ]
    return [
        "**The positive control did not help either** (real+: the same number of extra real slices): at "
        "this number of seeds the study could not see a gain even from more real data."
    ]


def _headline(
    summary: list[dict[str, Any]], computed: list[dict[str, Any]], st: dict[str, Any] | None
) -> list[str]:
    """The no-arm-improved sentence, only when verdicts vs real-only data were computed; else why there are none."""
    if computed:
        missing = [
            r for r in summary if r.get("arm") not in ("real", "real+") and r.get("verdict") == "not computed"
        ]
        md = [
            "The paired comparison with real-only data was not computed (fewer than 2 seeds with a paired "
            "difference) for: " + ", ".join(_where(r) for r in missing) + "."
        ] if missing else []  # fmt: skip
        if any(r["verdict"] == "helped" for r in computed):
            return md
        which = "No arm" if not missing else "No other arm"
        return [f"**{which} improved test AUC over real-only data with confidence on this dataset.**", *md]
    if any(r.get("arm") not in ("real", "real+") and (r.get("seeds") or 0) > 0 for r in summary):
        reason = _not_computed_reason(summary, st)
        return [
            "**The paired comparison with real-only data was not computed**"
            + (f" ({reason})" if reason else "")
            + ": this study does not say whether any arm improved test AUC."
        ]
    if summary and all(r.get("arm") == "real" for r in summary):
        return ["Only the real-only arm ran: there is no other arm to compare it with."]
    return []


def _study_findings(summary: list[dict[str, Any]], st: dict[str, Any] | None = None) -> list[str]:
    """Plain sentences on the study's verdicts: the arms that helped, hurt, beat classical, were skipped;
    the power of each no-clear-difference comparison and each arm's worth in real slices.

    A verdict is stated only where it was computed: with no verdict vs real-only data in the summary,
    it says the comparison was not computed (and why, when ``summary`` / ``st`` tell) instead.
    """
    computed = [r for r in summary if r.get("arm") not in ("real", "real+") and r.get("verdict") in _COMPUTED]
    control = [r for r in summary if r.get("arm") == "real+" and r.get("verdict") in _COMPUTED]
    md = _verdict_lines(summary, computed) + _headline(summary, computed, st) + _control_lines(control)
    power = [line for r in computed + control if (line := _power_line(r, "real"))]
    power += [
        line
        for r in summary
        if r.get("verdict_vs_classical") in _COMPUTED_CLASSICAL and (line := _power_line(r, "classical"))
    ]
    if power:
        md += ["", "Comparisons without a clear difference, and the smallest true difference (80% power) "
               "this number of seeds would have detected:", "", *power]  # fmt: skip
    worth = [line for r in summary if r.get("arm") not in ("real", "real+") and (line := _worth_line(r))]
    if worth:
        md += ["", "Each arm's paired AUC gain in real slices: how many extra real slices the real-only learning "
               "curve needs for the same AUC (95% bootstrap CI over seeds):", "", *worth]  # fmt: skip
    skipped = [r for r in summary if r.get("seeds") == 0]
    if skipped:
        if worth or power:
            md.append("")
        md.append(
            "Skipped because their synthesizer failed the quality gates (study.skip_failing_synthesizers): "
            + ", ".join(_where(r) for r in skipped)
            + "."
        )
    return md


def _figures_section(figures: dict[str, Any], run_dir: Path) -> list[str]:
    """The figures section: each figure (path relative to ``run_dir``) with its caption."""
    md = ["## Figures", ""]
    for caption, path in figures.items():
        md += [f"![{caption}]({Path(path).relative_to(run_dir).as_posix()})", "", f"*{caption}*", ""]
    return md


def build_report(run_dir: Path, title: str, sections: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.md`` (figures as files) and ``report.html`` (figures embedded) into ``run_dir``.

    ``sections`` may hold: ``data`` (inspect summary), ``gates`` (synthesizer name -> its gate
    report: ``passed``, ``results``; shown before any metric or accuracy row), ``metrics``
    (metrics.json dict), ``pair_scores`` (mask fidelity and segmentation CAS), ``translations`` (direction -> a translation's metrics.json), ``study``
    (study.json dict), ``figures`` (caption -> PNG path),
    ``config`` (YAML text).
    """
    md: list[str] = [f"# {title}", ""]
    if "data" in sections:
        md += _data_section(sections["data"])
    if sections.get("gates"):
        md += _gates_section(sections["gates"], sections.get("study"))
    if "metrics" in sections:
        md += _metrics_section(sections["metrics"])
    if "pair_scores" in sections:
        md += _pair_scores_section(sections["pair_scores"])
    if "seg_study" in sections:
        md += _seg_study_section(sections["seg_study"])
    if "translations" in sections:
        md += _translations_section(sections["translations"])
    if "study" in sections:
        md += _study_section(sections["study"])
    figures = sections.get("figures", {})
    if figures:
        md += _figures_section(figures, run_dir)
    md += _software_section(run_dir)
    if "config" in sections:
        md += ["## Config", "", "```yaml", sections["config"].rstrip(), "```", ""]
    text = "\n".join(md)
    md_path = run_dir / "report.md"
    atomic_write_text(md_path, text)
    html_path = run_dir / "report.html"
    atomic_write_text(html_path, _to_html(text, run_dir, title))
    return md_path, html_path


def _block_html(line: str, run_dir: Path) -> str | None:
    """One Markdown line outside tables and code as HTML: figure (embedded), caption, heading (1-3), paragraph.

    A figure's PNG is read from ``run_dir`` (an empty image when the file is missing); a blank
    line gives None; the first ``**...**`` pair of a paragraph becomes bold.
    """
    if line.startswith("!["):
        caption, _, rest = line[2:].partition("](")
        path = run_dir / rest.rstrip(")")
        data = base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""
        return f'<figure><img class="fig" alt="{html.escape(caption)}" src="data:image/png;base64,{data}"></figure>'
    if line.startswith("*") and line.endswith("*") and not line.startswith("**"):
        return f"<p><em>{html.escape(line.strip('*'))}</em></p>"
    if line.startswith("### "):
        return f"<h3>{html.escape(line[4:])}</h3>"
    if line.startswith("## "):
        return f"<h2>{html.escape(line[3:])}</h2>"
    if line.startswith("# "):
        return f"<h1>{html.escape(line[2:])}</h1>"
    if line.strip():
        t = html.escape(line)
        t = t.replace("**", "<b>", 1).replace("**", "</b>", 1) if t.count("**") >= 2 else t
        return f"<p>{t}</p>"
    return None


def _cell_html(cell: str) -> str:
    """A table cell as HTML; an interval ``[lo, hi]`` does not break across lines."""
    c = html.escape(cell.strip())
    return c.replace(", ", ",&nbsp;") if c.startswith("[") and c.endswith("]") else c


def _to_html(md: str, run_dir: Path, title: str) -> str:
    """A small, dependency-free Markdown-to-HTML conversion for the report's own constructs."""
    out: list[str] = []
    in_table = in_code = False
    for line in md.splitlines():
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [_cell_html(c) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:  # its own scrolling box: a wide table never widens the page
                out.append(
                    '<div class="table-wrap"><table><tr>' + "".join(f"<th>{c}</th>" for c in cells) + "</tr>"
                )
                in_table = True
            else:
                out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table></div>")
            in_table = False
        block = _block_html(line, run_dir)
        if block is not None:
            out.append(block)
    if in_table:
        out.append("</table></div>")
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}"
        ".table-wrap{overflow-x:auto;max-width:100%;margin:0.5em 0}"
        "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img.fig{max-width:100%;min-width:50%;image-rendering:pixelated}pre{background:#f5f5f5;padding:1em;overflow:auto}"
    )
    script = (
        "<script>window.addEventListener('load',()=>{const ok=[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;"
        "document.body.dataset.figures=ok+'/'+document.images.length;});</script>"
    )
    body = "\n".join(out)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>{script}</head><body>{body}</body></html>"


def load_json(path: Path) -> dict[str, Any]:
    """A JSON file's content."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _memorization_note(mem: dict[str, Any] | None) -> str | None:
    """What the memorization count was measured against, for the quality table."""
    if not mem or mem.get("allowed") is None:
        return None
    dup = mem.get("reference_duplicates") or 0
    return (
        f"{mem['count']} flagged, {mem['allowed']} allowed by chance ({mem.get('reference', 'reference')}"
        + (f"; {dup} of them exact copies of training slices" if dup else "")
        + ")"
    )
