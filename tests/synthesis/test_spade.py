"""Mask-conditioned synthesis (``model.kind: spade``, issue 28): masks drawn from a seed, pairs that
rebuild from checkpoint + label + seed, masks in every output, and MONAI's orientation in the plug-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medgan.cli import main
from medgan.config import config_from_dict
from medgan.config.kinds.spade import SPADEConfig
from medgan.errors import ConfigError, InputError
from medgan.generate import generate
from medgan.synthesis import registry
from medgan.synthesis.spade import MaskBank, conditioning_map, draw_masks, warp_masks
from medgan.train import train
from medgan.training.checkpoint import load_checkpoint
from tests.conftest import tiny_config, tiny_spade_config

#: No movement: a drawn mask is its source mask exactly.
STILL = {
    "mask_flip": False,
    "mask_rotate": 0.0,
    "mask_scale": (1.0, 1.0),
    "mask_shift": 0.0,
    "mask_elastic": 0.0,
}


def _l_shape(h: int = 16, w: int = 12) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[2:10, 2:4] = 1  # stem
    m[8:10, 2:9] = 1  # foot, to the right
    return m


def test_a_still_transform_keeps_the_mask_and_a_flip_mirrors_it() -> None:
    src = torch.from_numpy(_l_shape())[None, None]
    base = {
        "pick": 0,
        "flip": False,
        "angle": 0.0,
        "scale": 1.0,
        "shift": np.zeros(2),
        "field": np.zeros((2, 4, 4)),
    }
    assert torch.equal(warp_masks(src, [base])[0, 0], src[0, 0])
    flipped = warp_masks(src, [{**base, "flip": True}])[0, 0]
    assert torch.equal(flipped, src[0, 0].flip(-1))  # mirrored left-right, the foot now points left
    shifted = warp_masks(src, [{**base, "shift": np.array([0.25, 0.0])}])[
        0, 0
    ]  # a quarter of the width right
    assert torch.equal(shifted[:, 3:], src[0, 0, :, :-3])
    # a rotation of a non-square slice keeps the lesion's area (rotated in pixels, not sheared)
    rot = warp_masks(src, [{**base, "angle": 30.0}])[0, 0]
    assert abs(int(rot.sum()) - int(src.sum())) <= 0.2 * int(src.sum())


def test_drawn_masks_depend_only_on_their_own_seed_and_class() -> None:
    cfg = SPADEConfig(kind="spade")
    rng = np.random.default_rng(0)
    masks = torch.from_numpy((rng.random((6, 1, 16, 16)) > 0.6).astype(np.uint8))
    bank = MaskBank(masks, torch.tensor([0, 0, 0, 1, 1, 1]), [f"m{i}" for i in range(6)])
    both, src, tr = draw_masks(bank, [0, 1, 1], [5, 6, 7], cfg)
    alone, src1, tr1 = draw_masks(bank, [1], [6], cfg)
    assert torch.equal(both[1], alone[0]) and src[1] == src1[0] and tr[1] == tr1[0]
    assert src[0] in {"m0", "m1", "m2"} and src[1] in {"m3", "m4", "m5"}  # a class draws its own masks
    again, _, _ = draw_masks(bank, [0, 1, 1], [5, 6, 7], cfg)
    assert torch.equal(both, again)


def test_the_conditioning_map_holds_background_lesion_and_class() -> None:
    m = torch.zeros((2, 1, 4, 4), dtype=torch.uint8)
    m[1, 0, 1, 1] = 1
    seg = conditioning_map(m, torch.tensor([0, 2]), 3)
    assert seg.shape == (2, 5, 4, 4)
    assert seg[1, 1, 1, 1] == 1 and seg[1, 0, 1, 1] == 0 and seg[1, 1].sum() == 1
    assert torch.all(seg[0, 2] == 1) and torch.all(seg[1, 4] == 1) and seg[1, 2:4].sum() == 0


def test_pairs_rebuild_from_checkpoint_label_and_seed(tiny_spade_checkpoint: Path) -> None:
    synth = registry.load_pair_sampler(tiny_spade_checkpoint)
    assert synth.classes == ["normal", "lesion"] and synth.shape == (1, 16, 16)
    a = synth.generate_pairs([1, 0, 1], [11, 12, 13])
    b = synth.generate_pairs([1], [13])
    # the mask exactly; the image up to float rounding, which can differ with the batch's other items
    assert torch.equal(a.masks[2], b.masks[0]) and torch.allclose(a.images[2], b.images[0], atol=1e-5)
    assert torch.equal(
        synth.generate_pairs([1, 0, 1], [11, 12, 13]).images, a.images
    )  # same batch: same bits
    assert a.images.min() >= -1 and a.images.max() <= 1 and a.masks.dtype == torch.uint8
    assert int(a.masks[1].sum()) == 0  # the normal class draws from its own (empty) masks
    assert int(a.masks[0].sum()) > 0 and a.mask_sources[0].startswith("pairs/img")
    assert torch.equal(synth.generate([1, 0, 1], [11, 12, 13]), a.images)
    # the bank and where each mask came from are in the checkpoint
    tensors, meta = load_checkpoint(tiny_spade_checkpoint)
    assert tensors["masks.bank"].dtype == torch.uint8 and len(meta["state_info"]["mask_sources"]) == len(
        tensors["masks.bank"]
    )


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tiny_pairs_dir: Path, tmp_path: Path) -> None:
    full = train(config_from_dict(tiny_spade_config(steps=4)), tmp_path / "full", tiny_pairs_dir)
    train(config_from_dict(tiny_spade_config(steps=2)), tmp_path / "half", tiny_pairs_dir)
    resumed = train(
        config_from_dict(tiny_spade_config(steps=4)), tmp_path / "half", tiny_pairs_dir, resume=True
    )
    t_full, _ = load_checkpoint(full)
    t_res, _ = load_checkpoint(resumed)
    for key in ("dec_ema.fc.weight", "g.encoder.fc_mu.weight", "d.discriminator_0.initial_conv.conv.weight"):
        hits = [k for k in t_full if k.startswith(key.rsplit(".", 1)[0])]
        assert hits, key
        for k in hits:
            assert torch.equal(t_full[k], t_res[k]), k


def test_data_without_masks_is_refused_in_one_line(tiny_data_dir: Path, tmp_path: Path) -> None:
    cfg = config_from_dict({**tiny_config(), "model": tiny_spade_config()["model"]})
    with pytest.raises(InputError, match=r"model.kind 'spade' draws slices from lesion masks"):
        train(cfg, tmp_path / "run", tiny_data_dir)


@pytest.mark.parametrize("fmt", ["png", "nifti", "npz", "dicom"])
def test_every_output_format_carries_each_images_mask_and_its_provenance(
    tiny_spade_checkpoint: Path, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / fmt
    m = generate(tiny_spade_checkpoint, out, 3, fmt=fmt, seed=4)
    assert {"mask", "mask_source", "mask_transform", "lesion_px"} <= set(m.columns)
    synth = registry.load_pair_sampler(tiny_spade_checkpoint)
    pairs = synth.generate_pairs(m["label"].tolist(), m["seed"].tolist())
    assert m["lesion_px"].tolist() == pairs.masks.flatten(1).sum(1).tolist()
    assert m["mask_source"].tolist() == pairs.mask_sources
    on_disk = pd.read_csv(out / "manifest.csv")
    assert on_disk["mask"].tolist() == m["mask"].tolist()
    if fmt == "npz":
        shard = np.load(out / m["path"].iloc[0])
        assert np.array_equal(shard["masks"], pairs.masks.numpy())
        return
    for row, mask in zip(m.itertuples(), pairs.masks, strict=True):
        if fmt == "nifti":
            import nibabel as nib

            got = np.asarray(nib.load(out / row.mask).dataobj)[:, :, 0].T  # (W, H, 1) on disk
            assert got.dtype == np.uint8 and np.array_equal(got, mask[0].numpy())
        else:
            got = np.asarray(Image.open(out / row.mask))
            assert np.array_equal(got, mask[0].numpy() * 255)


def test_a_generation_missing_a_mask_resumes_to_the_same_bytes(
    tiny_spade_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "g"
    m = generate(tiny_spade_checkpoint, out, 2, seed=1)
    first = {p: (out / p).read_bytes() for p in [*m["path"], *m["mask"]]}
    (out / m["mask"].iloc[1]).unlink()
    (out / m["path"].iloc[2]).unlink()
    generate(tiny_spade_checkpoint, out, 2, seed=1)
    assert {p: (out / p).read_bytes() for p in first} == first


def test_a_mask_folder_draws_the_lesions_where_its_masks_say(
    tiny_spade_checkpoint: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "masks"
    folder.mkdir()
    Image.fromarray(_l_shape(16, 16) * 255).save(folder / "l.png")
    cfg_still = tmp_path / "g"
    synth = registry.load_pair_sampler(tiny_spade_checkpoint)
    synth.use_masks(folder)
    synth.model_cfg = synth.model_cfg.model_copy(update=STILL)  # type: ignore[attr-defined]
    pairs = synth.generate_pairs([0, 1], [3, 4])
    assert all(np.array_equal(m[0].numpy(), _l_shape(16, 16)) for m in pairs.masks)
    assert pairs.mask_sources == ["l.png", "l.png"]
    m = generate(tiny_spade_checkpoint, cfg_still, 1, masks=folder)
    assert set(m["mask_source"]) == {"l.png"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no mask images"):
        generate(tiny_spade_checkpoint, tmp_path / "h", 1, masks=tmp_path / "empty")


def test_a_kind_without_masks_is_refused_for_pairs(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from medgan.monai import SyntheticDataset

    with pytest.raises(ConfigError, match=r"model.kind: 'cgan' .* makes slices without masks; spade"):
        generate(tiny_checkpoint, tmp_path / "g", 1, masks=tmp_path)
    with pytest.raises(ConfigError, match=r"makes slices without masks"):
        SyntheticDataset(tiny_checkpoint, n_per_class=1, pairs=True)
    rc = main(
        [
            "generate",
            "--checkpoint",
            str(tiny_checkpoint),
            "--n-per-class",
            "1",
            "--out",
            str(tmp_path / "c"),
            "--masks",
            str(tmp_path),
        ]
    )
    assert rc == 2


@pytest.mark.parametrize("fmt", ["nifti", "png"])
def test_the_plugin_gives_image_and_mask_as_monai_loads_the_written_files(
    tiny_spade_checkpoint: Path, tmp_path: Path, fmt: str
) -> None:
    """An asymmetric lesion (an L) drawn with no movement: ``SyntheticDataset(pairs=True)`` items equal
    what MONAI's ``LoadImaged`` + ``EnsureChannelFirstd`` give for the files ``medgan generate`` writes."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityd, SqueezeDimd

    from medgan.monai import SyntheticDataset

    folder = tmp_path / "masks"
    folder.mkdir()
    Image.fromarray(_l_shape(16, 16) * 255).save(folder / "l.png")
    out = tmp_path / fmt
    m = generate(tiny_spade_checkpoint, out, 2, fmt=fmt, seed=9, masks=folder)
    ds = SyntheticDataset(tiny_spade_checkpoint, n_per_class=2, seed=9, pairs=True, masks=folder)
    keys = ["image", "label"]
    read = [LoadImaged(keys), EnsureChannelFirstd(keys)]
    squeeze = [SqueezeDimd(keys, dim=-1)] if fmt == "nifti" else []  # a NIfTI slice is (W, H, 1)
    load = Compose([*read, *squeeze])
    for i, row in enumerate(m.itertuples()):
        raw = load({"image": str(out / row.path), "label": str(out / row.mask)})
        ref = ScaleIntensityd("image")(dict(raw))
        item = ds[i]
        assert item["class"] == row.label and item["seed"] == row.seed and item["mask_source"] == "l.png"
        assert (
            item["label"].shape == ref["label"].shape == (1, 16, 16) and item["label"].dtype == torch.float32
        )
        want = ref["label"] / 255.0 if fmt == "png" else ref["label"]
        assert torch.equal(torch.as_tensor(item["label"]), torch.as_tensor(want).float())
        # NIfTI holds float32: equal up to float rounding; PNG 8-bit levels: within one level of its range
        levels = float(raw["image"].max() - raw["image"].min()) if fmt == "png" else 1e5
        torch.testing.assert_close(
            item["image"].as_tensor(), ref["image"].as_tensor().float(), atol=1 / levels, rtol=0
        )
    # MONAI's first spatial axis runs along the image's columns: the L's foot (a row of the
    # drawn mask) is a column of the tensor
    drawn = registry.load_pair_sampler(tiny_spade_checkpoint)
    drawn.use_masks(folder)
    assert np.array_equal(
        ds[0]["label"][0].numpy(), drawn.draw_masks([0], [int(m["seed"].iloc[0])])[0][0, 0].numpy().T
    )


@pytest.mark.parametrize("fmt", ["png", "nifti"])
def test_augment_writes_a_segmentation_set_whose_datalist_monai_loads(
    tiny_spade_checkpoint: Path, tiny_pairs_dir: Path, tmp_path: Path, fmt: str
) -> None:
    from monai.data import Dataset, load_decathlon_datalist
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from medgan.augment import augment

    d = tiny_spade_config()
    d["augment"] = {"checkpoints": [str(tiny_spade_checkpoint)], "ratio": 1.0, "format": fmt}
    out = tmp_path / "aug"
    m = augment(config_from_dict(d), out, tiny_pairs_dir)
    assert m["mask"].notna().all() and set(m["source"]) == {"real", "synthetic"}
    entries = load_decathlon_datalist(str(out / "datalist.json"), data_list_key="training", base_dir=str(out))
    assert {int(e["class"]) for e in entries} == {0, 1} and all(
        e["label"].endswith(("png", ".nii.gz")) for e in entries
    )
    ds = Dataset(entries, Compose([LoadImaged(["image", "label"]), EnsureChannelFirstd(["image", "label"])]))
    lesion = 0
    for item in ds:
        assert item["label"].shape == item["image"].shape  # image and mask on one grid
        lesion += int(item["class"] == 1 and item["label"].max() > 0)
    assert lesion > 0
    # the real masks are the data's own: a real lesion's mask covers its bright L
    real = m[(m["source"] == "real") & (m["label"] == 1)].iloc[0]
    item = Compose([LoadImaged(["image", "label"]), EnsureChannelFirstd(["image", "label"])])(
        {"image": str(out / real["path"]), "label": str(out / real["mask"])}
    )
    img, mask = torch.as_tensor(item["image"]).float(), torch.as_tensor(item["label"]) > 0
    assert img[mask].mean() > img[~mask].mean() + 0.3 * (img.max() - img.min())


def test_a_spade_checkpoint_is_not_exported_as_a_bundle(tiny_spade_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match=r"'spade' .* cannot be exported as a MONAI bundle"):
        registry.load_exportable(tiny_spade_checkpoint)
