"""MedMNIST .npz reader: official keys and splits, name resolution, verified download, offline errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medgan.config import config_from_dict
from medgan.data.sources import load_source
from medgan.errors import InputError
from medgan.io import medmnist as mm


def _fake_npz(path: Path, rgb: bool = False, n_classes: int = 3) -> Path:
    rng = np.random.default_rng(0)
    shape = (28, 28, 3) if rgb else (28, 28)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % n_classes).astype(np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _data(name: str, **kw) -> object:
    return config_from_dict({"data": {"source": {"kind": "medmnist", "name": name, **kw}}}).data


def test_grayscale_multiclass_keeps_official_splits(tmp_path: Path) -> None:
    _fake_npz(tmp_path / "medmnist" / "mysetmnist.npz")
    ss = load_source(_data("mysetmnist"), tmp_path)
    assert ss.shape == (1, 28, 28) and len(ss) == 22
    assert ss.manifest["split"].value_counts().to_dict() == {"train": 12, "test": 6, "val": 4}
    assert ss.classes == ["0", "1", "2"]
    assert ss.images.min() >= -1.0 and ss.images.max() <= 1.0
    assert (ss.manifest["source"] == "medmnist/mysetmnist.npz").all()


def test_rgb_set_gives_three_channels_and_known_class_names(tmp_path: Path) -> None:
    _fake_npz(tmp_path / "bloodmnist.npz", rgb=True, n_classes=8)
    ss = load_source(_data("bloodmnist"), tmp_path)
    assert ss.shape == (3, 28, 28)
    assert ss.classes[0] == "basophil" and len(ss.classes) == 8
    grey = load_source(
        config_from_dict(
            {"data": {"source": {"kind": "medmnist", "name": "bloodmnist"}, "channels": 1, "size": 32}}
        ).data,
        tmp_path,
    )
    assert grey.shape == (1, 32, 32)


def test_pixel_values_map_exactly(tmp_path: Path) -> None:
    p = _fake_npz(tmp_path / "x.npz")
    with np.load(p) as z:
        raw = z["train_images"][0]
    ss = load_source(_data("x", path=str(p)), tmp_path)
    np.testing.assert_allclose(ss.images[0, 0], raw / 127.5 - 1.0, atol=1e-6)


def test_bad_npz_files(tmp_path: Path) -> None:
    p = tmp_path / "bad.npz"
    p.write_bytes(b"this is not a zip file")
    with pytest.raises(InputError, match=r"bad\.npz: not a readable \.npz"):
        mm.read_medmnist_npz(p)
    q = tmp_path / "nokeys.npz"
    np.savez(q, foo=np.zeros(3))
    with pytest.raises(InputError, match="no '<split>_images' keys"):
        mm.read_medmnist_npz(q)
    r = tmp_path / "multilabel.npz"
    np.savez(r, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.zeros((2, 14), np.uint8))
    with pytest.raises(InputError, match="multi-label"):
        mm.read_medmnist_npz(r)


def test_missing_file_is_downloaded_with_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_download(url: str, filepath: str, hash_val: str, hash_type: str, progress: bool) -> None:
        calls.append((url, hash_val, hash_type))
        _fake_npz(Path(filepath), n_classes=2)

    monkeypatch.setattr("monai.apps.download_url", fake_download)
    ss = load_source(_data("breastmnist"), tmp_path)
    assert calls == [(mm.MEDMNIST_URL.format(name="breastmnist"), mm.MEDMNIST_INFO["breastmnist"].md5, "md5")]
    assert (tmp_path / "medmnist" / "breastmnist.npz").is_file()
    assert ss.classes == ["malignant", "normal, benign"]


def test_offline_error_says_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.error import URLError

    def offline(*a: object, **k: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr("monai.apps.download_url", offline)
    with pytest.raises(InputError) as ei:
        load_source(_data("pneumoniamnist"), tmp_path)
    msg = str(ei.value)
    assert "could not be downloaded" in msg and str(tmp_path / "medmnist" / "pneumoniamnist.npz") in msg
    assert "zenodo.org" in msg and "\n" not in msg
    assert not (tmp_path / "medmnist").exists()  # nothing half-made
    with pytest.raises(InputError, match="unknown MedMNIST set"):
        load_source(_data("nosuchmnist"), tmp_path)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "counts", "labels"),
    [
        ("breastmnist", (546, 78, 156), {"malignant": 210, "normal, benign": 570}),
        ("pneumoniamnist", (4708, 524, 624), {"normal": 1583, "pneumonia": 4273}),
    ],
)
def test_real_medmnist_files(data_dir: Path, name: str, counts: tuple[int, int, int], labels: dict) -> None:
    ss = load_source(_data(name), data_dir)
    m = ss.manifest
    assert tuple(int((m["split"] == s).sum()) for s in ("train", "val", "test")) == counts
    assert m["label_name"].value_counts().to_dict() == labels
    assert ss.shape == (1, 28, 28)
    assert json.dumps(ss.info)  # info is JSON-serialisable
