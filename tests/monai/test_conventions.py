"""One orientation and intensity convention, MONAI's, for what the plug-in yields and medgan writes.

The generator is replaced by an asymmetric pattern (a ramp plus an off-centre block that differs
by label and seed), so a transposed or flipped slice cannot pass. For the same
(checkpoint, label, seed), the tensor MONAI's default readers give for medgan's PNG and NIfTI
output equals the plug-in's tensor, and real slices written by ``medgan augment`` read the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityd, SqueezeDimd

from medgan.monai import MixedDataset, RandSyntheticReplaced, SyntheticDataset
from medgan.seeding import derive_seed
from medgan.synthesis.cgan import CGANSynthesizer

H, W = 16, 16
LOAD = Compose([LoadImaged("image"), EnsureChannelFirstd("image"), ScaleIntensityd("image")])


def pattern(label: int, seed: int) -> torch.Tensor:
    """(1, H, W) in [-1, 1] on the 8-bit grid (so PNG holds it exactly), asymmetric in every way."""
    r, c = np.mgrid[0:H, 0:W]
    img = (r * 3 + c) % 200 + 20
    top = 1 + seed % 5
    img[top : top + 4, 9 + label : 14 + label] = 250
    img[H - 2, 1] = 5
    return torch.from_numpy(img.astype(np.float32) / 255.0 * 2.0 - 1.0)[None]


@pytest.fixture()
def patterned(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(self: CGANSynthesizer, labels, seeds, batch_size=None, precision="fp32") -> torch.Tensor:
        return torch.stack([pattern(int(lab), int(s)) for lab, s in zip(labels, seeds, strict=True)])

    monkeypatch.setattr(CGANSynthesizer, "generate", fake)


def _plugin(ckpt: Path, label: int, k: int, seed: int = 0, **kw: object) -> torch.Tensor:
    ds = SyntheticDataset(ckpt, n_per_class=k + 1, seed=seed, device="cpu", **kw)
    i = [j for j in range(len(ds)) if ds.labels[j] == label][k]
    assert ds.seeds[i] == derive_seed(seed, label, k)
    return ds[i]["image"].as_tensor()


def test_png_and_nifti_read_by_monai_equal_the_plugin_tensor(
    tiny_checkpoint: Path, tmp_path: Path, patterned: None
) -> None:
    from medgan.generate import generate

    generate(tiny_checkpoint, tmp_path / "png", 2, seed=5, fmt="png", device="cpu")
    generate(tiny_checkpoint, tmp_path / "nii", 2, seed=5, fmt="nifti", device="cpu")
    for label in (0, 1):
        for k in (0, 1):
            want = _plugin(tiny_checkpoint, label, k, seed=5)
            assert want.shape == (1, W, H)
            png = next((tmp_path / "png" / "images").glob(f"{label:02d}-*-{k:06d}.png"))
            got = LOAD({"image": str(png)})["image"].as_tensor()
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
            nii = next((tmp_path / "nii" / "images").glob(f"{label:02d}-*-{k:06d}.nii.gz"))
            loaded = Compose([LOAD, SqueezeDimd("image", dim=-1)])({"image": str(nii)})["image"].as_tensor()
            torch.testing.assert_close(loaded, want, atol=1e-6, rtol=0)
            # the pattern is asymmetric: the array order (H, W) does not pass
            assert not torch.allclose(want, want.transpose(-1, -2))


def test_nifti_output_still_reads_back_as_drawn(
    tiny_checkpoint: Path, tmp_path: Path, patterned: None
) -> None:
    from medgan.generate import generate
    from medgan.io.nifti import read_case

    generate(tiny_checkpoint, tmp_path / "nii", 1, seed=5, fmt="nifti", device="cpu")
    nii = next((tmp_path / "nii" / "images").glob("01-*-000000.nii.gz"))
    vol = read_case(nii, None)
    slab = vol.data[0, 0]
    ref = pattern(1, derive_seed(5, 1, 0))[0].numpy()
    lo, hi = slab.min(), slab.max()
    np.testing.assert_allclose(
        (slab - lo) / (hi - lo), (ref - ref.min()) / (ref.max() - ref.min()), atol=1e-6
    )


def test_rand_synthetic_replaced_gives_what_the_png_route_gives(
    tiny_checkpoint: Path, tmp_path: Path, patterned: None
) -> None:
    from medgan.io.images import write_png

    real = tmp_path / "real.png"
    write_png(real, pattern(0, 99).numpy())
    tf = Compose([LOAD, RandSyntheticReplaced("image", str(tiny_checkpoint), prob=1.0)])
    tf.set_random_state(0)
    out = tf({"image": str(real), "label": 1})
    seed = out["image"].meta["seed"]
    write_png(tmp_path / "syn.png", pattern(1, seed).numpy())
    want = LOAD({"image": str(tmp_path / "syn.png")})["image"].as_tensor()
    torch.testing.assert_close(out["image"].as_tensor(), want, atol=1e-6, rtol=0)


def test_misplaced_transform_error_is_in_monais_message(
    tiny_checkpoint: Path, tmp_path: Path, patterned: None
) -> None:
    from monai.transforms import Resized

    from medgan.io.images import write_png

    write_png(tmp_path / "r.png", pattern(0, 1).numpy())
    tf = Compose(
        [LOAD, Resized("image", (32, 32)), RandSyntheticReplaced("image", str(tiny_checkpoint), prob=1.0)]
    )
    with pytest.raises(RuntimeError) as info:
        tf({"image": str(tmp_path / "r.png"), "label": 0})
    assert (
        "image: synthetic slice (1, 16, 16) differs from the sample (1, 32, 32); place RandSyntheticReplaced"
        in str(info.value)
    )


def test_augment_real_and_synthetic_pngs_read_like_the_plugin(
    tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path, patterned: None
) -> None:
    from medgan.augment import augment
    from medgan.config import config_from_dict
    from medgan.data.sources import load_source
    from tests.conftest import tiny_config

    raw = tiny_config()
    raw["augment"] = {"checkpoints": [str(tiny_checkpoint)], "ratio": 0.5, "seed": 3}
    cfg = config_from_dict(raw)
    m = augment(cfg, tmp_path / "aug", tiny_data_dir)
    ss = load_source(cfg.data, tiny_data_dir)
    real = m[m["source"] == "real"].iloc[0]
    got = LOAD({"image": str(tmp_path / "aug" / real["path"])})["image"].as_tensor()
    arr = torch.from_numpy(ss.images[int(Path(real["path"]).stem)])  # files are named by slice id
    want = ((arr - arr.min()) / (arr.max() - arr.min())).transpose(-1, -2)
    torch.testing.assert_close(got, want, atol=2.5 / 255, rtol=0)  # 8-bit rounding of the written file
    assert not torch.allclose(got, want.transpose(-1, -2), atol=2.5 / 255)
    syn = m[m["source"] == "synthetic"].iloc[0]
    got = LOAD({"image": str(tmp_path / "aug" / syn["path"])})["image"].as_tensor()
    ref = pattern(int(syn["label"]), int(syn["seed"]))
    want = ((ref - ref.min()) / (ref.max() - ref.min())).transpose(-1, -2)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # real rows carry seed -1, so the column stays integer (64-bit seeds survive pandas)
    import pandas as pd

    back = pd.read_csv(tmp_path / "aug" / "manifest.csv")
    assert back["seed"].dtype == np.int64 and int(
        back.loc[back["source"] == "synthetic", "seed"].iloc[0]
    ) == int(syn["seed"])


@pytest.mark.parametrize(
    "real_label",
    [
        0,
        np.int64(0),
        np.array([0]),
        np.array(0),
        torch.tensor([0]),
        np.array([1.0, 0.0], np.float32),
        torch.tensor([1, 0]),
    ],
    ids=["int", "np-scalar", "array(1,)", "array()", "tensor(1,)", "one-hot-array", "one-hot-tensor"],
)
def test_mixed_dataset_yields_labels_in_the_users_shape_and_float32_weights(
    tiny_checkpoint: Path, tmp_path: Path, patterned: None, real_label: object
) -> None:
    from medgan.io.images import write_png

    files = []
    for i in range(6):
        write_png(tmp_path / f"{i}.png", pattern(i % 2, i).numpy())
        lab = real_label if i % 2 == 0 else _flip(real_label)
        files.append({"image": str(tmp_path / f"{i}.png"), "label": lab})
    syn = SyntheticDataset(tiny_checkpoint, n_per_class=6, device="cpu")
    mixed = MixedDataset(Dataset(files, LOAD), syn, ratio=1.0, seed=0)
    assert mixed.n_synthetic > 0
    shapes = {np.shape(np.asarray(mixed[i]["label"])) for i in range(len(mixed))}
    assert shapes == {np.shape(np.asarray(real_label))}
    for order in (range(len(mixed)), reversed(range(len(mixed)))):
        batch = next(iter(DataLoader(torch.utils.data.Subset(mixed, list(order)), batch_size=len(mixed))))
        assert batch["weight"].dtype == torch.float32
        assert batch["image"].shape == (len(mixed), 1, W, H)


def _flip(label: object) -> object:
    """Class 1 in the form of ``label`` (class 0)."""
    if isinstance(label, torch.Tensor | np.ndarray) and np.asarray(label).size > 1:
        return label.flip(0) if isinstance(label, torch.Tensor) else label[::-1].copy()
    if isinstance(label, torch.Tensor):
        return label + 1
    if isinstance(label, np.ndarray | np.generic):
        return label + 1
    return 1


def test_monai_classification_pipeline_mixes_in_the_same_orientation(
    tiny_checkpoint: Path, tmp_path: Path, patterned: None
) -> None:
    """The recipe's real PNG slices and its synthetic ones reach the network in one orientation."""
    from medgan.io.images import write_png
    from pipelines.monai_classification import datasets

    entries = []
    for i in range(4):
        write_png(tmp_path / f"r{i}.png", pattern(i % 2, derive_seed(0, i % 2, i // 2)).numpy())
        entries.append({"image": f"r{i}.png", "label": i % 2})
    (tmp_path / "dl.json").write_text(json.dumps({"training": entries, "validation": entries}))
    train_ds, _ = datasets(str(tmp_path / "dl.json"), str(tiny_checkpoint), ratio=1.0, seed=0, flip=False)
    items = [train_ds[i] for i in range(len(train_ds))]
    real = {
        Path(d["image"].meta["filename_or_obj"]).name: d["image"].as_tensor()
        for d in items
        if not d["synthetic"]
    }
    twins = 0
    for d in (d for d in items if d["synthetic"]):
        k = next((k for k in range(2) if derive_seed(0, d["label"], k) == d["seed"]), None)
        if k is None:
            continue
        name = f"r{2 * k + d['label']}.png"  # the real file drawn from the same (label, seed)
        torch.testing.assert_close(d["image"].as_tensor(), real[name], atol=1e-5, rtol=0)
        twins += 1
    assert twins > 0
