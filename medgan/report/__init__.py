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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for c, name in enumerate(classes):
        for kind, imgs, labs in ((kinds[0], real, real_labels), (kinds[1], syn, syn_labels)):
            sel = imgs[labs == c][:k]
            rows.append((f"{name}\n{kind}", sel))
    fig, axes = plt.subplots(len(rows), k, figsize=(k * 1.1, len(rows) * 1.2), squeeze=False)
    for r, (title, sel) in enumerate(rows):
        for j in range(k):
            ax = axes[r][j]
            ax.axis("off")
            if j < len(sel):
                img = sel[j]
                ax.imshow(
                    img[0] if img.shape[0] == 1 else np.moveaxis((img + 1) / 2, 0, -1),
                    cmap="gray",
                    vmin=-1,
                    vmax=1,
                )
            if j == 0:
                ax.set_title(title, fontsize=7, loc="left")
    return _savefig(fig, path)


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
            return f"[{v[0]:.3f}, {v[1]:.3f}]"
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
    """The data section: format, slice count and shape, split and label counts."""
    return [
        "## Data",
        "",
        f"{d['format']}: {d['n_slices']} slices of shape {tuple(d['shape'])}; splits {d['per_split']}; labels {d['per_label']}.",
        "",
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


def _study_section(st: dict[str, Any]) -> list[str]:
    """The study section: its table, then which arms helped, hurt or beat classical augmentation."""
    summary = st["summary"]
    md = [
        "## Does synthetic data help the classifier?",
        "",
        f"Test set: {st['n_test']} real slices (the same for every arm); train {st['n_train']}, val {st['n_val']}. "
        f"Seeds: {st['study']['seeds']}. AUC is the mean over seeds with its 95% CI; the difference is paired "
        "with the real-only arm on the same seed "
        "(and, for synthetic arms, with the classical-augmentation arm when it runs).",
        "",
        _table(
            summary,
            [
                "arm",
                "ratio",
                "fraction",
                "auc",
                "auc_ci",
                "acc",
                "sensitivity",
                "specificity",
                "auc_diff_vs_real",
                "auc_diff_ci",
                "verdict",
            ]
            + (
                ["auc_diff_vs_classical", "auc_diff_vs_classical_ci", "verdict_vs_classical"]
                if any("auc_diff_vs_classical" in r for r in summary)
                else []
            ),
        ),
        "",
    ]
    md += _study_findings(summary)
    md.append("")
    return md


def _study_findings(summary: list[dict[str, Any]]) -> list[str]:
    """Plain sentences on the study's verdicts: the arms that helped, hurt, beat classical, were skipped."""
    md: list[str] = []
    verdicts = [r for r in summary if r.get("verdict")]
    helped = [r for r in verdicts if r["verdict"] == "helped"]
    hurt = [r for r in verdicts if r["verdict"] == "hurt"]

    def where(r: dict[str, Any]) -> str:
        ratio = "" if r.get("ratio") is None else f"ratio {r['ratio']:g}, "
        return f"{r['arm']} ({ratio}real fraction {r['fraction']:g})"

    if helped:
        md.append(
            "Augmentation helped (the 95% CI of the paired AUC difference lies above 0) for: "
            + ", ".join(where(r) for r in helped)
            + "."
        )
    if hurt:
        md.append("It hurt (CI below 0) for: " + ", ".join(where(r) for r in hurt) + ".")
    for word, verdict in (("better", "better than classical"), ("worse", "worse than classical")):
        arms = [r for r in summary if r.get("verdict_vs_classical") == verdict]
        if arms:
            md.append(
                f"Synthetic slices did {word} than classical augmentation alone (paired CI "
                f"{'above' if word == 'better' else 'below'} 0) for: "
                + ", ".join(where(r) for r in arms)
                + "."
            )
    if not helped:
        md.append("**No arm improved test AUC over real-only data with confidence on this dataset.**")
    skipped = [r for r in summary if r.get("seeds") == 0]
    if skipped:
        md.append(
            "Skipped because their synthesizer failed the quality gates (study.skip_failing_synthesizers): "
            + ", ".join(where(r) for r in skipped)
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
    (metrics.json dict), ``translations`` (direction -> a translation's metrics.json), ``study``
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
    """One Markdown line outside tables and code as HTML: figure (embedded), caption, heading, paragraph.

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
    if line.startswith("## "):
        return f"<h2>{html.escape(line[3:])}</h2>"
    if line.startswith("# "):
        return f"<h1>{html.escape(line[2:])}</h1>"
    if line.strip():
        t = html.escape(line)
        t = t.replace("**", "<b>", 1).replace("**", "</b>", 1) if t.count("**") >= 2 else t
        return f"<p>{t}</p>"
    return None


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
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
                in_table = True
            else:
                out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        block = _block_html(line, run_dir)
        if block is not None:
            out.append(block)
    if in_table:
        out.append("</table>")
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}"
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
