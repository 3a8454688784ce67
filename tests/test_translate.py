"""CycleGAN translation: every output traced to an existing source, label-preservation metrics, DICOM references."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medgan.cli import main
from medgan.config import config_from_dict
from medgan.errors import ConfigError, InputError
from medgan.train import train
from medgan.translate import translate
from tests.synthesis.test_cyclegan import tiny_cycle_config


@pytest.fixture(scope="module")
def cycle_ckpt(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = tiny_cycle_config(steps=4)
    cfg["classifier"] = {"epochs": 3, "width": 4, "patience": 2}
    return train(config_from_dict(cfg), tmp_path_factory.mktemp("cyc"), tiny_data_dir)


def test_manifest_traces_every_output_to_its_source(
    cycle_ckpt: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    m = translate(cycle_ckpt, tmp_path / "o", "A2B", "medmnist:tinymnist", tiny_data_dir, fmt="png")
    from medgan.data.sources import load_source

    src = load_source(
        config_from_dict({"data": {"source": {"kind": "medmnist", "name": "tinymnist"}}}).data, tiny_data_dir
    )
    train_a = src.manifest[(src.manifest["split"] == "train") & (src.manifest["label_name"] == "0")]
    assert len(m) == len(train_a) == 24
    assert set(m["source_slice_id"]) == set(train_a["slice_id"])
    assert (m["source_label_name"].astype(str) == "0").all() and (m["source_split"] == "train").all()
    for _, row in m.iterrows():
        assert (tmp_path / "o" / row["path"]).is_file()
        assert (tiny_data_dir / row["source"]).is_file()
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["n_sources"] == 24 and metrics["n_written"] == 24
    assert 0.0 <= metrics["share_classified_as_target"] <= 1.0
    assert metrics["classifier"]["arch"] == "resnet10" and (cycle_ckpt.parents[1] / "classifier").is_dir()


def test_output_is_deterministic_and_resumable(cycle_ckpt: Path, tiny_data_dir: Path, tmp_path: Path) -> None:
    a = translate(
        cycle_ckpt, tmp_path / "a", "B2A", "medmnist:tinymnist", tiny_data_dir, fmt="nifti", split="val"
    )
    b = translate(
        cycle_ckpt, tmp_path / "b", "B2A", "medmnist:tinymnist", tiny_data_dir, fmt="nifti", split="val"
    )
    assert a.equals(b)
    for p in a["path"]:
        assert (tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes()
    (tmp_path / "a" / a["path"][0]).unlink()
    again = translate(
        cycle_ckpt, tmp_path / "a", "B2A", "medmnist:tinymnist", tiny_data_dir, fmt="nifti", split="val"
    )
    assert again.equals(a) and (tmp_path / "a" / a["path"][0]).is_file()


def test_translations_are_scored_against_the_real_target_domain(
    cycle_ckpt: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    import numpy as np
    import torch

    from medgan.translate import translation_scores

    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    feats = tmp_path / "pool.pt"
    torch.jit.script(Pool()).save(str(feats))
    translate(
        cycle_ckpt, tmp_path / "o", "A2B", "medmnist:tinymnist", tiny_data_dir, fmt="npz", features=str(feats)
    )
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    q = metrics["quality"]
    # 24 train slices of class 0 translated; compared with the 4 real class-1 test slices
    assert q["n_translated"] == 24 and q["n_real_target"] == 4 and q["eval_split"] == "test"
    assert q["floor_n"] == 24 and q["fid"] > 0 and q["floor_fid"] > 0
    assert q["share_classified_as_target"] == metrics["share_classified_as_target"]
    # the function itself: real target slices as "translations" sit at the floor's level, noise far above
    from medgan.metrics.features import TorchScriptExtractor

    ext = TorchScriptExtractor(feats)
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (40, 1, 16, 16)).astype(np.float32) * 0.1
    same = translation_scores(real[:20], real[20:30], real[30:], ext, tag="t")
    noise = translation_scores(
        rng.uniform(-1, 1, (20, 1, 16, 16)).astype(np.float32), real[20:30], real[30:], ext, tag="t"
    )
    assert noise["fid"] > 10 * same["fid"] and same["floor_n"] == 10
    assert 0.0 <= noise["coverage"] < same["coverage"] <= 1.0


def test_min_target_prob_drops_outputs(cycle_ckpt: Path, tiny_data_dir: Path, tmp_path: Path) -> None:
    m = translate(cycle_ckpt, tmp_path / "o", "A2B", "medmnist:tinymnist", tiny_data_dir, min_target_prob=1.0)
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["n_dropped"] + metrics["n_written"] == metrics["n_sources"]
    assert len(m) == metrics["n_written"] and (m["target_prob"] >= 1.0).all()


def test_dicom_source_is_referenced(cycle_ckpt: Path, tiny_data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    src = pydicom.dcmread(folder / "ct.dcm")
    # by default no source UID leaves the reader: the translation traces to its file and slice only
    m = translate(cycle_ckpt, tmp_path / "anon", "A2B", str(folder), tiny_data_dir, fmt="dicom")
    assert len(m) == 1 and pd.isna(m["source_sop_instance_uid"][0]) and m["source"][0].endswith("ct.dcm")
    anon = pydicom.dcmread(tmp_path / "anon" / m["path"][0])
    assert "SourceImageSequence" not in anon
    assert all(src.SOPInstanceUID.encode() not in p.read_bytes() for p in (tmp_path / "anon").rglob("*.*"))
    # asked to keep them (as `prepare --keep-source-ids`), the DICOM references its source instance
    m = translate(
        cycle_ckpt, tmp_path / "o", "A2B", str(folder), tiny_data_dir, fmt="dicom", keep_source_ids=True
    )
    assert len(m) == 1 and m["source_sop_instance_uid"][0] == src.SOPInstanceUID
    out = pydicom.dcmread(tmp_path / "o" / m["path"][0])
    ref = out.SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID and ref.ReferencedSOPClassUID == src.SOPClassUID
    assert out.ConversionType == "SYN" and out.SOPInstanceUID != src.SOPInstanceUID
    assert str(out.PatientName) == "SYNTHETIC^MEDGAN" and out.PatientID == "SYNTHETIC"
    assert str(src.PatientName) not in str(out.PatientName)


def test_bad_input(
    cycle_ckpt: Path, tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path, capsys
) -> None:
    with pytest.raises(InputError, match="A2B or B2A"):
        translate(cycle_ckpt, tmp_path / "x", "AtoB", "medmnist:tinymnist", tiny_data_dir)
    with pytest.raises(
        ConfigError, match=r"model.kind: 'cgan' is a class-conditional GAN.*needs a cyclegan checkpoint"
    ):
        translate(tiny_checkpoint, tmp_path / "x", "A2B", "medmnist:tinymnist", tiny_data_dir)
    code = main(
        ["generate", "--checkpoint", str(cycle_ckpt), "--translate", "A2B", "--out", str(tmp_path / "y")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--input" in err
    code = main(["generate", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "z")])
    assert code == 2 and "--n-per-class" in capsys.readouterr().err
