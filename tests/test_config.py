"""Typed config: YAML loading, --set overrides, one-line errors naming the key or file."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgan.config import apply_overrides, config_from_dict, load_config
from medgan.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_minimal_config_has_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "data:\n  source: {kind: medmnist, name: breastmnist}\n"))
    assert cfg.data.source.kind == "medmnist"
    assert cfg.data.splits.train == pytest.approx(0.7)
    assert cfg.data.hw() is None


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = _write(tmp_path, "data:\n  source: {kind: dicom, path: x, windw: abdomen}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert "data.source.windw" in msg and "unknown key" in msg and str(p) in msg
    assert "\n" not in msg


def test_wrong_type_and_missing_key_are_named() -> None:
    with pytest.raises(ConfigError, match=r"data\.size"):
        config_from_dict({"data": {"source": {"kind": "medmnist", "name": "x"}, "size": "big"}})
    with pytest.raises(ConfigError, match=r"data: required key is missing"):
        config_from_dict({"seed": 1})
    with pytest.raises(ConfigError, match=r"data\.source\.intensity\.window: unknown window preset"):
        config_from_dict({"data": {"source": {"kind": "dicom", "path": "x", "intensity": {"window": "abd"}}}})


def test_split_fractions_must_sum_to_one() -> None:
    with pytest.raises(ConfigError, match="train \\+ val \\+ test must be 1"):
        config_from_dict({"data": {"source": {"kind": "medmnist", "name": "x"}, "splits": {"train": 0.9}}})


def test_set_overrides_nested_values(tmp_path: Path) -> None:
    p = _write(tmp_path, "data:\n  source: {kind: nifti, image: a.nii.gz}\n")
    cfg = load_config(p, ["data.size=64", "data.source.axis=coronal", "data.splits.seed=7", "seed=3"])
    assert cfg.data.hw() == (64, 64)
    assert cfg.data.source.axis == "coronal"
    assert cfg.data.splits.seed == 7 and cfg.seed == 3
    with pytest.raises(ConfigError, match=r"data\.sise: unknown key"):
        load_config(p, ["data.sise=64"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["data.size"])


def test_yaml_cannot_execute_code(tmp_path: Path) -> None:
    p = _write(tmp_path, "data: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_missing_config_and_missing_data_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    cfg = config_from_dict({"data": {"source": {"kind": "nifti", "image": "missing.nii.gz"}}})
    with pytest.raises(ConfigError, match=r"data\.source\.image: file not found"):
        cfg.data.source.resolved(tmp_path)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.source.kind in {"medmnist", "images", "dicom", "nifti"}


def test_shipped_configs_cover_every_source_kind() -> None:
    # configs/data/ holds the sources too small or unlabelled for a study (the DICOM ones)
    kinds = {load_config(p).data.source.kind for p in (REPO / "configs").rglob("*.yaml")}
    assert kinds == {"medmnist", "images", "dicom", "nifti"}
