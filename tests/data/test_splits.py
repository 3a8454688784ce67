"""Seeded splits: stratified by label, grouped by patient, duplicates never straddle splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from medgan.data.splits import assign_splits


def _data(n_patients: int = 40, per: int = 5, seed: int = 0) -> tuple[list[int], list[str], list[str]]:
    rng = np.random.default_rng(seed)
    labels, pids, hashes = [], [], []
    for p in range(n_patients):
        lab = int(rng.random() < 0.3)
        for s in range(per):
            labels.append(lab)
            pids.append(f"p{p}")
            hashes.append(f"h{p}-{s}")
    return labels, pids, hashes


def test_no_patient_in_two_splits_and_fractions_roughly_met() -> None:
    labels, pids, hashes = _data()
    splits = assign_splits(labels, pids, hashes, (0.6, 0.2, 0.2), seed=1)
    by_patient: dict[str, set] = {}
    for p, s in zip(pids, splits, strict=True):
        by_patient.setdefault(p, set()).add(s)
    assert all(len(v) == 1 for v in by_patient.values())
    frac = {s: float(np.mean(splits == s)) for s in ("train", "val", "test")}
    assert abs(frac["train"] - 0.6) < 0.1 and abs(frac["val"] - 0.2) < 0.1 and abs(frac["test"] - 0.2) < 0.1


def test_label_stratification() -> None:
    labels, pids, hashes = _data(n_patients=60)
    splits = assign_splits(labels, pids, hashes, (0.7, 0.15, 0.15), seed=0)
    lab = np.asarray(labels)
    overall = lab.mean()
    for s in ("train", "val", "test"):
        assert abs(lab[splits == s].mean() - overall) < 0.12


def test_seeded_and_deterministic() -> None:
    labels, pids, hashes = _data()
    a = assign_splits(labels, pids, hashes, seed=3)
    b = assign_splits(labels, pids, hashes, seed=3)
    c = assign_splits(labels, pids, hashes, seed=4)
    assert (a == b).all()
    assert not (a == c).all()


def test_identical_images_of_different_patients_share_a_split() -> None:
    labels, pids, hashes = _data(n_patients=30, per=2)
    hashes[0] = hashes[-1] = "same-image"  # patient 0 and patient 29 share one image
    for seed in range(10):
        splits = assign_splits(labels, pids, hashes, seed=seed)
        assert splits[0] == splits[-1]
        # and so every slice of both patients is in that split
        assert set(splits[[0, 1, len(pids) - 2, len(pids) - 1]]) == {splits[0]}


def test_single_patient_goes_to_train() -> None:
    splits = assign_splits([0, 1, 0], ["a", "a", "a"], ["x", "y", "z"])
    assert list(splits) == ["train"] * 3


def test_group_numbering_follows_union_find_roots() -> None:
    """Pinned: a duplicate image linking two patients keeps the later-seen patient's root (not the first slice)."""
    from medgan.data.splits import _components

    # slices 0 and 5 are patient P, 2 and 3 patient Q; slices 3 and 5 are the same image: one group {0, 2, 3, 5}
    pids = ["P", "", "Q", "Q", "", "P"]
    hashes = ["a", "b", "c", "H", "d", "H"]
    assert _components(pids, hashes).tolist() == [1, 0, 1, 1, 2, 1]  # root 2 sorts after slice 1's group


def test_an_explicit_split_that_puts_a_patient_in_two_splits_is_refused_or_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A labels CSV whose ``split`` column puts one patient's slices in train, val and test leaks that
    patient into the test split: refused with one line naming the patient (exit 2 from the CLI);
    with ``data.splits.allow_patient_overlap`` it loads and inspect, prepare and the reports say so."""
    from PIL import Image

    from medgan.cli import main
    from medgan.config import config_from_dict
    from medgan.data.sources import load_source
    from medgan.errors import InputError
    from medgan.report import _data_section

    lines = ["path,label,patient_id,split"]
    rng = np.random.default_rng(0)
    for i, (pid, split) in enumerate(
        [("P1", "train"), ("P1", "val"), ("P1", "test"), ("P2", "train"), ("P3", "val"), ("P4", "test")]
    ):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png,{i % 2},{pid},{split}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    data = {"source": {"kind": "images", "labels_csv": "labels.csv"}, "size": 8}
    with pytest.raises(
        InputError, match=r"labels\.csv: the given split puts patient 'P1' in test, train, val"
    ):
        load_source(config_from_dict({"data": data}).data, tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": data}))
    assert main(["data", "inspect", str(cfg), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "allow_patient_overlap" in err

    allowed = {**data, "splits": {"allow_patient_overlap": True}}
    ss = load_source(config_from_dict({"data": allowed}).data, tmp_path)
    assert ss.info["patients_in_several_splits"] == 1
    cfg.write_text(yaml.safe_dump({"data": allowed}))
    assert main(["data", "inspect", str(cfg), "--data-dir", str(tmp_path)]) == 0
    assert "1 patient(s) have slices in more than one split" in capsys.readouterr().out
    out = tmp_path / "prepared"
    assert main(["data", "prepare", str(cfg), "--out", str(out), "--data-dir", str(tmp_path)]) == 0
    assert "more than one split" in capsys.readouterr().out
    from medgan.data.inspect import summarize

    assert any("more than one split" in line for line in _data_section(summarize(ss)))


def _scan(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A smooth random 'scan' (1, H, W) in [-1, 1]."""
    coarse = rng.uniform(-1, 1, (1, 1, 6, 6)).astype(np.float32)
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.from_numpy(coarse), size=(size, size), mode="bicubic")[0].clamp(-1, 1).numpy()


def test_near_duplicates_are_found_and_kept_in_one_split() -> None:
    """Frames of one scan (shifted a pixel, brighter, noisier) are one group; other scans are not."""
    from medgan.data.identity import near_duplicate_groups

    rng = np.random.default_rng(0)
    scans = [_scan(rng) for _ in range(30)]
    frames = [
        np.concatenate([scans[0][..., :1], scans[0][..., :-1]], axis=-1),  # shifted a pixel
        np.clip(scans[0] * 0.8 + 0.1, -1, 1),  # other gain and offset
        np.clip(scans[1] + rng.normal(0, 0.03, scans[1].shape), -1, 1).astype(np.float32),  # noisier
    ]
    images = np.stack([*scans, *frames, np.zeros_like(scans[0]), np.zeros_like(scans[0])])
    keys = near_duplicate_groups(images)
    assert keys[0] and keys[0] == keys[30] == keys[31]  # scan 0 and its two frames
    assert keys[1] and keys[1] == keys[32] and keys[1] != keys[0]
    assert all(k == "" for k in keys[2:30])  # unrelated scans stay alone
    assert keys[33] == keys[34] == ""  # blank slices carry no identity
    labels = [i % 2 for i in range(len(images))]
    for seed in range(5):  # each group lands in one split, whatever the seed
        split = assign_splits(
            labels, [f"p{i}" for i in range(len(images))], [""] * len(images), seed=seed, near=keys
        )
        assert split[0] == split[30] == split[31] and split[1] == split[32]


def test_inspect_counts_near_duplicates_in_an_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    from medgan.config import DataConfig
    from medgan.data.inspect import render_text, summarize
    from medgan.data.sources import load_source

    rng = np.random.default_rng(1)
    rows = ["path,label"]
    for i in range(12):
        img = ((_scan(rng)[0] + 1) * 127.5).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"s{i}.png")
        rows.append(f"s{i}.png,{'a' if i % 2 else 'b'}")
        if i < 3:  # a re-saved, slightly brighter frame of each of the first three
            Image.fromarray(np.clip(img.astype(int) + 6, 0, 255).astype(np.uint8)).save(
                tmp_path / f"s{i}_again.png"
            )
            rows.append(f"s{i}_again.png,{'a' if i % 2 else 'b'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = DataConfig.model_validate({"source": {"kind": "images", "labels_csv": "labels.csv"}})
    ss = load_source(data, tmp_path)
    s = summarize(ss)
    assert s["near_duplicates"]["images"] == 6 and s["near_duplicates"]["groups"] == 3
    assert s["near_duplicates"]["cross_split_groups"] == 0
    m = ss.manifest
    for i in range(3):
        both = m[m["source"].str.contains(f"s{i}(?:_again)?\\.png$")]["split"]
        assert both.nunique() == 1
    assert "6 images in 3 near-duplicate groups" in render_text(s, "labels.csv")
    off = DataConfig.model_validate(
        {"source": {"kind": "images", "labels_csv": "labels.csv"}, "splits": {"near_duplicates": "off"}}
    )
    assert "near_duplicates" not in summarize(load_source(off, tmp_path))
