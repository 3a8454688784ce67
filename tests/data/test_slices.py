"""Slices: intensity normalisation, lesion labelling, empty-slice filtering, resizing, manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medgan.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest
from medgan.data.slices import build_sliceset, resize_batch, to_channels, volume_to_slices
from medgan.errors import InputError
from medgan.intensity import WINDOW_PRESETS, denormalize, normalize, percentile_range, window_range
from medgan.io.contract import Volume


def _volume(z: int = 6, mask: bool = True) -> Volume:
    rng = np.random.default_rng(0)
    data = rng.normal(0, 100, size=(z, 1, 16, 16)).astype(np.float32)
    m = np.zeros((z, 16, 16), np.uint8)
    m[2, 4:6, 4:6] = 1  # 4 px
    m[3, 4:5, 4:5] = 1  # 1 px
    return Volume(
        data=data,
        source_format="nifti",
        sources=["vol.nii.gz"] * z,
        slice_index=list(range(z)),
        patient_id="p1",
        mask=m if mask else None,
        mask_source="mask.nii.gz" if mask else None,
        positions=np.array([[0.0, 0.0, float(k)] for k in range(z)]),
        orientation=np.array([1.0, 0, 0, 0, 1, 0]),
        spacing=(0.5, 0.5),
        thickness=1.0,
    )


def test_window_presets_map_to_unit_interval() -> None:
    c, w = WINDOW_PRESETS["abdomen"]
    r = window_range(c, w, "abdomen")
    x = np.array([-1000.0, c - w / 2, c, c + w / 2, 3000.0])
    y = normalize(x, r)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [-1, -1, 0, 1, 1], atol=1e-6)
    np.testing.assert_allclose(denormalize(y[1:4], r.lo, r.hi), x[1:4], atol=1e-3)
    assert {"abdomen", "lung", "brain", "bone"} <= set(WINDOW_PRESETS)


def test_percentile_range_ignores_outliers() -> None:
    x = np.concatenate([np.linspace(0, 100, 1000), [1e6]])
    r = percentile_range(x, 0.5, 99.5)
    assert r.hi < 200


def test_lesion_labelling_uses_min_lesion_px() -> None:
    imgs, rows, dropped = volume_to_slices(_volume(), classes=["healthy", "lesion"], min_lesion_px=1)
    assert [r["label_name"] for r in rows] == ["healthy", "healthy", "lesion", "lesion", "healthy", "healthy"]
    assert dropped == 0 and imgs.shape == (6, 1, 16, 16)
    assert imgs.min() >= -1 and imgs.max() <= 1
    _, rows, _ = volume_to_slices(_volume(), classes=["healthy", "lesion"], min_lesion_px=2)
    assert [r["label"] for r in rows] == [0, 0, 1, 0, 0, 0]
    assert rows[2]["mask_px"] == 4


def test_without_mask_slices_are_unlabelled() -> None:
    _, rows, _ = volume_to_slices(_volume(mask=False), classes=["healthy", "lesion"])
    assert {r["label"] for r in rows} == {-1} and {r["label_name"] for r in rows} == {"unlabelled"}


def test_empty_slices_are_dropped_and_counted() -> None:
    vol = _volume()
    vol.data[0] = -1000.0
    vol.data[5] = -1000.0
    imgs, rows, dropped = volume_to_slices(
        vol, classes=["h", "l"], empty_threshold=-500.0, min_body_fraction=0.05
    )
    assert dropped == 2 and len(rows) == 4 and imgs.shape[0] == 4
    assert [r["slice_index"] for r in rows] == [1, 2, 3, 4]


def test_nan_voxels_are_an_input_error() -> None:
    vol = _volume()
    vol.data[1, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"vol\.nii\.gz: contains 1 NaN/Inf"):
        volume_to_slices(vol, classes=["h", "l"])


def test_mask_shape_mismatch_is_an_input_error() -> None:
    vol = _volume()
    vol.mask = np.zeros((6, 8, 8), np.uint8)
    with pytest.raises(InputError, match=r"mask\.nii\.gz: mask shape .* does not match"):
        volume_to_slices(vol, classes=["h", "l"])


def test_resize_and_channels() -> None:
    x = np.linspace(-1, 1, 2 * 1 * 32 * 32, dtype=np.float32).reshape(2, 1, 32, 32)
    y = resize_batch(x, (16, 16))
    assert y.shape == (2, 1, 16, 16) and y.min() >= -1 and y.max() <= 1
    assert to_channels(x, 3).shape == (2, 3, 32, 32)
    rgb = np.stack([np.full((4, 4), v, np.float32) for v in (1.0, 0.0, -1.0)])[None]
    grey = to_channels(rgb, 1)
    assert grey.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(grey, 0.299 - 0.114, atol=1e-6)


def test_build_sliceset_manifest_and_roundtrip(tmp_path) -> None:
    imgs, rows, _ = volume_to_slices(_volume(), classes=["healthy", "lesion"])
    ss = build_sliceset([imgs], rows, ["healthy", "lesion"], "nifti", size=(8, 8))
    assert ss.images.shape == (6, 1, 8, 8) and ss.images.dtype == np.float32
    assert list(ss.manifest.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert set(ss.manifest["split"]) == {"train"}  # one patient: one split
    assert ss.manifest["position"].iloc[3] == "0\\0\\3"
    write_manifest(ss.manifest, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert back["sha1"].tolist() == ss.manifest["sha1"].tolist()
    assert back["label"].tolist() == ss.manifest["label"].tolist()
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left nothing behind


def test_different_sizes_need_a_size() -> None:
    a = np.zeros((1, 1, 8, 8), np.float32)
    b = np.zeros((1, 1, 10, 10), np.float32)
    rows = [{"label": 0, "label_name": "a", "source": "a"}, {"label": 0, "label_name": "a", "source": "b"}]
    with pytest.raises(InputError, match="different sizes"):
        build_sliceset([a, b], [dict(r) for r in rows], ["a"], "images")
    ss = build_sliceset([a, b], [dict(r) for r in rows], ["a"], "images", size=(8, 8))
    assert ss.shape == (1, 8, 8)


def test_slice_count_times_size_is_checked_against_the_limit_before_allocating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imgs = [np.zeros((10, 1, 8, 8), np.float32)]
    rows = [{"label": 0, "label_name": "a", "patient_id": str(i), "source": "x.npz"} for i in range(10)]
    monkeypatch.setenv("MEDGAN_MAX_VOXELS", str(10 * 3 * 64 * 64 - 1))
    with pytest.raises(InputError, match=r"^data: 10 slices at 64x64 claims 10x3x64x64 = 122,880 values"):
        build_sliceset(imgs, rows, ["a"], "npz", size=(64, 64), channels=3, where="data")
    assert build_sliceset(imgs, rows, ["a"], "npz", size=(32, 32), channels=3).images.shape == (10, 3, 32, 32)


def test_data_size_is_checked_per_file_before_resizing(
    tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medgan.config import config_from_dict
    from medgan.data.sources import load_source
    from tests.conftest import tiny_config

    raw = tiny_config()
    raw["data"]["size"] = 64
    cfg = config_from_dict(raw)
    monkeypatch.setenv("MEDGAN_MAX_VOXELS", str(20_000))  # the file's 48 x 16 x 16 fit, 48 x 64 x 64 do not
    with pytest.raises(InputError, match=r"tinymnist\.npz: data\.size 64x64 claims 48x1x64x64"):
        load_source(cfg.data, tiny_data_dir)
