"""``medgan run`` end to end on tiny data: every stage, a readable report, resumable."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from medgan.cli import main
from tests.conftest import tiny_config


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
    # the study's full-data cGAN is the run's: its gates come from the run's evaluation
    assert study["gates"]["cgan-f1"]["metrics_from"] == "medgan run's evaluation"
    assert study["gates"]["cgan-f1"]["results"] == m["gates"]["results"]


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
    assert html.count("data:image/png;base64,") == 3 and 'src="figures/' not in html


def test_rerun_resumes(tiny_run: Path, tiny_data_dir: Path) -> None:
    before = (tiny_run / "cgan" / "checkpoints").iterdir()
    names = sorted(p.name for p in before)
    cfg = tiny_run.parent / "cfg.yaml"
    assert main(["run", str(cfg), "--out", str(tiny_run), "--data-dir", str(tiny_data_dir)]) == 0
    assert sorted(p.name for p in (tiny_run / "cgan" / "checkpoints").iterdir()) == names


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(tiny_run: Path, tmp_path: Path) -> None:
    cmd = [
        "chromium",
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
    assert m and m.group(1) == m.group(2) == "3", proc.stdout[:500]


def test_study_reuses_the_runs_cgan_at_full_fraction(tiny_run: Path) -> None:
    assert not (tiny_run / "study" / "synthesizers" / "cgan-f1").exists()
