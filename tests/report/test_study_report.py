"""The study section of the report: only computed verdicts are stated, the new summary fields are
rendered (and may be missing), tables scroll in their own box, and the study figures are drawn."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medgan.report import build_report, real_vs_synthetic_figure
from medgan.report.study_figures import learning_curve_plot, ratio_sweep_plot, shown_ratio


def _study(summary: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"n_test": 8, "n_train": 100, "n_val": 8, "study": {"seeds": 2}, "summary": summary, **extra}


def _row(arm: str, ratio: float | None, f: float, auc: float, **kw: Any) -> dict[str, Any]:
    return {
        "arm": arm,
        "ratio": ratio,
        "fraction": f,
        "seeds": 5,
        "auc": auc,
        "auc_ci": [auc - 0.02, auc + 0.02],
        **kw,
    }


def _full_summary() -> list[dict[str, Any]]:
    """Two fractions, ratios 0.5 / 1 / 2 for cgan and real+, every new field filled in."""
    out = []
    for f, n in ((0.1, 10.0), (1.0, 100.0)):
        out.append(_row("real", None, f, 0.70 + f / 10, n_real=n, one_class_seeds=2 if f == 0.1 else 0))
        for arm in ("cgan", "real+"):
            for r in (0.5, 1.0, 2.0):
                d = 0.004 * r if arm == "cgan" else 0.02 * r
                out.append(
                    _row(
                        arm,
                        r,
                        f,
                        0.70 + f / 10 + d,
                        n_real=n * (1 + r) if arm == "real+" else n,  # real+ counts its extra real slices
                        n_added=n * r,
                        auc_diff_vs_real=d,
                        auc_diff_ci=[d - 0.01, d + 0.01],
                        p_value=0.2,
                        p_holm=0.8,
                        verdict="no clear difference",
                        verdict_holm="no clear difference",
                        mde=0.031,
                        metric="AUC",
                        balanced_acc=0.7,
                        balanced_acc_ci=[0.6, 0.8],
                    )
                )
    out[1].update(worth_real=120.0, worth_real_ci=[40.0, 210.0], worth_censored=None, real_plus_share=0.4)
    out[2].update(worth_real=480.0, worth_real_ci=[300.0, 480.0], worth_censored="above")
    out[3].update(worth_real=-30.0, worth_real_ci=[-60.0, 5.0], worth_censored=None)
    return out


def test_no_verdict_fields_never_claim_no_arm_improved(tmp_path: Path) -> None:
    # an old / multi-class study.json: arms ran, but no paired verdict was computed
    summary = [_row("real", None, 1.0, 0.8), _row("classical", None, 1.0, 0.82), _row("cgan", 1.0, 1.0, 0.79)]
    md = build_report(tmp_path, "t", {"study": _study(summary, classes=["a", "b", "c"])})[0].read_text()
    assert "No arm improved" not in md
    assert (
        "**The paired comparison with real-only data was not computed** (no paired AUC difference was " in md
    )
    assert "(this task has 3 classes)" in md
    one_seed = [{**r, "seeds": 1} for r in summary]
    md = build_report(tmp_path, "t", {"study": _study(one_seed)})[0].read_text()
    assert "No arm improved" not in md and "needs at least 2 seeds per arm" in md
    # a computed verdict that is not "helped": now the sentence holds
    summary[2].update(verdict="no clear difference", auc_diff_vs_real=0.0, auc_diff_ci=[-0.01, 0.01])
    md = build_report(tmp_path, "t", {"study": _study(summary)})[0].read_text()
    assert "**No arm improved test AUC over real-only data with confidence on this dataset.**" in md
    assert "this study could detect" not in md  # an old summary: no MDE, no power line
    # some comparisons computed, one not (a single seed with a paired difference): both said
    summary.append(
        {**summary[2], "ratio": 2.0, "seeds": 1, "verdict": "not computed", "auc_diff_ci": [math.nan] * 2}
    )
    md = build_report(tmp_path, "t", {"study": _study(summary)})[0].read_text()
    assert "**No other arm improved test AUC over real-only data with confidence on this dataset.**" in md
    assert (
        "was not computed (fewer than 2 seeds with a paired difference) for: cgan (ratio 2, real fraction 1)."
        in md
    )


def test_new_fields_rendered(tmp_path: Path) -> None:
    design = {
        "seeds": {"0.1": 10, "1.0": 5},
        "n_real": {"0.1": 10.0, "1": 100.0},
        "step_scaling": "sqrt",
        "synthesizer_steps": {"cgan": {"0.1": 474, "1.0": 1500}},
        "subset_note": "each repeat draws its own stratified subset",
    }
    study = _study(
        _full_summary(),
        seeds={"0.1": 10, "1.0": 5},
        design=design,
        learning_curve={"fit": {"n": [10.0, 100.0], "auc": [0.71, 0.8]}},
    )
    md = build_report(tmp_path, "t", {"study": study})[0].read_text()
    assert "Seeds: 10 at real fraction 0.1, 5 at real fraction 1." in md
    assert "Real training slices per repeat: 10 at fraction 0.1, 100 at fraction 1." in md
    assert (
        "Synthesizer training steps: cgan 474 at fraction 0.1, 1,500 at fraction 1 (the full length x sqrt"
        in md
    )
    assert "Each repeat draws its own stratified subset." in md
    assert "AUC 0.710 at 10, 0.800 at 100 real slices" in md
    assert (
        "**Warning: the real-only classifier predicted one class everywhere in 2 of 5 seeds at fraction 0.1**"
        in md
    )
    assert "### Scores" in md and "### Paired with real-only data" in md
    assert "| verdict_holm |" in md and "| p_holm |" in md and "| mde |" in md and "| balanced_acc_ci |" in md
    assert (
        "- cgan (ratio 0.5, fraction 0.1): +5 synthetic slices worth 120 real slices [40, 210]; 40% of the gain"
        in md
    )
    assert (
        "- cgan (ratio 1, fraction 0.1): +10 synthetic slices worth at least 480 real slices (beyond the largest"
        in md
    )
    assert (
        "- cgan (ratio 2, fraction 0.1): +20 synthetic slices worth fewer than 0 real slices (-30 [-60, 5])."
        in md
    )
    assert (
        "- cgan (ratio 0.5, real fraction 0.1) vs real-only data: no clear difference "
        "(+0.002 [-0.008, +0.012], p = 0.200, Holm p = 0.800); this study could detect >= +0.031." in md
    )
    assert "**No arm improved" in md and "**The positive control did not help either**" in md
    assert "| >= +480 | [300, 480] |" in md  # censored worth in the table


def test_helped_with_holm_beside(tmp_path: Path) -> None:
    summary = _full_summary()
    summary[1].update(verdict="helped", verdict_holm="no clear difference")
    summary[5].update(verdict="helped", verdict_holm="helped")  # real+: the positive control
    md = build_report(tmp_path, "t", {"study": _study(summary)})[0].read_text()
    assert "lies above 0) for: cgan (ratio 0.5, real fraction 0.1; Holm: no clear difference)." in md
    assert (
        "After Holm's correction for the study's comparisons with real-only data, no improvement remains"
        in md
    )
    assert (
        "The positive control (real+: the same number of extra real slices instead of synthetic ones) helped"
        in md
    )
    assert "No arm improved" not in md


def test_html_wraps_every_table(tmp_path: Path) -> None:
    html = build_report(tmp_path, "t", {"study": _study(_full_summary())})[1].read_text()
    assert html.count("<table>") == html.count('<div class="table-wrap"><table>') >= 2
    assert html.count("</table></div>") == html.count("<table>")
    assert ".table-wrap{overflow-x:auto" in html and "<h3>Scores</h3>" in html
    assert "[0.690,&nbsp;0.730]" in html  # an interval does not break across lines


def test_study_figures_written(tmp_path: Path) -> None:
    summary = _full_summary()
    p = ratio_sweep_plot(summary, tmp_path / "sweep.png")
    assert p is not None and p.read_bytes()[:4] == b"\x89PNG"
    q = learning_curve_plot(_study(summary), tmp_path / "lc.png")  # no learning_curve: fitted from the rows
    assert q is not None and q.read_bytes()[:4] == b"\x89PNG"
    points = [{"n": n, "auc": 0.7 + 0.01 * math.log(n), "arm": "real"} for n in (10, 10, 20, 100)]
    q = learning_curve_plot(_study(summary, learning_curve={"points": points}), tmp_path / "lc2.png")
    assert q is not None and q.is_file()
    # nothing to draw: one ratio, or one fraction without real+
    one_ratio = [r for r in summary if r["ratio"] in (None, 1.0)]
    assert ratio_sweep_plot(one_ratio, tmp_path / "none.png") is None
    one_fraction = [r for r in summary if r["fraction"] == 1.0 and r["arm"] != "real+"]
    assert learning_curve_plot(_study(one_fraction), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    assert (
        shown_ratio([0.5, 2.0, 4.0]) == 0.5
        and shown_ratio([0.5, 1.0, 2.0]) == 1.0
        and shown_ratio([]) is None
    )


@pytest.mark.parametrize("kinds", [("real", "synthetic")])
def test_real_vs_synthetic_row_labels_beside_the_grid(tmp_path: Path, kinds: tuple[str, str]) -> None:
    """The row labels sit left of the first image (a y-label), not over the images above them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.zeros((4, 1, 8, 8), dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    captured: list[Any] = []
    real_close = plt.close
    plt.close = lambda fig=None: captured.append(fig)  # keep the figure to inspect it
    try:
        real_vs_synthetic_figure(x, y, x, y, ["benign", "malignant"], tmp_path / "g.png", k=2, kinds=kinds)
    finally:
        plt.close = real_close
    fig = captured[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    for ax in axes[::2]:  # the first column
        label = ax.yaxis.label.get_window_extent(renderer)
        assert ax.get_ylabel() and label.x1 <= ax.get_window_extent(renderer).x0 + 1e-6
        assert not ax.get_title(loc="left")
    plt.close(fig)
