"""medgan augment: a ready-to-train augmented dataset with a manifest and a MONAI datalist."""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest
from monai.data import load_decathlon_datalist

from medgan.augment import augment
from medgan.cli import main
from medgan.config import config_from_dict
from medgan.errors import ConfigError, InputError
from medgan.synthesis.cgan import CGANSynthesizer
from tests.conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]


def _cfg(ckpt: Path, **aug: object):
    d = tiny_config()
    d["augment"] = {"checkpoints": [str(ckpt)], **aug}
    d["train"]["device"] = "cpu"
    return config_from_dict(d, "test")


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("augment.json", "generate.json")
    }


def test_augment_writes_real_plus_synthetic_and_a_loadable_datalist(
    tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "aug"
    m = augment(_cfg(tiny_checkpoint, ratio=0.5), out, tiny_data_dir)
    # 48 real training slices (24 per class) + 0.5 x 24 synthetic per class; val/test real only
    counts = m.groupby(["split", "source"]).size().to_dict()
    assert counts == {
        ("train", "real"): 48,
        ("train", "synthetic"): 24,
        ("val", "real"): 8,
        ("test", "real"): 8,
    }
    assert m[m.source == "synthetic"].groupby("label").size().tolist() == [12, 12]
    syn = m[m.source == "synthetic"]
    sha = CGANSynthesizer(tiny_checkpoint).sha256
    assert set(syn.checkpoint_sha256) == {sha} and syn.seed.notna().all() and syn.seed.is_unique
    assert (m[m.source == "real"].origin != "").all()
    for rel in m.path:
        assert (out / rel).is_file()
    assert pd.read_csv(out / "manifest.csv").shape[0] == len(m)
    training = load_decathlon_datalist(out / "datalist.json", True, "training")
    validation = load_decathlon_datalist(out / "datalist.json", True, "validation")
    test = load_decathlon_datalist(out / "datalist.json", True, "test")
    assert (len(training), len(validation), len(test)) == (72, 8, 8)
    assert sum(d["synthetic"] for d in training) == 24
    assert not any(d["synthetic"] for d in validation + test)
    assert all(Path(d["image"]).is_file() for d in training + validation + test)
    meta = json.loads((out / "datalist.json").read_text())
    assert meta["numTraining"] == 72 and meta["numSynthetic"] == 24 and len(meta["labels"]) == 2


def test_augment_is_reproducible_and_resumes(
    tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    augment(_cfg(tiny_checkpoint, ratio=0.5), a, tiny_data_dir)
    augment(_cfg(tiny_checkpoint, ratio=0.5), b, tiny_data_dir)
    assert _hashes(a) == _hashes(b)  # the same config gives the same dataset, byte for byte
    # an interrupted run: files lost (or never written) are rebuilt identically, others kept
    victims = sorted((a / "real/train").rglob("*.png"))[:3] + sorted((a / "synthetic").rglob("*.png"))[:2]
    before = {p: p.stat().st_mtime_ns for p in sorted(a.rglob("*.png")) if p not in victims}
    for p in victims:
        p.unlink()
    (a / "datalist.json").unlink()
    augment(_cfg(tiny_checkpoint, ratio=0.5), a, tiny_data_dir)
    assert _hashes(a) == _hashes(b)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    # a different dataset into the same folder is refused
    with pytest.raises(InputError, match="different augmented dataset"):
        augment(_cfg(tiny_checkpoint, ratio=1.0), a, tiny_data_dir)


def test_augment_mixes_a_cgan_and_a_diffusion_model(
    tiny_checkpoint: Path, tiny_diffusion_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    """Two checkpoints of different kinds share each class's synthetic count; each file traces to its own."""
    m = augment(
        _cfg(tiny_checkpoint, ratio=0.5, checkpoints=[str(tiny_checkpoint), str(tiny_diffusion_checkpoint)]),
        tmp_path / "a",
        tiny_data_dir,
    )
    syn = m[m["source"] == "synthetic"]
    assert len(syn) == 24 and syn["checkpoint_sha256"].nunique() == 2
    assert all((tmp_path / "a" / p).is_file() for p in syn["path"])


def test_augment_policies_and_counts(tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path) -> None:
    rep = augment(_cfg(tiny_checkpoint, policy="replace", ratio=0.25), tmp_path / "r", tiny_data_dir)
    train = rep[rep.split == "train"]
    assert (train.source == "real").sum() == 36 and (train.source == "synthetic").sum() == 12
    classes = CGANSynthesizer(tiny_checkpoint).classes
    exact = augment(_cfg(tiny_checkpoint, n_per_class={classes[1]: 5}), tmp_path / "n", tiny_data_dir)
    assert exact[exact.source == "synthetic"].label.tolist() == [1] * 5
    with pytest.raises(ConfigError, match="unknown class"):
        augment(_cfg(tiny_checkpoint, n_per_class={"nope": 1}), tmp_path / "x", tiny_data_dir)
    with pytest.raises(ConfigError, match="at least one"):
        augment(config_from_dict({**tiny_config(), "augment": {}}, "t"), tmp_path / "y", tiny_data_dir)


def test_augment_cli_bad_input_is_one_line_exit_2(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    d = tiny_config()
    d["augment"] = {"checkpoints": [str(tmp_path / "missing.safetensors")]}
    import yaml

    cfg.write_text(yaml.safe_dump(d))
    code = main(["augment", str(cfg), "--out", str(tmp_path / "o"), "--data-dir", str(tiny_data_dir)])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.safetensors" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_the_same_checkpoint_listed_twice_is_refused(
    tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    """The run folder and its checkpoint file are one synthesizer: listed as both, its images would
    enter the dataset twice; refused (by the weights' SHA-256) before anything is written."""
    run_dir = tiny_checkpoint.parents[1]
    cfg = _cfg(tiny_checkpoint)
    cfg.augment.checkpoints = [str(run_dir), str(tiny_checkpoint)]
    with pytest.raises(InputError, match=r"is the checkpoint .* again \(sha256 [0-9a-f]{12}\); its images"):
        augment(cfg, tmp_path / "o", tiny_data_dir)
    assert not (tmp_path / "o").exists()


def test_monai_script_trains_on_an_augmented_datalist_and_with_synthetic_lines(
    tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    augment(_cfg(tiny_checkpoint, ratio=0.5), tmp_path / "aug", tiny_data_dir)
    script = runpy.run_path(str(REPO / "pipelines/monai_classification.py"))
    common = ["--datalist", str(tmp_path / "aug/datalist.json"), "--epochs", "1", "--max-iterations", "2"]
    auc = script["main"]([*common, "--batch-size", "8"])
    assert 0.0 <= auc <= 1.0
    auc_syn = script["main"](
        [*common, "--batch-size", "8", "--synthetic", str(tiny_checkpoint), "--ratio", "1.0"]
    )
    assert 0.0 <= auc_syn <= 1.0
    assert sys.modules.get("medgan.monai") is not None
