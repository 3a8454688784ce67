"""Every config shipped in ``configs/`` goes through ``medgan run`` (tiny steps) to a report with its arms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medgan.cli import main
from medgan.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))

#: Tiny lengths only: every key that shapes what runs (model kind, data, arms, levers) stays the config's.
TINY = [
    "train.steps=2",
    "train.batch_size=8",
    "train.select.every=0",
    "train.sample_every=2",
    "train.checkpoint_every=2",
    "classifier.epochs=1",
    "classifier.patience=1",
    "study.seeds=1",
    "study.fractions=[1.0]",
    "study.n_boot=20",
    "study.cgan_steps=null",
    "study.cyclegan_steps=null",
    "pipeline.eval_n=16",
    "pipeline.eval_per_class=null",
    "pipeline.cas_n=16",
]


def test_every_config_is_covered() -> None:
    assert len(CONFIGS) >= 11
    assert {load_config(c).model.kind for c in CONFIGS} == {"cgan", "cyclegan"}


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_runs_end_to_end(config: Path, data_dir: Path, pool_features: str, tmp_path: Path) -> None:
    cfg = load_config(config)
    ratio = f"study.ratios=[{cfg.study.ratios[0]}]"
    sets = [*TINY, ratio, f"pipeline.features={pool_features}"]
    if cfg.study.levers:
        sets.append(f"study.levers=[{json.dumps(cfg.study.levers[0].model_dump(exclude={'ratios'}))}]")
    args = ["run", str(config), "--out", str(tmp_path / "out"), "--data-dir", str(data_dir)]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    out = tmp_path / "out"
    study = json.loads((out / "study" / "study.json").read_text())
    arms = {r["arm"] for r in study["summary"] if r.get("seeds")}
    want = set(cfg.study.arms) | {f"{a}[{cfg.study.levers[0].name}]" for a in cfg.study.levers[0].arms} if (
        cfg.study.levers
    ) else set(cfg.study.arms)
    assert arms == want  # every configured arm ran (none skipped, none crashed)
    md = (out / "report.md").read_text()
    assert "## Does synthetic data help the classifier?" in md
    for arm in want:
        assert f"| {arm} |" in md or f"`{arm}`" in md, arm
    if cfg.model.kind == "cyclegan":
        for direction in ("A2B", "B2A"):
            metrics = json.loads((out / "translations" / direction / "metrics.json").read_text())
            assert metrics["n_written"] > 0 and metrics["quality"]["fid"] is not None
            assert direction in md
        assert "## Translations" in md and (out / "figures" / "translations.png").is_file()
    else:
        assert "## Synthetic data quality" in md
        assert json.loads((out / "evaluation" / "metrics.json").read_text())["fid"] is not None
    assert yaml.safe_load((out / "config.resolved.yaml").read_text())["model"]["kind"] == cfg.model.kind
