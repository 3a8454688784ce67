"""Image-folder source: reading PNG / JPEG / TIFF files and a labels CSV into a SliceSet."""

from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from medgan.config import config_from_dict
from medgan.data.slices import SliceSet
from medgan.data.sources import load_source
from medgan.errors import InputError
from medgan.io.images import (
    _assign_labels,
    _check_header,
    _check_splits,
    _row_cells,
    read_image,
    read_labels_csv,
    sort_labels,
)

RNG = np.random.default_rng(1234)


def grey(h: int = 8, w: int = 8, seed: int | None = None) -> np.ndarray:
    """Random 8-bit grey image (H, W)."""
    rng = RNG if seed is None else np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


def save(path: Path, arr: np.ndarray, mode: str | None = None, **kw: object) -> Path:
    """Write ``arr`` with Pillow (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    im.save(path, **kw)
    return path


def write_csv(path: Path, lines: list[str]) -> Path:
    """A labels CSV from text lines (the first is the header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load(tmp_path: Path, csv: Path, size: int | None = 8, **extra: object) -> SliceSet:
    """``load_source`` for an image-folder source; ``extra`` keys go to ``data`` (``source`` merged)."""
    source = {"kind": "images", "labels_csv": str(csv), **extra.pop("source", {})}  # type: ignore[dict-item]
    data: dict = {"source": source, "size": size, **extra}
    cfg = config_from_dict({"data": data})
    return load_source(cfg.data, data_dir=tmp_path)


# --------------------------------------------------------------------------- read_image


def test_read_grey_png_8bit(tmp_path: Path) -> None:
    g = grey(6, 9)
    out = read_image(save(tmp_path / "g.png", g))
    assert out.dtype == np.uint8 and out.shape == (1, 6, 9)
    np.testing.assert_array_equal(out[0], g)


def test_read_grey_png_16bit_keeps_values(tmp_path: Path) -> None:
    a = np.linspace(0, 60000, 64).astype(np.uint16).reshape(8, 8)
    out = read_image(save(tmp_path / "g16.png", a))
    assert out.dtype == np.uint16 and out.shape == (1, 8, 8)
    np.testing.assert_array_equal(out[0], a)


def test_read_rgb_jpeg(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 30
    out = read_image(save(tmp_path / "c.jpg", rgb, quality=95))
    assert out.dtype == np.uint8 and out.shape == (3, 16, 16)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), [200, 100, 30], atol=3)


def test_read_rgba_png_composites_onto_black(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[...] = (200, 100, 50, 255)
    rgba[0, 0] = (200, 100, 50, 128)
    rgba[1, 1] = (200, 100, 50, 0)
    out = read_image(save(tmp_path / "a.png", rgba, "RGBA"))
    assert out.dtype == np.uint8 and out.shape == (3, 4, 4)
    np.testing.assert_array_equal(out[:, 3, 3], [200, 100, 50])
    np.testing.assert_array_equal(out[:, 0, 0], np.rint(np.array([200, 100, 50]) * 128 / 255))
    np.testing.assert_array_equal(out[:, 1, 1], [0, 0, 0])


def test_read_la_png_drops_alpha(tmp_path: Path) -> None:
    g = grey()
    la = np.stack([g, np.full_like(g, 7)], -1)
    out = read_image(save(tmp_path / "la.png", la, "LA"))
    assert out.shape == (1, 8, 8)
    np.testing.assert_array_equal(out[0], g)


def test_read_palette_png_grey_and_colour(tmp_path: Path) -> None:
    g = grey()
    p_grey = tmp_path / "pg.png"
    Image.fromarray(g).convert("P").save(p_grey)
    assert Image.open(p_grey).mode == "P"
    out = read_image(p_grey)
    assert out.shape == (1, 8, 8)
    np.testing.assert_array_equal(out[0], g)

    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4] = (255, 0, 0)
    rgb[4:] = (0, 0, 255)
    p_col = tmp_path / "pc.png"
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=2).save(p_col)
    out = read_image(p_col)
    assert out.shape == (3, 8, 8)
    np.testing.assert_array_equal(out, np.moveaxis(rgb, -1, 0))


def test_read_bilevel(tmp_path: Path) -> None:
    bits = grey() > 127
    p = tmp_path / "b.png"
    Image.fromarray(bits).save(p)
    assert Image.open(p).mode == "1"
    out = read_image(p)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], np.where(bits, 255, 0))


def test_read_tiff_8_16_and_float(tmp_path: Path) -> None:
    g = grey()
    np.testing.assert_array_equal(read_image(save(tmp_path / "g8.tif", g))[0], g)
    a16 = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    out = read_image(save(tmp_path / "g16.tif", a16))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[0], a16)
    f32 = RNG.normal(size=(8, 8)).astype(np.float32)
    out = read_image(save(tmp_path / "f32.tif", f32))  # Pillow mode "F"
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], f32)
    f64 = RNG.normal(size=(8, 8))
    tifffile.imwrite(tmp_path / "f64.tif", f64)  # Pillow cannot open it: tifffile fallback
    out = read_image(tmp_path / "f64.tif")
    assert out.dtype == np.float32 and out.shape == (1, 8, 8)
    np.testing.assert_allclose(out[0], f64, rtol=1e-6)


def test_read_tiff_multipage_takes_first_page_and_16bit_rgb(tmp_path: Path) -> None:
    stack = RNG.random((3, 8, 8)).astype(np.float32)
    tifffile.imwrite(tmp_path / "pages.tif", stack, photometric="minisblack")
    out = read_image(tmp_path / "pages.tif")
    assert out.shape == (1, 8, 8)
    np.testing.assert_array_equal(out[0], stack[0])
    rgb16 = RNG.integers(0, 65536, (8, 8, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    out = read_image(tmp_path / "rgb16.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, np.moveaxis(rgb16, -1, 0))


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    txt = tmp_path / "notes.png"
    txt.write_text("this is text, not a picture")
    with pytest.raises(InputError, match=r"notes\.png: not an image file"):
        read_image(txt)
    good = save(tmp_path / "ok.png", grey(32, 32))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(InputError, match=r"cut\.png: image file is truncated or corrupt"):
        read_image(cut)
    with pytest.raises(InputError, match=r"gone\.png: file not found"):
        read_image(tmp_path / "gone.png")


# --------------------------------------------------------------------------- read_labels_csv


def test_labels_csv_numeric_aware_classes_and_spaces(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c d.png", "e.png"):
        save(tmp_path / "img" / name, grey())
    csv = write_csv(
        tmp_path / "labels.csv",
        [
            "path,label",
            "img/a.png,10",
            " img/b.png , 2 ",
            '"img/c d.png",0',
            str(tmp_path / "img" / "e.png") + ",2",
        ],
    )
    frame, classes = read_labels_csv(csv, tmp_path, None)
    assert classes == ["0", "2", "10"]
    assert frame["label"].tolist() == [2, 1, 0, 1]
    assert frame["label_name"].tolist() == ["10", "2", "0", "2"]
    assert frame["path"].tolist()[2] == str(tmp_path / "img" / "c d.png")
    assert "split" not in frame.columns and "patient_id" not in frame.columns
    frame, classes = read_labels_csv(csv, tmp_path, ["10", "2", "0"])
    assert classes == ["10", "2", "0"] and frame["label"].tolist() == [0, 1, 2, 1]


def test_sort_labels() -> None:
    assert sort_labels(["b", "a10", "a2", "a2"]) == ["a2", "a10", "b"]
    assert sort_labels(["10", "2", "-1"]) == ["-1", "2", "10"]


def test_labels_csv_empty_split_column_is_absent(tmp_path: Path) -> None:
    save(tmp_path / "a.png", grey())
    save(tmp_path / "b.png", grey())
    csv = write_csv(tmp_path / "l.csv", ["path,label,split", "a.png,x,", "b.png,y, "])
    frame, _ = read_labels_csv(csv, tmp_path, None)
    assert "split" not in frame.columns


def test_check_header() -> None:
    csv, row = Path("l.csv"), [["a.png", "x"]]
    _check_header(csv, ["path", "label", "patient_id", "split"], row)
    for header, rows, message in (
        (["path", "label", "age"], row, r"unknown column\(s\) \['age'\]"),
        (["label"], row, r"missing column\(s\) \['path'\]"),
        (["path", "label", "path"], row, r"column\(s\) \['path'\] appear more than once"),
        (["path", "label"], [], "no rows"),
    ):
        with pytest.raises(InputError, match=message):
            _check_header(csv, header, rows)


def test_row_cells_pads_short_rows_and_needs_path_and_label() -> None:
    csv, header = Path("l.csv"), ["path", "label", "split"]
    assert _row_cells(csv, 3, ["a.png", "x"], header) == {"path": "a.png", "label": "x", "split": ""}
    with pytest.raises(InputError, match="row 3: 4 cells but the header has 3 columns"):
        _row_cells(csv, 3, ["a.png", "x", "train", "more"], header)
    with pytest.raises(InputError, match="row 3: empty path"):
        _row_cells(csv, 3, ["", "x"], header)
    with pytest.raises(InputError, match=r"row 3: empty label for a\.png"):
        _row_cells(csv, 3, ["a.png"], header)


def test_row_paths_stay_inside_the_root(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "l.csv", ["path,label", "d/../a.png,x", f"{tmp_path / 'b.png'},y"])
    save(tmp_path / "a.png", grey())
    save(tmp_path / "b.png", grey())
    frame, _ = read_labels_csv(csv, tmp_path, None)
    assert frame["path"].tolist() == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    write_csv(csv, ["path,label", "a.png,x", "../a.png,y"])
    with pytest.raises(
        InputError, match=rf"l\.csv: row 2: path '\.\./a\.png' leads outside {re.escape(str(tmp_path))}$"
    ):
        read_labels_csv(csv, tmp_path, None)
    write_csv(csv, ["path,label", "a.png,x", "a\x00.png,y"])
    with pytest.raises(InputError, match=r"row 2: path 'a\\x00\.png' contains a NUL byte"):
        read_labels_csv(csv, tmp_path, None)


def test_check_splits_all_or_none() -> None:
    csv = Path("l.csv")
    records = [{"row": 1, "split": ""}, {"row": 2, "split": ""}]
    _check_splits(csv, records)
    assert records == [{"row": 1}, {"row": 2}]  # an empty split column counts as absent
    _check_splits(csv, [{"row": 1, "split": "train"}, {"row": 2, "split": "test"}])
    with pytest.raises(InputError, match="row 2: empty split"):
        _check_splits(csv, [{"row": 1, "split": "train"}, {"row": 2, "split": ""}])
    with pytest.raises(InputError, match="row 1: split 'dev' is not one of train, val, test"):
        _check_splits(csv, [{"row": 1, "split": "dev"}])


def test_assign_labels_configured_or_sorted() -> None:
    csv = Path("l.csv")
    records = [{"row": 1, "label_name": "10"}, {"row": 2, "label_name": "2"}]
    assert _assign_labels(csv, records, None) == ["2", "10"]
    assert [r["label"] for r in records] == [1, 0]
    assert _assign_labels(csv, records, [10, 2, 5]) == ["10", "2", "5"]  # configured names as strings
    assert [r["label"] for r in records] == [0, 1]
    with pytest.raises(InputError, match="row 2: label '2' is not one of the configured classes"):
        _assign_labels(csv, records, ["10"])


# --------------------------------------------------------------------------- load_source


def test_load_16bit_png_normalises_by_dtype(tmp_path: Path) -> None:
    a = np.zeros((8, 8), np.uint16)
    a[0, 0], a[0, 1], a[0, 2] = 65535, 60000, 0
    save(tmp_path / "d" / "x16.png", a)
    save(tmp_path / "d" / "x8.png", np.full((8, 8), 255, np.uint8))
    csv = write_csv(tmp_path / "d" / "labels.csv", ["path,label", "x16.png,a", "x8.png,b"])
    ss = load(tmp_path, csv, size=8)
    assert ss.shape == (1, 8, 8) and ss.source_format == "images"
    img = ss.images[0, 0]
    assert img[0, 0] == pytest.approx(1.0)
    assert img[0, 1] == pytest.approx(60000 / 65535 * 2 - 1, abs=1e-6)
    assert img[0, 2] == pytest.approx(-1.0)
    m = ss.manifest
    assert m["intensity_lo"].tolist() == [0.0, 0.0] and m["intensity_hi"].tolist() == [65535.0, 255.0]
    assert m["source"].tolist() == ["d/x16.png", "d/x8.png"]
    assert m["source_format"].tolist() == ["png", "png"]
    assert np.all(ss.images[1] == 1.0)
    assert ss.info["n_files"] == 2 and ss.info["raw_range"] == [0.0, 65535.0]
    assert ss.classes == ["a", "b"] and m["label"].tolist() == [0, 1]


def test_load_float_tiff_uses_minmax_and_rejects_nan(tmp_path: Path) -> None:
    f = np.linspace(-3.0, 5.0, 64, dtype=np.float32).reshape(8, 8)
    tifffile.imwrite(tmp_path / "f.tif", f)
    csv = write_csv(tmp_path / "labels.csv", ["path,label", "f.tif,a"])
    ss = load(tmp_path, csv, size=8)
    assert ss.images[0, 0, 0, 0] == pytest.approx(-1.0) and ss.images[0, 0, -1, -1] == pytest.approx(1.0)
    assert ss.manifest["intensity_mode"][0] == "minmax"
    assert ss.manifest["source_format"][0] == "tiff"
    f[2, 3] = np.nan
    tifffile.imwrite(tmp_path / "f.tif", f)
    with pytest.raises(InputError, match=r"f\.tif: contains 1 NaN"):
        load(tmp_path, csv, size=8)


def test_load_resizes_different_sizes(tmp_path: Path) -> None:
    save(tmp_path / "small one.png", grey(10, 14))
    save(tmp_path / "big.png", grey(40, 50))
    csv = write_csv(tmp_path / "labels.csv", ["path,label", "small one.png,a", "big.png,b"])
    ss = load(tmp_path, csv, size=32)
    assert ss.images.shape == (2, 1, 32, 32)
    assert ss.images.dtype == np.float32 and ss.images.min() >= -1 and ss.images.max() <= 1
    assert ss.manifest["rows"].tolist() == [10, 40] and ss.manifest["cols"].tolist() == [14, 50]
    with pytest.raises(InputError, match="different sizes"):
        load(tmp_path, csv, size=None)


def test_load_mixed_channels(tmp_path: Path) -> None:
    g = grey(8, 8)
    save(tmp_path / "g.png", g)
    rgb = np.stack([g, 255 - g, g // 2], -1)
    save(tmp_path / "c.png", rgb)
    save(tmp_path / "grey-rgb.png", np.stack([g, g, g], -1))
    csv = write_csv(tmp_path / "labels.csv", ["path,label", "g.png,a", "c.png,a"])
    # one colour file among grey ones: which channels is meant? refused, the file named
    with pytest.raises(InputError, match=r"1 of 2 images are colour \(e\.g\. .*c\.png\).*data\.channels"):
        load(tmp_path, csv, size=8)
    # an RGB file whose channels are equal is grey: the set stays 1-channel
    grey_csv = write_csv(tmp_path / "grey.csv", ["path,label", "g.png,a", "grey-rgb.png,a"])
    assert load(tmp_path, grey_csv, size=8).shape == (1, 8, 8)
    ss = load(tmp_path, csv, size=8, channels=3)
    assert ss.shape == (3, 8, 8)
    np.testing.assert_allclose(ss.images[0, 0], ss.images[0, 2])  # grey repeated
    ss1 = load(tmp_path, csv, size=8, channels=1)
    assert ss1.shape == (1, 8, 8)
    np.testing.assert_allclose(ss1.images[0, 0], g / 255 * 2 - 1, atol=1e-6)


def test_load_keeps_official_split(tmp_path: Path) -> None:
    lines = ["path,label,split"]
    for i, s in enumerate(["train", "train", "val", "test", "TEST"]):
        save(tmp_path / f"i{i}.png", grey())
        lines.append(f"i{i}.png,{i % 2},{s}")
    ss = load(tmp_path, write_csv(tmp_path / "labels.csv", lines))
    assert ss.manifest["split"].tolist() == ["train", "train", "val", "test", "test"]
    assert len(ss.split("train")) == 2


def test_load_groups_by_patient(tmp_path: Path) -> None:
    lines = ["path,label,patient_id"]
    for i in range(30):
        save(tmp_path / "img" / f"{i:02d}.png", grey(8, 8, seed=i))
        lines.append(f"img/{i:02d}.png,{'lesion' if i % 2 else 'healthy'},P{i % 10}")
    ss = load(tmp_path, write_csv(tmp_path / "labels.csv", lines))
    m = ss.manifest
    assert m["patient_id"].tolist()[:3] == ["P0", "P1", "P2"]
    per_patient = m.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    assert set(m["split"]) == {"train", "val", "test"}


def test_load_keeps_duplicates_together(tmp_path: Path) -> None:
    lines = ["path,label,patient_id"]
    for i in range(20):
        save(tmp_path / f"u{i}.png", grey(8, 8, seed=100 + i))
        lines.append(f"u{i}.png,{i % 2},Q{i}")
    dup = save(tmp_path / "dup0.png", grey(8, 8, seed=7))
    for k in range(1, 4):
        (tmp_path / f"dup{k}.png").write_bytes(dup.read_bytes())
    lines += [f"dup{k}.png,{k % 2},D{k}" for k in range(4)]
    ss = load(tmp_path, write_csv(tmp_path / "labels.csv", lines))
    m = ss.manifest
    dups = m[m["source"].str.startswith("dup")]
    assert len(dups) == 4 and dups["sha1"].nunique() == 1
    assert dups["split"].nunique() == 1


def test_load_without_patient_id_each_image_its_own_group(tmp_path: Path) -> None:
    lines = ["path,label"]
    for i in range(10):
        save(tmp_path / f"{i}.bmp", grey(8, 8, seed=i))
        lines.append(f"{i}.bmp,{i % 2}")
    ss = load(tmp_path, write_csv(tmp_path / "labels.csv", lines))
    assert ss.manifest["patient_id"].isna().all()
    assert set(ss.manifest["source_format"]) == {"bmp"}
    assert len(ss) == 10


def test_load_root_option(tmp_path: Path) -> None:
    save(tmp_path / "pics" / "a.png", grey())
    csv = write_csv(tmp_path / "meta" / "labels.csv", ["path,label", "a.png,x"])
    ss = load(tmp_path, csv, source={"root": "pics"})
    assert ss.manifest["source"].tolist() == ["pics/a.png"]


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def two_images(tmp_path: Path) -> Path:
    save(tmp_path / "a.png", grey())
    save(tmp_path / "b.png", grey())
    return tmp_path


def test_error_missing_file(two_images: Path) -> None:
    csv = write_csv(
        two_images / "labels.csv", ["path,label", "a.png,x", "nope.png,x", "b.png,y", "also gone.png,y"]
    )
    with pytest.raises(InputError, match=r"labels\.csv: row 2: file not found: nope\.png \(2 of 4"):
        load(two_images, csv)


def test_error_label_not_configured(two_images: Path) -> None:
    csv = write_csv(two_images / "labels.csv", ["path,label", "a.png,x", "b.png,z"])
    with pytest.raises(
        InputError, match=r"labels\.csv: row 2: label 'z' is not one of the configured classes"
    ):
        load(two_images, csv, source={"classes": ["x", "y"]})


def test_error_unknown_column(two_images: Path) -> None:
    csv = write_csv(two_images / "labels.csv", ["path,label,age", "a.png,x,3"])
    with pytest.raises(InputError, match=r"labels\.csv: unknown column\(s\) \['age'\]"):
        load(two_images, csv)


def test_error_missing_label_column(two_images: Path) -> None:
    csv = write_csv(two_images / "labels.csv", ["path", "a.png"])
    with pytest.raises(InputError, match=r"labels\.csv: missing column\(s\) \['label'\]"):
        load(two_images, csv)


def test_error_non_image_listed(two_images: Path) -> None:
    (two_images / "readme.png").write_text("hello")
    csv = write_csv(two_images / "labels.csv", ["path,label", "a.png,x", "readme.png,y"])
    with pytest.raises(InputError, match=r"readme\.png: not an image file"):
        load(two_images, csv)


def test_error_truncated_png(two_images: Path) -> None:
    good = save(two_images / "big.png", grey(64, 64))
    (two_images / "broken.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    csv = write_csv(two_images / "labels.csv", ["path,label", "a.png,x", "broken.png,y"])
    with pytest.raises(InputError, match=r"broken\.png: image file is truncated or corrupt"):
        load(two_images, csv)


def test_error_path_escapes_root(tmp_path: Path) -> None:
    save(tmp_path / "outside.png", grey())
    csv = write_csv(tmp_path / "sub" / "labels.csv", ["path,label", "../outside.png,x"])
    with pytest.raises(InputError, match=r"labels\.csv: row 1: path '\.\./outside\.png' leads outside"):
        load(tmp_path, csv)
    # an absolute path outside the root is refused too; inside it, it is allowed
    write_csv(csv, ["path,label", f"{tmp_path / 'outside.png'},x"])
    with pytest.raises(InputError, match=r"row 1: path '/.*outside\.png' leads outside"):
        load(tmp_path, csv)
    save(tmp_path / "sub" / "inside.png", grey())
    write_csv(csv, ["path,label", f"{tmp_path / 'sub' / 'inside.png'},x"])
    assert len(load(tmp_path, csv)) == 1


def test_error_empty_csv(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "labels.csv", ["path,label"])
    with pytest.raises(InputError, match=r"labels\.csv: no rows"):
        load(tmp_path, csv)
    csv.write_text("")
    with pytest.raises(InputError, match=r"labels\.csv: empty file"):
        load(tmp_path, csv)


def test_error_bad_split(two_images: Path) -> None:
    csv = write_csv(two_images / "labels.csv", ["path,label,split", "a.png,x,train", "b.png,y,holdout"])
    with pytest.raises(
        InputError, match=r"labels\.csv: row 2: split 'holdout' is not one of train, val, test"
    ):
        load(two_images, csv)
    write_csv(csv, ["path,label,split", "a.png,x,train", "b.png,y,"])
    with pytest.raises(InputError, match=r"labels\.csv: row 2: empty split"):
        load(two_images, csv)


def test_error_listed_twice(two_images: Path) -> None:
    csv = write_csv(two_images / "labels.csv", ["path,label", "a.png,x", "./a.png,y"])
    with pytest.raises(InputError, match=r"labels\.csv: row 2: \./a\.png is listed again \(first on row 1\)"):
        load(two_images, csv)


# --------------------------------------------------------------------------- links and special files


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """``root/`` holding a.png, a link leading out to a PNG (``out.png``), a linked folder outside
    (``ext/``), a link to /etc/passwd, and a link to a PNG inside the root (``alias.png``)."""
    root = tmp_path / "root"
    save(root / "a.png", grey())
    save(root / "store" / "b.png", grey())
    save(tmp_path / "outside" / "c.png", grey())
    (root / "out.png").symlink_to(tmp_path / "outside" / "c.png")
    (root / "ext").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "passwd.png").symlink_to("/etc/passwd")
    (root / "alias.png").symlink_to(root / "store" / "b.png")
    return root


@pytest.mark.parametrize("rel", ["out.png", "ext/c.png", "passwd.png"])
def test_csv_row_linked_outside_the_root_is_refused_before_opening(linked: Path, rel: str) -> None:
    csv = write_csv(linked / "labels.csv", ["path,label", "a.png,x", f"{rel},y"])
    with pytest.raises(InputError) as exc:
        load(linked, csv)
    msg = str(exc.value)
    assert msg.startswith(f"{csv}: row 2: path {rel!r} leads outside {linked} (a symbolic link to ")
    assert "\n" not in msg


def test_csv_row_linked_inside_the_root_is_read(linked: Path) -> None:
    csv = write_csv(linked / "labels.csv", ["path,label", "a.png,x", "alias.png,y"])
    ss = load(linked, csv)
    assert len(ss) == 2 and ss.manifest["source"].tolist() == ["a.png", "store/b.png"]


def test_csv_row_that_is_a_fifo_or_device_is_refused_without_blocking(tmp_path: Path) -> None:
    from tests.test_paths import no_hang

    save(tmp_path / "a.png", grey())
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "sub" / "real_pipe")
    (tmp_path / "linked_pipe.png").symlink_to(tmp_path / "sub" / "real_pipe")  # a link inside the root
    for rel in ("pipe.png", "linked_pipe.png"):
        csv = write_csv(tmp_path / "labels.csv", ["path,label", "a.png,x", f"{rel},y"])
        with no_hang(), pytest.raises(InputError) as exc:
            load(tmp_path, csv)
        assert str(exc.value) == f"{csv}: row 2: {rel} is not a regular file (a device, FIFO or socket)"
    os.mkfifo(tmp_path / "fifo.csv")
    with no_hang(), pytest.raises(InputError, match=r"fifo\.csv: is not a regular file"):
        load(tmp_path, tmp_path / "fifo.csv")


# --------------------------------------------------------------------------- Pillow's limit and warnings


def test_our_voxel_limit_decides_not_pillows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's own limit (lowered here to stand for its default of ~89 M pixels, which a genuine
    20000 x 20000 slide exceeds) no longer refuses what MEDGAN_MAX_VOXELS allows."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses above 200 pixels
    files = [
        save(tmp_path / "g.png", grey(30, 30)),
        save(tmp_path / "g.jpg", grey(30, 30)),
        save(tmp_path / "g.bmp", grey(30, 30)),
    ]
    monkeypatch.setenv("MEDGAN_MAX_VOXELS", "1000")
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # not even Pillow's DecompressionBombWarning
            assert read_image(f).shape == (1, 30, 30)
    assert Image.MAX_IMAGE_PIXELS == 100  # Pillow's setting is restored after each read


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_too_many_pixels_is_refused_with_our_limit_and_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    f = save(tmp_path / f"big{suffix}", grey(100, 100))
    monkeypatch.setenv("MEDGAN_MAX_VOXELS", "1000")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError) as exc:
            read_image(f)
    msg = str(exc.value)
    assert msg.startswith(f"{f}: the ") and "more than the limit of 1,000" in msg
    assert msg.endswith("(raise MEDGAN_MAX_VOXELS if the file is genuine)") and "\n" not in msg
    # raised, the limit lets the image load, even where Pillow's own limit would refuse it
    monkeypatch.setenv("MEDGAN_MAX_VOXELS", "20000")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert read_image(f).shape == (1, 100, 100)
    assert capsys.readouterr().err == ""


def test_pillow_warnings_are_named_not_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    """An EXIF block whose tag claims more data than it holds makes Pillow warn ("Tag data larger
    than file. Skipping tag 270"); the image still loads, and the warning becomes one named line
    in the set's warnings instead of text on stderr."""
    ifd = struct.pack("<2sHIH", b"II", 42, 8, 1) + struct.pack("<HHIII", 0x010E, 2, 1000, 26, 0)
    for name in ("e1.png", "e2.jpg"):
        save(tmp_path / name, grey(), exif=b"Exif\x00\x00" + ifd)
    save(tmp_path / "a.png", grey())
    csv = write_csv(tmp_path / "labels.csv", ["path,label", "e1.png,x", "e2.jpg,y", "a.png,y"])
    ss = load(tmp_path, csv)
    assert len(ss) == 3
    assert [str(w.message) for w in recwarn] == []
    assert capsys.readouterr().err == ""
    assert ss.info["warnings"] == ["Tag data larger than file. Skipping tag 270 (2 files, first e1.png)"]
    notes: list[str] = []
    read_image(tmp_path / "e1.png", notes)
    assert notes == ["Tag data larger than file. Skipping tag 270"]


def test_formats_beyond_png_jpeg_tiff_bmp_are_refused_not_read_as_one_frame(tmp_path: Path) -> None:
    """An animated GIF would pass as its first frame: GIF (and any format outside the four the
    docs name) is a one-line error naming the file and the format."""
    frames = [Image.fromarray(grey(8, 8, seed=i)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match=r"anim\.gif: an animated GIF \(3 frames\); medgan reads PNG, JPEG"):
        read_image(tmp_path / "anim.gif")
    frames[0].save(tmp_path / "still.gif")
    with pytest.raises(InputError, match=r"still\.gif: a GIF image; medgan reads PNG, JPEG, TIFF or BMP"):
        read_image(tmp_path / "still.gif")
