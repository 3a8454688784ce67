"""Lesion masks through the data layer: kept with their slices, resized by nearest neighbour on the
same pixel grid as the image, split and prepared with them, from image folders and volumes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medgan.config import config_from_dict
from medgan.data.prepare import load_prepared, write_prepared
from medgan.data.sources import load_source
from medgan.errors import InputError


def _folder(tmp_path: Path, n: int = 12, h: int = 10, w: int = 14) -> Path:
    """``n`` grey images with a bright lesion in an asymmetric place (top left, 3 x 5) and its mask;
    the label CSV has a mask column (all-0 masks for the healthy ones)."""
    lines = ["path,label,mask"]
    for i in range(n):
        img = np.full((h, w), 20, np.uint8)
        mask = np.zeros((h, w), np.uint8)
        if i % 2:
            img[1:4, 2:7] = 230
            mask[1:4, 2:7] = 255
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / f"{i}_mask.png")
        lines.append(f"{i}.png,{'lesion' if i % 2 else 'normal'},{i}_mask.png")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "labels.csv"


def _load(tmp_path: Path, csv: Path, **data: object):
    cfg = config_from_dict({"data": {"source": {"kind": "images", "labels_csv": str(csv)}, **data}})
    return load_source(cfg.data, tmp_path)


def test_an_image_folders_masks_stay_on_their_lesions_through_resizing_and_splits(tmp_path: Path) -> None:
    csv = _folder(tmp_path)
    ss = _load(tmp_path, csv)
    assert ss.masks is not None and ss.masks.shape == (12, 1, 10, 14) and ss.masks.dtype == np.uint8
    lesion = ss.manifest["label_name"].to_numpy() == "lesion"
    assert ss.masks[lesion].sum(axis=(1, 2, 3)).tolist() == [15] * 6 and ss.masks[~lesion].sum() == 0
    assert (ss.manifest["mask_px"].to_numpy() == np.where(lesion, 15, 0)).all()
    # resized to another size and aspect: the mask still covers the bright pixels, and only them
    big = _load(tmp_path, csv, size=[20, 21])
    m, x = big.masks[lesion][:, 0].astype(bool), big.images[lesion][:, 0]
    bright = x > 0.0  # half way between background and lesion, after bilinear resizing
    assert m.shape == (6, 20, 21) and x[m].mean() > 0.5
    iou = (m & bright).sum() / (m | bright).sum()
    assert iou > 0.8, iou
    for a, b in zip(m, bright, strict=True):  # the same place: centroids within half a pixel
        assert np.abs(np.argwhere(a).mean(0) - np.argwhere(b).mean(0)).max() < 0.5
    rows, cols = np.nonzero(m[0])
    assert rows.max() < 10 and cols.max() < 11  # top left, as drawn (not flipped or transposed)
    for name in ("train", "val", "test"):  # a split takes its masks along
        part = big.split(name)
        assert (
            len(part.masks) == len(part)
            and (part.masks.sum(axis=(1, 2, 3)) > 0).tolist()
            == (part.manifest["label_name"] == "lesion").tolist()
        )


def test_prepared_slices_keep_their_masks(tmp_path: Path) -> None:
    ss = _load(tmp_path, _folder(tmp_path), size=16)
    back = load_prepared(write_prepared(ss, tmp_path / "prepared"))
    assert np.array_equal(back.masks, ss.masks) and np.array_equal(back.images, ss.images)
    assert np.array_equal(back.split("test").masks, ss.split("test").masks)


def test_a_mask_that_cannot_be_the_images_is_refused(tmp_path: Path) -> None:
    csv = _folder(tmp_path, n=4)
    Image.fromarray(np.zeros((9, 14), np.uint8)).save(tmp_path / "1_mask.png")
    with pytest.raises(InputError, match=r"1_mask\.png: mask is 9x14, its image 1\.png is 10x14"):
        _load(tmp_path, csv)
    csv.write_text(csv.read_text().replace("1_mask.png", ""))
    with pytest.raises(InputError, match=r"labels\.csv: row 2: the mask column is empty"):
        _load(tmp_path, csv)
    csv.write_text(csv.read_text().replace(",2_mask.png", ",missing.png"))
    with pytest.raises(InputError, match=r"row \d: (the mask column is empty|mask file not found)"):
        _load(tmp_path, csv)


def test_a_volumes_mask_is_kept_for_its_kept_slices(tmp_path: Path) -> None:
    img = np.zeros((12, 10, 8), np.int16)
    img[2:10, 2:8, :] = 100
    mask = np.zeros_like(img, dtype=np.uint8)
    mask[3:5, 2:6, 3] = 2  # any nonzero label is lesion
    img[mask > 0] = 900
    img[:, :, 7] = 0  # an empty slice, dropped below
    nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp_path / "img.nii.gz"))
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(tmp_path / "mask.nii.gz"))
    src = {"kind": "nifti", "image": "img.nii.gz", "mask": "mask.nii.gz", "empty_threshold": 50}
    ss = load_source(config_from_dict({"data": {"source": src}}).data, tmp_path)
    assert len(ss) == 7 and ss.masks is not None and ss.masks.shape == (7, 1, *ss.shape[1:])
    k = ss.manifest.index[ss.manifest["slice_index"] == 3][0]
    on = ss.masks[k, 0].astype(bool)
    assert on.sum() == 8 and ss.masks.sum() == 8 and ss.images[k, 0][on].min() > ss.images[k, 0][~on].max()
    no_mask = load_source(
        config_from_dict({"data": {"source": {"kind": "nifti", "image": "img.nii.gz"}}}).data, tmp_path
    )
    assert no_mask.masks is None
