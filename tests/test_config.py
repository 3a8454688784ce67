"""Typed config: YAML loading, --set overrides, one-line errors naming the key or file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medgan.config import apply_overrides, config_from_dict, load_config, parse_yaml
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


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("train: {steps: true}", "train.steps"),
        ("train: {batch_size: no}", "train.batch_size"),
        ("seed: yes", "seed"),
        ("study: {ratios: [0.5, true]}", "study.ratios"),
        ("study: {fractions: [0.1], seeds: {0.1: true}}", "study.seeds"),
        ("classifier: {epochs: true}", "classifier.epochs"),
    ],
)
def test_a_boolean_where_a_number_is_expected_is_refused(tmp_path: Path, text: str, key: str) -> None:
    """YAML's true / yes / no are not counts: ``train.steps: true`` would run 1 step."""
    p = _write(tmp_path, f"data:\n  source: {{kind: medmnist, name: x}}\n{text}\n")
    with pytest.raises(ConfigError, match=re.escape(key) + r": expected .*got a boolean"):
        load_config(p)


def test_gate_thresholds_no_result_can_meet_are_refused() -> None:
    """Within-class MS-SSIM is in (0, 1]: a maximum of 0 or below fails every synthesizer."""
    base = {"data": {"source": {"kind": "medmnist", "name": "x"}}}
    for v in (-0.2, 0.0):
        with pytest.raises(ConfigError, match=r"gates\.ms_ssim_max"):
            config_from_dict({**base, "gates": {"ms_ssim_max": v}})
    with pytest.raises(ConfigError, match=r"gates\.recall_min"):
        config_from_dict({**base, "gates": {"recall_min": float("nan")}})


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


# ---- configs from the wild: bounded, unambiguous, no exit 1 ----------------------------------


def test_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "data:\n  source: {kind: medmnist, name: breastmnist}\n  size: 28\n  size: 64\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml:4: .*'size' appears twice"):
        load_config(p)


def test_yaml_merge_keys_still_override() -> None:
    text = "base: &base {kind: medmnist, name: breastmnist}\nsource:\n  <<: *base\n  name: pneumoniamnist\n"
    assert parse_yaml(text)["source"] == {"kind": "medmnist", "name": "pneumoniamnist"}


@pytest.mark.parametrize("depth", [65, 5000])
def test_deep_nesting_is_a_one_line_error(tmp_path: Path, depth: int) -> None:
    with pytest.raises(ConfigError, match="nested more than 64 levels"):
        load_config(_write(tmp_path, "a: " + "[" * depth + "]" * depth + "\n"))


def test_alias_bomb_is_refused_before_expanding(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")
    with pytest.raises(ConfigError, match="more than 100,000 values once aliases are expanded"):
        load_config(_write(tmp_path, "\n".join(lines) + "\n"))


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="alias refers to the mapping or list that contains it"):
        load_config(_write(tmp_path, "a: &a [1, *a]\n"))


def test_oversized_config_file_is_refused_unread(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    p.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match="a config may be at most 1,048,576"):
        load_config(p)


@pytest.mark.parametrize("key", ["data..size", ".data.size", "data.size.", "data. size", "data.si-ze"])
def test_malformed_set_paths_are_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=r"--set .*: key has"):
        apply_overrides({"data": {}}, [f"{key}=5"])


def test_set_list_index_and_underscores_still_work() -> None:
    out = apply_overrides({"a": {"b_c": [1, 2]}}, ["a.b_c.1=7"])
    assert out == {"a": {"b_c": [1, 7]}}


def test_size_beyond_the_voxel_limit_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = {"data": {"source": {"kind": "medmnist", "name": "breastmnist"}, "size": 2_000_000}}
    with pytest.raises(ConfigError, match=r"data\.size: .*larger than the limit of 1,073,741,824 values"):
        config_from_dict(raw)
    monkeypatch.setenv("MEDGAN_MAX_VOXELS", str(64 * 64 - 1))
    raw["data"]["size"] = 64
    with pytest.raises(ConfigError, match="MEDGAN_MAX_VOXELS"):
        config_from_dict(raw)
