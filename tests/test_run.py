"""``medgan run`` end to end on tiny data: every stage, a readable report, resumable."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from medgan.cli import main
from medgan.training.checkpoint import resolve_checkpoint
from tests.conftest import require_tool, tiny_config


class _Pool(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


@pytest.fixture(scope="module")
def tiny_run(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    d = tmp_path_factory.mktemp("run")
    feats = d / "pool.pt"
    torch.jit.script(_Pool()).save(str(feats))
    cfg = tiny_config(steps=4)
    cfg["classifier"] = {"epochs": 2, "width": 4, "patience": 2, "batch_size": 16}
    cfg["study"] = {"arms": ["real", "classical", "cgan"], "ratios": [0.5, 1.0], "seeds": 2, "n_boot": 20}
    cfg["pipeline"] = {"features": str(feats)}  # the evaluation set: the test split's N and class mix
    (d / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    code = main(["run", str(d / "cfg.yaml"), "--out", str(d / "out"), "--data-dir", str(tiny_data_dir)])
    assert code == 0
    return d / "out"


def test_run_folder_has_every_stage(tiny_run: Path) -> None:
    for rel in (
        "config.resolved.yaml",
        "data_summary.json",
        "cgan/stats.jsonl",
        "samples/manifest.csv",
        "evaluation/metrics.json",
        "evaluation/closest_pairs.png",
        "study/summary.csv",
        "figures/real_vs_synthetic.png",
        "figures/auc_vs_ratio.png",
        "report.md",
        "report.html",
    ):
        assert (tiny_run / rel).is_file(), rel


def test_run_evaluates_in_test_proportions_with_label_scores_and_gates(tiny_run: Path) -> None:
    import json

    import pandas as pd

    m = json.loads((tiny_run / "evaluation" / "metrics.json").read_text())
    samples = pd.read_csv(tiny_run / "samples" / "manifest.csv")
    assert samples["label"].value_counts().to_dict() == {0: 4, 1: 4}  # the tiny test split: 4 + 4
    assert m["n_synthetic"] == m["n_real"] == 8 and m["class_counts"]["synthetic"] == {"0": 4, "1": 4}
    assert m["floor_class_counts"] == {"0": 4, "1": 4} and set(m["per_class"]) == {"0", "1"}
    assert 0.0 <= m["coverage"] <= 1.0 and m["density"] >= 0.0
    assert 0.0 <= m["label_agreement"]["agreement"] <= 1.0 and 0.0 <= m["cas"]["auc"] <= 1.0
    assert m["cas"]["n_synthetic"] == 48  # CAS trains on a train-sized set (samples-cas/)
    assert (tiny_run / "real_classifier" / "trained_on.json").is_file()
    assert len(m["gates"]["results"]) == 7
    study = json.loads((tiny_run / "study" / "study.json").read_text())
    # the study's full-data cGAN is the run's, but the study's gates decide which arms run, so they
    # are scored on the validation split (never on test, which the run's evaluation above used)
    gate = study["gates"]["cgan-f1"]
    assert gate["metrics_from"] == "the study's evaluation on the validation split"
    cached = json.loads((tiny_run / "study" / "gates" / "cgan-f1.json").read_text())
    assert cached["key"]["split"] == "val" and cached["metrics"]["real"].endswith(":val")
    assert cached["metrics"]["n_real"] == 8 and len(gate["results"]) == 7


def test_report_is_readable_and_self_contained(tiny_run: Path) -> None:
    md = (tiny_run / "report.md").read_text()
    assert md.index("## Quality gates") < md.index("## Synthetic data quality")
    assert md.index("## Quality gates") < md.index("## Does synthetic data help the classifier?")
    assert re.search(r"FAILED: cgan \(this run's conditional GAN\) fails|Passed: cgan \(this run's", md)
    for heading in (
        "## Data",
        "## Synthetic data quality",
        "## Does synthetic data help the classifier?",
        "## Software",
        "## Config",
    ):
        assert heading in md
    assert "real-real floor" in md and "FID" in md
    assert re.search(r"helped|hurt|No arm improved", md)
    html = (tiny_run / "report.html").read_text()
    # 4 figures: real vs synthetic, closest pairs, AUC vs ratio, the paired ratio sweep (2 ratios)
    assert html.count("data:image/png;base64,") == 4 and 'src="figures/' not in html


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: (SHA-256 of its bytes, mtime in ns), by relative path."""
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


#: What a rerun must reuse untouched (neither retrained nor rewritten): the cGAN's training run, the
#: real classifier, the generated sample shards and the study's finished cells.
REUSED = (
    "cgan/",
    "real_classifier/",
    "samples/shards/",
    "samples/generate.json",
    "samples-cas/shards/",
    "samples-cas/generate.json",
    "study/cells/",
    "study/results.csv",
)
#: What a rerun rebuilds from the reused stages (made stale before the rerun: it must be rewritten, identical).
REBUILT = (
    "report.md",
    "report.html",
    "figures/real_vs_synthetic.png",
    "figures/auc_vs_ratio.png",
    "figures/ratio_sweep.png",
)
OLD_NS = 1_000_000_000 * 10**9  # 2001-09-09: a rewrite during the rerun cannot keep this mtime


def test_rerun_resumes(tiny_run: Path, tiny_data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same ``medgan run`` again: it trains nothing, rewrites no finished stage (checkpoint,
    classifier, samples and study cells keep their bytes and mtimes) and regenerates the report."""
    reused = [
        p
        for p in tiny_run.rglob("*")
        if p.is_file() and p.relative_to(tiny_run).as_posix().startswith(REUSED)
    ]
    assert any(p.suffix == ".safetensors" for p in reused) and any("cells" in p.parts for p in reused)
    for p in reused:  # a fixed old mtime: any rewrite shows, however coarse the filesystem's clock
        os.utime(p, ns=(OLD_NS, OLD_NS))
    before = _snapshot(tiny_run)
    ckpt = resolve_checkpoint(tiny_run / "cgan")
    for rel in REBUILT:  # a stale report from an earlier run is replaced, not kept
        (tiny_run / rel).write_bytes(b"stale")
    capsys.readouterr()

    cfg = tiny_run.parent / "cfg.yaml"
    assert main(["run", str(cfg), "--out", str(tiny_run), "--data-dir", str(tiny_data_dir)]) == 0
    log = capsys.readouterr().err  # the stage lines and training progress
    after = _snapshot(tiny_run)

    # nothing retrained: no training progress, the same checkpoint, no new checkpoints, cells or files
    assert not re.search(r"^step \d+/\d+", log, re.M), log[-2000:]
    assert re.search(rf"^\[2/5\] .*: {re.escape(str(ckpt))}$", log, re.M), log  # the same checkpoint
    assert re.search(r"^\[5/5\] .*\b4 arm settings", log, re.M), log
    assert sorted(after) == sorted(before)
    # the reused stages are untouched: same bytes, same (old) mtimes
    rewritten = [
        rel for rel, (sha, ns) in before.items() if rel.startswith(REUSED) and after[rel] != (sha, ns)
    ]
    assert not rewritten, rewritten
    # everything else (evaluation, figures, report) is rebuilt from them, byte for byte the same;
    # the provenance of the run and of its study records this process beside the earlier one
    changed = [rel for rel in before if after[rel][0] != before[rel][0]]
    assert sorted(changed) == ["provenance.json", "study/provenance.json"], changed
    for rel in changed:
        prov = json.loads((tiny_run / rel).read_text())
        assert prov["command"] == [
            "medgan",
            "run",
            str(cfg),
            "--out",
            str(tiny_run),
            "--data-dir",
            str(tiny_data_dir),
        ]
        assert prov["earlier"][0]["command"] == prov["command"]
        assert len(prov["earlier"]) == 1 and prov["earlier"][0]["versions"] == prov["versions"]


def test_another_configs_run_folder_is_refused(
    tiny_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``medgan run --out`` on a finished run of another config (other data, other model) is refused
    with one line naming what differs, and leaves the folder as it was; a change to what only reads
    the synthesizer (study, pipeline) or a longer training (``train.steps``) passes the check."""
    import yaml

    from medgan.config import config_from_dict
    from medgan.run import check_same_run

    base = yaml.safe_load((tiny_run.parent / "cfg.yaml").read_text())
    before = _snapshot(tiny_run)
    for change, shown in (
        ({"data": {"source": {"kind": "medmnist", "name": "othermnist"}}}, "data.source.name"),
        ({"model": {**base["model"], "z_dim": 7}}, "model.z_dim"),
        ({"seed": 5}, "seed"),
    ):
        (tmp_path / "other.yaml").write_text(yaml.safe_dump({**base, **change}))
        args = ["run", str(tmp_path / "other.yaml"), "--out", str(tiny_run), "--data-dir", str(tiny_data_dir)]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds a run of another config" in err[0] and shown in err[0], err
    assert _snapshot(tiny_run) == before
    for ok in (
        {"study": {**base["study"], "seeds": 3}},
        {"pipeline": {"eval_per_class": 3}},
        {"train": {**base["train"], "steps": 8}},
        {"name": "renamed"},  # a second config with the same data, model and training reuses the model
    ):
        check_same_run(tiny_run, config_from_dict({**base, **ok}))
    # a run written before a key existed (here data.splits.allow_patient_overlap) reads it as its default
    saved = tiny_run / "config.resolved.yaml"
    text = saved.read_text()
    try:
        old = yaml.safe_load(text)
        old["data"]["splits"].pop("allow_patient_overlap")
        saved.write_text(yaml.safe_dump(old))
        check_same_run(tiny_run, config_from_dict(base))
    finally:
        saved.write_text(text)


def test_report_renders_in_headless_chromium(tiny_run: Path, tmp_path: Path) -> None:
    chromium = require_tool("chromium", "renders the HTML report")
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        (tiny_run / "report.html").as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'data-figures="(\d+)/(\d+)"', proc.stdout)
    assert m and m.group(1) == m.group(2) == "4", proc.stdout[:500]


def test_study_reuses_the_runs_cgan_at_full_fraction(tiny_run: Path) -> None:
    import json

    import pandas as pd

    ckpt = resolve_checkpoint(tiny_run / "cgan")
    study = json.loads((tiny_run / "study" / "study.json").read_text())
    # the 100 % fraction's cGAN is the run's own checkpoint: no second one trained in the study folder
    assert study["gates"]["cgan-f1"]["checkpoint"] == str(ckpt)
    assert not (tiny_run / "study" / "synthesizers" / "cgan-f1").exists()
    assert not list((tiny_run / "study").rglob("*.safetensors"))
    # and its samples were mixed in: each cgan row (arm, ratio, seed) added ratio x n_real synthetic slices
    res = pd.read_csv(tiny_run / "study" / "results.csv")
    got = sorted((r.arm, None if pd.isna(r.ratio) else r.ratio, r.seed) for r in res.itertuples())
    want = (
        [("cgan", r, s) for r in (0.5, 1.0) for s in (0, 1)]
        + [("classical", None, s) for s in (0, 1)]
        + [("real", None, s) for s in (0, 1)]
    )
    assert got == want
    for r in res.itertuples():
        assert r.n_real == 48 and r.n == 8  # the whole train split; the 8-slice test split
        assert r.n_synthetic == (int(r.ratio * 48) if r.arm == "cgan" else 0), r
        assert 0.0 <= r.auc <= 1.0, r


def test_report_holds_every_arm_and_metric(tiny_run: Path) -> None:
    """What a reader takes from report.md: the metrics of evaluation/metrics.json and one study row per arm
    setting with its AUC, CI and verdict (the numbers of study/study.json, as printed)."""
    import json

    md = (tiny_run / "report.md").read_text()
    m = json.loads((tiny_run / "evaluation" / "metrics.json").read_text())
    quality = md[md.index("## Synthetic data quality") : md.index("## Does synthetic data help")]
    for label, key in (
        ("FID", "fid"),
        ("KID", "kid_mean"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("coverage", "coverage"),
    ):
        assert isinstance(m[key], float), key
        assert re.search(rf"^\| {label} \| {m[key]:.3f} \|", quality, re.M), (label, m[key], quality)
    assert f"N real = {m['n_real']}, N synthetic = {m['n_synthetic']}" in quality
    assert (
        f"{m['label_agreement']['agreement']:.1%}" in quality and f"test AUC {m['cas']['auc']:.3f}" in quality
    )

    study = json.loads((tiny_run / "study" / "study.json").read_text())
    assert study["study"]["arms"] == ["real", "classical", "cgan"] and study["study"]["ratios"] == [0.5, 1.0]
    rows = study["summary"]
    assert [(r["arm"], r["ratio"]) for r in rows] == [
        ("real", None),
        ("classical", None),
        ("cgan", 0.5),
        ("cgan", 1.0),
    ]
    helps = md[md.index("## Does synthetic data help") : md.index("## Figures")]

    def table_lines(text: str) -> list[str]:
        return [
            ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith(("| arm", "|---"))
        ]

    table = table_lines(helps[helps.index("### Scores") : helps.index("### Paired with real-only")])
    paired = table_lines(
        helps[helps.index("### Paired with real-only") : helps.index("### Paired with classical")]
    )
    assert len(table) == len(rows) and len(paired) == len(rows) - 1, helps  # real is paired with nothing
    paired_by_arm = {tuple(c.strip() for c in ln.strip("|").split("|")[:2]): ln for ln in paired}
    for r, line in zip(rows, table, strict=True):
        assert r["seeds"] == 2 and 0.0 <= r["auc_ci"][0] <= r["auc"] <= r["auc_ci"][1] <= 1.0, r
        cells = [c.strip() for c in line.strip("|").split("|")]
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        assert cells[:4] == [r["arm"], ratio, "1.000", f"{r['auc']:.3f}"], (r, line)
        assert cells[4] == f"[{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]", (r, line)
        if r["arm"] != "real":  # every other arm is compared with real-only data, with a verdict
            pline = paired_by_arm[(r["arm"], ratio)]
            assert isinstance(r["auc_diff_vs_real"], float) and r["verdict"] in pline, (r, pline)
    assert re.search(r"helped|hurt|No arm improved", helps)
