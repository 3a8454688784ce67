"""Every config shipped in ``configs/`` goes through ``medgan run`` (tiny steps) to a report with its arms;
every data-source example in ``configs/data/`` through ``medgan data inspect``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medgan.cli import main
from medgan.config import MODEL_CONFIGS, RunConfig, arm_kind, load_config

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(ROOT.glob("*.yaml"))
DATA_CONFIGS = sorted((ROOT / "data").glob("*.yaml"))

#: Tiny lengths only: every key that shapes what runs (model kind, data, arms, levers) stays the config's.
TINY = [
    "train.steps=2",
    "train.batch_size=8",
    "train.select.every=0",
    "train.sample_every=2",
    "train.checkpoint_every=2",
    "classifier.epochs=1",
    "classifier.width=4",  # a narrow ResNet: one epoch of a 64 px study cell in about a second
    "classifier.patience=1",
    "segmenter.epochs=1",
    "segmenter.channels=[8,16]",  # a small UNet, as TINY_MODELS makes the synthesizers small
    "segmenter.res_units=0",
    "seg_study.seeds=1",
    "seg_study.fractions=[1.0]",
    "study.seeds=1",
    "study.fractions=[1.0]",
    "study.n_boot=20",
    "study.steps={}",
    "pipeline.eval_n=16",
    "pipeline.eval_per_class=null",
    "pipeline.cas_n=16",
]


def test_every_config_is_covered() -> None:
    assert len(CONFIGS) >= 9 and len(DATA_CONFIGS) >= 2
    assert {load_config(c).model.kind for c in CONFIGS} == set(MODEL_CONFIGS)  # every kind has a config
    assert sorted(ROOT.rglob("*.yaml")) == sorted(CONFIGS + DATA_CONFIGS)  # nothing elsewhere


@pytest.mark.integration
@pytest.mark.parametrize("config", DATA_CONFIGS, ids=[c.stem for c in DATA_CONFIGS])
def test_data_config_inspects(config: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "inspect", str(config), "--data-dir", str(data_dir)]) == 0
    assert "slices" in capsys.readouterr().out


#: Small networks and samplers for the kinds whose defaults take minutes even for 2 steps (28 px).
TINY_MODELS: dict[str, dict[str, object]] = {
    "diffusion": {
        "channels": [8, 16],
        "attention_levels": [False, True],
        "head_channels": 8,
        "sampling_steps": 2,
        "select_sampling_steps": 2,
    },
    "spade": {"channels": [8, 16], "spade_hidden": 8, "d_channels": 8, "z_dim": 8},
}


#: A study arm's cGAN of another run's kind, small as well: at 64 px (study_busi) its default width
#: took 10 s for 2 steps and 15 s for its slices.
TINY_ARMS = {**TINY_MODELS, "cgan": {"g_channels": 16, "g_max_channels": 64, "d_max_channels": 64}}


def tiny_kinds(cfg: RunConfig) -> list[str]:
    """``--set`` overrides: the run's own model and every other kind's study arm made small and short."""
    sets = [f"model.{k}={json.dumps(v)}" for k, v in TINY_MODELS.get(cfg.model.kind, {}).items()]
    others = {arm_kind(a) for a in cfg.study.arms} - {None, cfg.model.kind}
    for kind in sorted(k for k in others if k is not None):
        sets.append(f"study.steps.{kind}=2")
        sets += [f"study.models.{kind}.{k}={json.dumps(v)}" for k, v in TINY_ARMS.get(kind, {}).items()]
    return sets


@pytest.fixture(scope="module")
def my_images(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding ``my_images/`` built from BreastMNIST as docs/data.md shows."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("imgdata")
    out = root / "my_images"
    out.mkdir()
    classes = {0: "malignant", 1: "benign"}
    with np.load(data_dir / "medmnist" / "breastmnist.npz") as z:
        rows = ["path,label,split"]
        for split in ("train", "val", "test"):
            for i, (img, lab) in enumerate(
                zip(z[f"{split}_images"], z[f"{split}_labels"][:, 0], strict=True)
            ):
                name = f"{split} {i:04d}.png"
                Image.fromarray(img).save(out / name)
                rows.append(f"{name},{classes[int(lab)]},{split}")
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_runs_end_to_end(
    config: Path, data_dir: Path, pool_features: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cfg = load_config(config)
    if config.stem == "image_folder":  # the user's own folder: built as docs/data.md shows
        data_dir = request.getfixturevalue("my_images")
    ratio = f"study.ratios=[{cfg.study.all_ratios()[0]}]"
    sets = [*TINY, ratio, f"pipeline.features={pool_features}", *tiny_kinds(cfg)]
    if "real+" in cfg.study.arms:  # the positive control runs below 100 % only: one 2-step subset
        sets.append("study.fractions=[0.5]")
    if cfg.study.levers:
        sets.append(f"study.levers=[{json.dumps(cfg.study.levers[0].model_dump(exclude={'ratios'}))}]")
    args = ["run", str(config), "--out", str(tmp_path / "out"), "--data-dir", str(data_dir)]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    out = tmp_path / "out"
    md = (out / "report.md").read_text()
    if cfg.pipeline.study:
        study = json.loads((out / "study" / "study.json").read_text())
        arms = {r["arm"] for r in study["summary"] if r.get("seeds")}
        want = (
            set(cfg.study.arms) | {f"{a}[{cfg.study.levers[0].name}]" for a in cfg.study.levers[0].arms}
            if (cfg.study.levers)
            else set(cfg.study.arms)
        )
        assert arms == want  # every configured arm ran (none skipped, none crashed)
        assert "## Does synthetic data help the classifier?" in md
        for arm in want:
            assert f"| {arm} |" in md or f"`{arm}`" in md, arm
    if cfg.seg_study.run:  # image + mask pairs: scored, drawn, and the segmentation study's every arm
        seg = json.loads((out / "seg_study" / "seg_study.json").read_text())
        assert {r["arm"] for r in seg["summary"]} == set(cfg.seg_study.arms)
        assert "## Segmentation study" in md and "## Image + mask pairs" in md
        assert (out / "figures" / "pairs.png").is_file() and (
            out / "evaluation" / "pair_scores.json"
        ).is_file()
    assert cfg.pipeline.study or cfg.seg_study.run  # every shipped config runs a study
    if cfg.model.kind == "cyclegan":
        for direction in ("A2B", "B2A"):
            metrics = json.loads((out / "translations" / direction / "metrics.json").read_text())
            assert metrics["n_written"] > 0 and metrics["quality"]["fid"] is not None
            assert direction in md
        assert "## Translations" in md and (out / "figures" / "translations.png").is_file()
    elif cfg.pipeline.evaluate:
        assert "## Synthetic data quality" in md
        assert json.loads((out / "evaluation" / "metrics.json").read_text())["fid"] is not None
    assert yaml.safe_load((out / "config.resolved.yaml").read_text())["model"]["kind"] == cfg.model.kind
