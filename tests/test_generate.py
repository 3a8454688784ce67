"""Generation: every format, reproducible from (checkpoint, label, seed), resumable, synthetic DICOM, bad input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

from medgan.cli import main
from medgan.errors import InputError
from medgan.generate import counts_like, generate
from medgan.seeding import derive_seed
from medgan.synthesis.cgan import CGANSynthesizer
from tests.conftest import require_tool


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["png", "nifti", "npz"])
def test_same_command_twice_gives_byte_identical_files(
    tiny_checkpoint: Path, tmp_path: Path, fmt: str
) -> None:
    a = generate(tiny_checkpoint, tmp_path / "a", 3, fmt=fmt, seed=5)
    b = generate(tiny_checkpoint, tmp_path / "b", 3, fmt=fmt, seed=5)
    assert a.equals(b)
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    fa.pop("generate.json"), fb.pop("generate.json")  # holds the creation time
    assert fa == fb
    assert len(a) == 6 and set(a["label_name"]) == {"0", "1"}


def test_manifest_rebuilds_every_image(tiny_checkpoint: Path, tmp_path: Path) -> None:
    m = generate(tiny_checkpoint, tmp_path / "png", 4, fmt="png", seed=11, bits=16)
    synth = CGANSynthesizer(tiny_checkpoint)
    again = synth.generate(m["label"].tolist(), m["seed"].tolist()).numpy()
    for i, row in m.iterrows():
        stored = np.asarray(Image.open(tmp_path / "png" / row["path"]), dtype=np.float64)
        expected = np.clip(np.rint((again[i, 0].astype(np.float64) + 1) / 2 * 65535), 0, 65535)
        assert np.array_equal(stored, expected)
    assert (m["checkpoint_sha256"] == synth.sha256).all()
    # an image depends only on (label, seed): alone, or in another batch, it agrees to float32 rounding
    # (bit-identical needs the same batch composition, which `medgan generate` keeps, resumes included)
    one = synth.generate([int(m["label"][3])], [int(m["seed"][3])]).numpy()
    np.testing.assert_allclose(one[0], again[3], atol=1e-5)


def test_npz_shards_hold_model_space_images(tiny_checkpoint: Path, tmp_path: Path) -> None:
    m = generate(tiny_checkpoint, tmp_path / "n", 5, fmt="npz", seed=2, classes=["1"])
    with np.load(tmp_path / "n" / m["path"][0]) as z:
        imgs, labels, seeds = z["images"], z["labels"], z["seeds"]
    synth = CGANSynthesizer(tiny_checkpoint)
    assert np.array_equal(imgs, synth.generate(labels.tolist(), seeds.tolist()).numpy())
    assert (labels == 1).all() and imgs.shape == (5, 1, 16, 16)


def test_nifti_has_training_spacing_and_raw_units(tiny_checkpoint: Path, tmp_path: Path) -> None:
    m = generate(tiny_checkpoint, tmp_path / "nii", 1, fmt="nifti")
    img = nib.load(str(tmp_path / "nii" / m["path"][0]))
    data = img.get_fdata()
    assert data.shape[:2] == (16, 16)
    assert data.min() >= 0.0 and data.max() <= 255.0  # MedMNIST raw units (uint8 range)


def test_resume_skips_finished_files_without_duplicates(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    full = generate(tiny_checkpoint, out, 4, fmt="png", seed=3)
    before = _files(out)
    for p in full["path"][::2]:
        (out / p).unlink()  # as if killed before these were written
    (out / "manifest.csv").unlink()
    again = generate(tiny_checkpoint, out, 4, fmt="png", seed=3)
    assert again.equals(full) and _files(out) == before
    assert not again["path"].duplicated().any()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_stale_temporaries_of_a_killed_run_are_removed(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    full = generate(tiny_checkpoint, out, 2, fmt="png", seed=3)
    before = _files(out)
    (out / full["path"][0]).unlink()
    (out / "manifest.csv").unlink()
    # what a SIGKILL between mkstemp and rename leaves behind (atomic_write_* / atomic_path names)
    stale = [out / "images" / ".0-000000.png.ab12cd_z.tmp.png", out / ".manifest.csv.q9w8e7r6.tmp"]
    for s in stale:
        s.write_bytes(b"half-written")
    unrelated = out / "images" / "notes.tmp"  # not one of medgan's temporary names: left alone
    unrelated.write_bytes(b"mine")
    generate(tiny_checkpoint, out, 2, fmt="png", seed=3)
    assert not any(s.exists() for s in stale) and unrelated.exists()
    unrelated.unlink()
    assert _files(out) == before and not (out / ".medgan.lock").exists()


def test_second_writer_into_a_locked_folder_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from medgan.io.atomic import FolderLock

    out = tmp_path / "l"
    with FolderLock(out, "medgan generate other.safetensors"):  # another process, as far as flock knows
        with pytest.raises(InputError, match="another medgan process is writing into this folder") as exc:
            generate(tiny_checkpoint, out, 2, fmt="png", seed=3)
        assert "other.safetensors" in str(exc.value) and "\n" not in str(exc.value)
        assert not (out / "manifest.csv").exists() and not (out / "images").exists()
    generate(tiny_checkpoint, out, 2, fmt="png", seed=3)  # released: the next run goes ahead
    assert (out / "manifest.csv").is_file()


def test_different_generation_into_same_folder_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    generate(tiny_checkpoint, tmp_path / "o", 2, seed=1)
    with pytest.raises(InputError, match="holds a different generation"):
        generate(tiny_checkpoint, tmp_path / "o", 2, seed=2)
    generate(tiny_checkpoint, tmp_path / "o", 2, seed=2, overwrite=True)


def test_bad_input(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="must be at least 1"):
        generate(tiny_checkpoint, tmp_path / "x", 0)
    with pytest.raises(InputError, match=r"class 'tumour': not in the checkpoint's classes"):
        generate(tiny_checkpoint, tmp_path / "x", 1, classes=["tumour"])
    blocker = tmp_path / "file.txt"
    blocker.write_text("I am a file")
    with pytest.raises(InputError, match="cannot be written"):
        generate(tiny_checkpoint, blocker / "sub", 1)
    with pytest.raises(InputError, match=r"^format: must be one of"):
        generate(tiny_checkpoint, tmp_path / "y", 1, fmt="jpeg")


def test_cli_generate_and_pickle_checkpoint(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import torch

    code = main(
        ["generate", "--checkpoint", str(tiny_checkpoint), "--n-per-class", "2", "--out", str(tmp_path / "g")]
    )
    assert code == 0 and len(pd.read_csv(tmp_path / "g" / "manifest.csv")) == 4
    evil = tmp_path / "model.pt"
    torch.save({"g": torch.ones(1)}, evil)
    capsys.readouterr()
    code = main(["generate", "--checkpoint", str(evil), "--n-per-class", "1", "--out", str(tmp_path / "h")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "never unpickles" in err and "model.pt" in err


# ------------------------------------------------------------------------------------------ DICOM


@pytest.fixture(scope="module")
def dicom_out(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("dcm")
    return out, generate(tiny_checkpoint, out, 3, fmt="dicom", seed=4)


def test_dicom_is_marked_synthetic(dicom_out: tuple[Path, pd.DataFrame], tiny_checkpoint: Path) -> None:
    out, m = dicom_out
    synth = CGANSynthesizer(tiny_checkpoint)
    uids = set()
    for _, row in m.iterrows():
        ds = pydicom.dcmread(out / row["path"])
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.ConversionType == "SYN" and ds.BurnedInAnnotation == "NO"
        assert str(ds.PatientName) == "SYNTHETIC^MEDGAN" and ds.PatientID == "SYNTHETIC"
        assert synth.sha256 in ds.DerivationDescription and str(row["seed"]) in ds.DerivationDescription
        uids.add(ds.SOPInstanceUID)
        raw = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
        expected = (synth.generate([int(row["label"])], [int(row["seed"])]).numpy()[0, 0] + 1) / 2 * 255
        assert np.abs(raw - expected).max() <= 255 / 4095 + 1e-6
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(out / row["path"]))).shape[-2:] == (16, 16)
    assert len(uids) == len(m)


@pytest.mark.parametrize("fmt", ["dicom", "png", "nifti", "npz"])
def test_diffusion_checkpoints_generate_every_format(
    fmt: str, tiny_diffusion_checkpoint: Path, tmp_path: Path
) -> None:
    """Every output format from a diffusion checkpoint; DICOM marked synthetic and naming the model;
    each image rebuilt from (checkpoint, label, seed) by the sampler."""
    from medgan.synthesis import registry

    synth = registry.load_sampler(tiny_diffusion_checkpoint)
    m = generate(tiny_diffusion_checkpoint, tmp_path / fmt, 2, fmt=fmt, seed=4)
    assert len(m) == 4 and (m["checkpoint_sha256"] == synth.sha256).all()
    again = synth.generate(m["label"].tolist(), m["seed"].tolist()).numpy()
    if fmt == "npz":
        with np.load(tmp_path / fmt / m["path"][0]) as z:
            assert np.array_equal(z["images"], again)  # the same batch: the same bits
        return
    for i, row in m.iterrows():
        path = tmp_path / fmt / row["path"]
        if fmt == "dicom":
            ds = pydicom.dcmread(path)
            assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.ConversionType == "SYN"
            assert "diffusion model" in ds.DerivationDescription and synth.sha256 in ds.DerivationDescription
            got = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds) / 255 * 2 - 1
            assert np.abs(got - again[i, 0]).max() <= 2 / 4095 + 1e-5
        elif fmt == "png":
            got = np.asarray(Image.open(path), dtype=np.float64) / 255 * 2 - 1
            assert np.abs(got - again[i, 0]).max() <= 1 / 255 + 1e-6
        else:
            assert nib.load(str(path)).get_fdata().shape[:2] == (16, 16)


def test_dicom_passes_dciodvfy(dicom_out: tuple[Path, pd.DataFrame]) -> None:
    dciodvfy = require_tool("dciodvfy", "dicom3tools validates the synthetic DICOM files")
    out, m = dicom_out
    for p in m["path"][:2]:
        proc = subprocess.run([dciodvfy, str(out / p)], capture_output=True, text=True, check=False)
        text = proc.stdout + proc.stderr
        assert "Error" not in text, text


# ------------------------------------------------------------------------------- per-class counts


def test_per_class_counts_keep_the_per_image_seeds(tiny_checkpoint: Path, tmp_path: Path) -> None:
    even = generate(tiny_checkpoint, tmp_path / "even", 3, fmt="png", seed=7)
    mixed = generate(tiny_checkpoint, tmp_path / "mixed", {"0": 1, 1: 4}, fmt="png", seed=7)
    assert mixed["label"].tolist() == [0, 1, 1, 1, 1] and mixed["index"].tolist() == [0, 0, 1, 2, 3]
    # the items both generations hold have the same seeds, file names and pixels
    shared = even.merge(mixed, on=["label", "index"], suffixes=("_even", "_mixed"))
    assert len(shared) == 4
    assert (shared["seed_even"] == shared["seed_mixed"]).all()
    assert (shared["path_even"] == shared["path_mixed"]).all()
    for p in shared["path_even"]:
        a = np.asarray(Image.open(tmp_path / "even" / p), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "mixed" / p), dtype=np.int16)
        assert np.abs(a - b).max() <= 1  # float rounding only (other batch composition)
    want = [derive_seed(7, int(r.label), int(r.index)) for r in mixed.itertuples()]
    assert mixed["seed"].tolist() == want
    # resuming the same counts is accepted; other counts into the same folder are refused
    generate(tiny_checkpoint, tmp_path / "mixed", {0: 1, 1: 4}, fmt="png", seed=7)
    with pytest.raises(InputError, match="holds a different generation"):
        generate(tiny_checkpoint, tmp_path / "mixed", {0: 2, 1: 4}, fmt="png", seed=7)
    # the int form is recorded as before, so existing generations resume unchanged
    import json

    assert json.loads((tmp_path / "even" / "generate.json").read_text())["n_per_class"] == 3


def test_per_class_counts_bad_input(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=">= 0"):
        generate(tiny_checkpoint, tmp_path / "a", {0: -1, 1: 2})
    with pytest.raises(InputError, match="add up to 0"):
        generate(tiny_checkpoint, tmp_path / "b", {0: 0, 1: 0})
    with pytest.raises(InputError, match="cannot be combined"):
        generate(tiny_checkpoint, tmp_path / "c", {0: 1}, classes=["0"])
    with pytest.raises(InputError, match="given twice"):
        generate(tiny_checkpoint, tmp_path / "d", {0: 1, "0": 2})
    with pytest.raises(InputError, match="not in the checkpoint's classes"):
        generate(tiny_checkpoint, tmp_path / "e", {"tumour": 1})


def test_counts_like_a_real_split(tiny_data_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import write_fake_medmnist

    assert counts_like("medmnist:tinymnist:test", tiny_data_dir) == {"0": 4, "1": 4}
    assert counts_like("medmnist:tinymnist:train", tiny_data_dir, 5) == {"0": 3, "1": 2}
    # an imbalanced split: the proportions, not equal counts
    d = tmp_path / "data"
    path = write_fake_medmnist(d / "medmnist" / "skewmnist.npz")
    with np.load(path) as z:
        arrays = dict(z)
    arrays["test_labels"] = np.array([0, 0, 0, 0, 0, 0, 1, 1], np.uint8)[:, None]
    np.savez(path, **arrays)
    assert counts_like("medmnist:skewmnist", d) == {"0": 6, "1": 2}
    assert counts_like("medmnist:skewmnist:test", d, 100) == {"0": 75, "1": 25}
    with pytest.raises(InputError, match="at least 2"):
        counts_like("medmnist:skewmnist:test", d, 1)


def test_cli_generate_counts_like(
    tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = ["generate", "--checkpoint", str(tiny_checkpoint), "--data-dir", str(tiny_data_dir)]
    code = main(
        [*base, "--counts-like", "medmnist:tinymnist:test", "--n-total", "5", "--out", str(tmp_path / "g")]
    )
    m = pd.read_csv(tmp_path / "g" / "manifest.csv")
    assert code == 0 and m["label"].value_counts().to_dict() == {0: 3, 1: 2}
    capsys.readouterr()
    assert main([*base, "--n-total", "5", "--out", str(tmp_path / "h")]) == 2
    assert "needs --counts-like" in capsys.readouterr().err
    args = [*base, "--n-per-class", "2", "--counts-like", "medmnist:tinymnist", "--out", str(tmp_path / "i")]
    assert main(args) == 2 and "not both" in capsys.readouterr().err


LEGACY = Path(__file__).parent / "fixtures" / "legacy_cgan"


def _legacy_digests(out: Path, fmt: str) -> dict[str, str]:
    import hashlib

    return {
        f"out-{fmt}/{p.relative_to(out).as_posix()}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "generate.json" and not p.name.startswith(".")
    }


def decoded_pixels(out: Path, fmt: str) -> dict[str, np.ndarray]:
    """``{"out-<fmt>/<file>": pixels}`` of a generation: NPZ images, PNG values, NIfTI data, DICOM
    stored values, as the file's own reader gives them (the values a build may change)."""
    got: dict[str, np.ndarray] = {}
    for p in sorted(out.rglob("*")):
        rel = f"out-{fmt}/{p.relative_to(out).as_posix()}"
        if p.suffix == ".npz":
            with np.load(p) as z:
                got[rel] = np.asarray(z["images"])
        elif p.suffix == ".png":
            got[rel] = np.asarray(Image.open(p))
        elif p.name.endswith(".nii.gz"):
            got[rel] = np.asarray(nib.load(p).get_fdata(dtype=np.float32))
        elif p.suffix == ".dcm":
            got[rel] = pydicom.dcmread(p).pixel_array
    return got


def _close_within_a_step(got: np.ndarray, want: np.ndarray) -> bool:
    """Equal up to the last bits of a float sum: one quantization level for integer pixels, 1e-4 of
    the range (and 1e-5 absolute) for float ones."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    if np.issubdtype(want.dtype, np.integer):
        return bool(diff.max(initial=0) <= 1)
    span = float(np.ptp(want)) if want.size else 0.0
    return bool(diff.max(initial=0) <= max(1e-4 * span, 1e-5))


@pytest.mark.parametrize("fmt", ["png", "npz", "nifti", "dicom"])
def test_checkpoint_from_before_the_registry_generates_the_same_bytes(fmt: str, tmp_path: Path) -> None:
    """A checkpoint written at commit 9069526 (cGAN keys under ``train:``) loads, and generation
    from it gives the files that commit wrote (tests/fixtures/legacy_cgan/README.md): byte for
    byte under the torch build the digests were written with (``expected_build.txt``); under any
    other build (PyPI's default torch, a CUDA wheel) the pixels within one quantization step, and
    every file without float values (manifests, DICOM UIDs) byte for byte.

    The expected files were written with 2 intra-op threads (CPU float sums follow the thread
    split); DICOM files carry their generation time, so for them the pixel data and UIDs count.
    """
    import json

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = tmp_path / f"out-{fmt}"
        generate(LEGACY / "step-0000002.safetensors", out, 3, fmt=fmt, seed=5)
    finally:
        torch.set_num_threads(threads)
    lines = (LEGACY / "expected_sha256.txt").read_text().splitlines()
    expected = {rel: digest for digest, rel in (ln.split() for ln in lines) if rel.startswith(f"out-{fmt}/")}
    got = _legacy_digests(out, fmt)
    if torch.__version__ != (LEGACY / "expected_build.txt").read_text().split()[1]:
        with np.load(LEGACY / "expected_values.npz") as z:
            want = {k: z[k] for k in z.files if k.startswith(f"out-{fmt}/")}
        pixels = decoded_pixels(out, fmt)
        assert sorted(pixels) == sorted(want)
        far = [k for k in want if not _close_within_a_step(pixels[k], want[k])]
        assert far == [], far
        if fmt == "dicom":  # the UIDs come from seeds and the checkpoint's digest, not from float sums
            ref = json.loads((LEGACY / "expected_dicom.json").read_text())
            for rel, r in ref.items():
                ds = pydicom.dcmread(out / rel.removeprefix("out-dicom/"))
                assert all(
                    str(ds[u].value) == r[u]
                    for u in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
                )
        assert {k: v for k, v in got.items() if k.endswith(".csv")} == {
            k: v for k, v in expected.items() if k.endswith(".csv")
        }
        return
    if fmt == "dicom":
        import hashlib

        want = json.loads((LEGACY / "expected_dicom.json").read_text())
        for rel, ref in want.items():
            ds = pydicom.dcmread(out / rel.removeprefix("out-dicom/"))
            assert hashlib.sha256(ds.PixelData).hexdigest() == ref["PixelData_sha256"], rel
            for uid in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
                assert str(ds[uid].value) == ref[uid], (rel, uid)
        got = {k: v for k, v in got.items() if k not in want}
    assert got == expected


def test_non_finite_generator_weights_are_refused_before_any_output(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """A damaged checkpoint (NaN in the EMA generator) fails before the output folder exists (issue 17)."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from medgan.training.checkpoint import sha256_file

    tensors = load_file(str(tiny_checkpoint))
    key = next(k for k in tensors if k.startswith("g_ema.") and tensors[k].is_floating_point())
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    bad = tmp_path / "run" / "checkpoints" / "step-0000004.safetensors"
    bad.parent.mkdir(parents=True)
    save_file(tensors, str(bad))
    meta = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    bad.with_suffix(".json").write_text(json.dumps({**meta, "sha256": sha256_file(bad)}))
    with pytest.raises(InputError, match=r"generator's weights are not finite \(NaN or infinity in g_ema\."):
        generate(bad, tmp_path / "out", 2)
    assert not (tmp_path / "out").exists()


def test_a_generation_that_cannot_fit_is_refused_before_the_first_image(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--n-per-class 1000000000000`` would run until killed: the bytes and files it needs are
    known up front, so it is one line, exit 2, and no folder is made. A request that fits the
    free space goes ahead; one beyond a (patched) small disk is refused the same way."""
    import shutil

    out = tmp_path / "huge"
    args = ["generate", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--device", "cpu"]
    assert main([*args, "--n-per-class", "1000000000000"]) == 2  # (before the fix: ran until killed)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2,000,000,000,000 png images needs at least" in err
    assert not out.exists()

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    with pytest.raises(InputError, match=r"800 npz images needs at least .* has 100\.0 kB free"):
        generate(tiny_checkpoint, tmp_path / "small", 400, fmt="npz", device="cpu")
    assert not (tmp_path / "small").exists()
    m = generate(tiny_checkpoint, tmp_path / "fits", 2, fmt="npz", device="cpu")
    assert len(m) == 4
