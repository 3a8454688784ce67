"""``medgan export-bundle``: a MONAI bundle that runs without medgan and reproduces ``medgan generate``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from medgan.bundle import REQUIRED_METADATA_KEYS, export_bundle
from medgan.cli import main
from medgan.seeding import noise_for_seeds
from medgan.synthesis.cgan import CGANSynthesizer
from medgan.synthesis.export import script_generator, seeded_noise

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.[a-z_]+` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported as a bundle (default options)."""
    return export_bundle(tiny_checkpoint, tmp_path_factory.mktemp("bundles") / "tiny_bundle")


@pytest.fixture(scope="module")
def synth(tiny_checkpoint: Path) -> CGANSynthesizer:
    return CGANSynthesizer(tiny_checkpoint, "cpu")


def run_bundle(bundle: Path, out: Path, tmp_path: Path, **overrides: object) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` on ``bundle`` in a subprocess where ``import medgan`` fails.

    Without the ``fire`` package (MONAI's CLI needs it) the same workflow runs through
    ``monai.bundle.run(...)`` instead.
    """
    block = tmp_path / "no_medgan"
    (block / "medgan").mkdir(parents=True, exist_ok=True)
    (block / "medgan" / "__init__.py").write_text('raise ImportError("medgan is not installed here")\n')
    env = {**os.environ, "PYTHONPATH": str(block)}
    args = {"config_file": str(bundle / "configs" / "inference.json"), "bundle_root": str(bundle)}
    args["output_dir"] = str(out)
    try:
        import fire  # noqa: F401

        cmd = [sys.executable, "-m", "monai.bundle", "run"]
        for k, v in {**args, **overrides}.items():
            cmd += [f"--{k}", v if isinstance(v, str) else repr(v)]
    except ImportError:
        cmd = [sys.executable, "-c", f"from monai.bundle import run; run(**{dict(args, **overrides)!r})"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# ---------------------------------------------------------------- the bundle's parts


def test_export_writes_the_bundle(bundle: Path, synth: CGANSynthesizer) -> None:
    files = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert files == [
        "configs/inference.json",
        "configs/logging.conf",
        "configs/metadata.json",
        "docs/README.md",
        "models/model.safetensors",
        "models/model.ts",
    ]
    assert not list(bundle.parent.glob(".tiny_bundle*"))  # no temporary folder left beside it
    umask = os.umask(0)
    os.umask(umask)
    modes = {f: (bundle / f).stat().st_mode & 0o777 for f in files}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # the weights too (they were 0600)
    weights = load_file(str(bundle / "models" / "model.safetensors"))
    ref = synth.g.state_dict()
    assert weights.keys() == ref.keys()
    assert all(torch.equal(weights[k], ref[k].cpu()) for k in ref)
    readme = (bundle / "docs" / "README.md").read_text()
    assert "synthetic" in readme and "python -m monai.bundle run" in readme
    assert all(c in readme for c in synth.classes)
    cfg = json.loads((bundle / "configs" / "inference.json").read_text())
    assert cfg["classes"] == synth.classes and "run" in cfg and cfg["checkpoint_sha256"] == synth.sha256


def test_metadata_has_schema_keys_and_provenance(bundle: Path, synth: CGANSynthesizer) -> None:
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    missing = [k for k in REQUIRED_METADATA_KEYS if k not in meta]
    assert not missing
    for k in ("schema", "version", "monai_version", "pytorch_version", "numpy_version", "task"):
        assert isinstance(meta[k], str) and meta[k]
    for k in ("description", "authors", "copyright", "data_source", "data_type"):
        assert isinstance(meta[k], str) and meta[k]
    assert isinstance(meta["required_packages_version"], dict) and isinstance(meta["changelog"], dict)
    assert meta["version"] in meta["changelog"]
    assert "optional_packages_version" not in meta  # deprecated name (MONAI warns)
    ndf = meta["network_data_format"]
    tensors = [*ndf["inputs"].values(), *ndf["outputs"].values()]
    assert set(ndf["inputs"]) == {"seeds", "labels"} and set(ndf["outputs"]) == {"pred"}
    for t in tensors:  # the schema's required tensor keys and their types
        assert {"type", "format", "num_channels", "spatial_shape", "dtype", "value_range"} <= t.keys()
        assert isinstance(t["num_channels"], int)
        assert all(isinstance(v, int | float) for v in t["value_range"])
        assert all(isinstance(v, int | str) for v in t["spatial_shape"])
    assert ndf["outputs"]["pred"]["spatial_shape"] == list(synth.shape[1:])
    assert ndf["outputs"]["pred"]["value_range"] == [-1, 1]
    assert meta["synthetic"] is True
    prov = meta["medgan"]
    assert prov["checkpoint_sha256"] == synth.sha256 and prov["classes"] == synth.classes
    assert prov["synthetic"] is True and prov["shape"] == list(synth.shape)


SPEC_SCHEMA = Path(__file__).parent / "schemas" / "monai_bundle_metadata.schema.json"


def spec_validator() -> Any:
    """A validator for tests/schemas/monai_bundle_metadata.schema.json (written from MONAI's bundle
    specification; runs everywhere, unlike MONAI's own schema file, which lives on GitHub)."""
    from jsonschema import Draft202012Validator

    schema = json.loads(SPEC_SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_metadata_validates_against_the_bundle_spec_schema(bundle: Path) -> None:
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in spec_validator().iter_errors(meta)
    ]
    assert not errors, errors


DROP = object()
PRED = "network_data_format/outputs/pred"
#: One documented requirement broken at a time: (path in metadata.json, new value or DROP).
BROKEN = {
    "no version": ("version", DROP),
    "no network_data_format": ("network_data_format", DROP),
    "no packages": ("required_packages_version", DROP),
    "no authors": ("authors", DROP),
    "empty task": ("task", ""),
    "monai_version a number": ("monai_version", 1.4),
    "inputs a list": ("network_data_format/inputs", []),
    "no outputs": ("network_data_format/outputs", DROP),
    "no modality": (f"{PRED}/modality", DROP),
    "no channel_def": (f"{PRED}/channel_def", DROP),
    "num_channels a string": (f"{PRED}/num_channels", "1"),
    "num_channels 0": (f"{PRED}/num_channels", 0),
    "4-d spatial_shape": (f"{PRED}/spatial_shape", [16, 16, 1, 1]),
    "zero size": (f"{PRED}/spatial_shape", [16, 0]),
    "value_range of one": (f"{PRED}/value_range", [-1]),
    "value_range strings": (f"{PRED}/value_range", ["-1", "1"]),
    "unknown dtype": (f"{PRED}/dtype", "float"),
    "is_patch_data a string": (f"{PRED}/is_patch_data", "false"),
    "unknown type": (f"{PRED}/type", "picture"),
    "channel_def by name": (f"{PRED}/channel_def", {"gray": "intensity"}),
}


@pytest.mark.parametrize(("path", "value"), list(BROKEN.values()), ids=list(BROKEN))
def test_bundle_spec_schema_rejects_broken_metadata(bundle: Path, path: str, value: object) -> None:
    """The schema is not vacuous: each documented requirement, broken once, is reported."""
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    *head, last = path.split("/")
    target = meta
    for k in head:
        target = target[k]
    assert last in target
    if value is DROP:
        del target[last]
    else:
        target[last] = value
    assert list(spec_validator().iter_errors(meta)), path


def test_metadata_validates_against_monai_schema(bundle: Path) -> None:
    """MONAI's own schema file, in full; needs a local copy (set MEDGAN_MONAI_SCHEMA, no network in tests).
    The spec schema test above runs everywhere."""
    schema = os.environ.get("MEDGAN_MONAI_SCHEMA")
    if not schema or not Path(schema).is_file():
        pytest.skip("set MEDGAN_MONAI_SCHEMA to a local copy of MONAI's meta_schema_20240725.json")
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=schema)


# ---------------------------------------------------------------- TorchScript model


def test_scripted_noise_equals_noise_for_seeds() -> None:
    seeds = [0, 1, 2, 7, 123456789, 2**31, 2**62 + 12345, 2**63 - 1, -1, -(2**63)]
    scripted = torch.jit.script(seeded_noise)
    for z_dim in (1, 16, 17, 128):
        want = noise_for_seeds(seeds, z_dim)
        got = scripted(torch.tensor(seeds, dtype=torch.int64), z_dim)
        assert got.dtype == torch.float32 and torch.equal(got, want)
        assert torch.equal(seeded_noise(torch.tensor(seeds, dtype=torch.int64), z_dim), want)


def test_torchscript_model_reproduces_generate(bundle: Path, synth: CGANSynthesizer) -> None:
    model = torch.jit.load(str(bundle / "models" / "model.ts"), map_location="cpu")
    labels = [0, 1, 1, 0, 1]
    seeds = [0, 5, 99, 2**40 + 3, 2**63 - 2]
    want = synth.generate(labels, seeds)
    with torch.no_grad():
        got = model(torch.tensor(seeds), torch.tensor(labels))
        one = model(torch.tensor(seeds[2:3]), torch.tensor(labels[2:3]))
    assert got.shape == (5, *synth.shape) and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    assert torch.allclose(one, synth.generate(labels[2:3], seeds[2:3]), atol=1e-6, rtol=0)
    assert torch.allclose(one[0], want[2], atol=1e-5, rtol=0)  # CPU kernels vary slightly with batch size
    assert got.min() >= -1 and got.max() <= 1
    with pytest.raises(Exception, match="class indices"):
        model(torch.tensor([1]), torch.tensor([len(synth.classes)]))


def test_script_generator_falls_back_to_trace(
    synth: CGANSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_script = torch.jit.script

    def no_generator_script(obj: object, *a: object, **k: object) -> object:
        if obj.__class__.__name__ == "ConditionalGenerator":
            raise RuntimeError("not scriptable")
        return real_script(obj, *a, **k)

    monkeypatch.setattr(torch.jit, "script", no_generator_script)
    module = script_generator(synth.g, synth.model_cfg.z_dim, len(synth.classes))
    labels, seeds = [1, 0, 1], [3, 4, 5]
    got = module(torch.tensor(seeds), torch.tensor(labels))
    assert torch.allclose(got, synth.generate(labels, seeds), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- python -m monai.bundle run


@pytest.mark.slow
def test_bundle_run_writes_medgan_generate_images(
    bundle: Path, tiny_checkpoint: Path, synth: CGANSynthesizer, tmp_path: Path
) -> None:
    from medgan.generate import generate

    out = tmp_path / "bundle_out"
    proc = run_bundle(bundle, out, tmp_path, n_per_class=3, seed=7)
    assert "wrote 6 synthetic images" in proc.stdout
    manifest = generate(tiny_checkpoint, tmp_path / "gen", 3, seed=7, fmt="png", device="cpu")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(Path(p).name for p in manifest["path"])  # same names
    for name in pngs:
        a = np.asarray(Image.open(out / name))
        b = np.asarray(Image.open(tmp_path / "gen" / "images" / name))
        assert a.shape == b.shape == tuple(synth.shape[1:]) and a.dtype == np.uint8
        assert np.array_equal(a, b), name  # same 8-bit pixels
    rows = (out / "manifest.csv").read_text().splitlines()
    assert rows[0] == "path,label,label_name,index,seed,checkpoint_sha256,source" and len(rows) == 7
    got_seeds = [int(r.split(",")[4]) for r in rows[1:]]
    assert got_seeds == manifest["seed"].tolist()
    assert all(r.endswith(f"{synth.sha256},synthetic") for r in rows[1:])


@pytest.mark.slow
def test_bundle_run_nifti_and_label_override(
    bundle: Path, tiny_checkpoint: Path, synth: CGANSynthesizer, tmp_path: Path
) -> None:
    from medgan.generate import generate

    out = tmp_path / "nifti_out"
    run_bundle(bundle, out, tmp_path, n_per_class=2, seed=3, output_ext=".nii.gz", labels=[synth.classes[1]])
    files = sorted(p.name for p in out.glob("*.nii.gz"))
    assert len(files) == 2 and all(f.startswith("01-") for f in files)
    generate(tiny_checkpoint, tmp_path / "gen", 2, seed=3, fmt="nifti", classes=["1"], device="cpu")
    for name in files:
        a = np.asarray(nib.load(out / name).dataobj)
        b = np.asarray(nib.load(tmp_path / "gen" / "images" / name).dataobj)
        assert a.dtype == b.dtype == np.float32
        assert np.array_equal(a.squeeze(), b.squeeze()), name  # same float voxels, same layout


# ---------------------------------------------------------------- CLI


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("medgan: error: "), err
    assert all(n in lines[0] for n in needles), err


def test_cli_export_bundle(capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    code, stdout, err = run_cli(
        capsys,
        "export-bundle",
        tiny_checkpoint.parent.parent,
        "--out",
        out,
        "--n-per-class",
        5,
        "--name",
        "x",
    )
    assert code == 0, err
    assert "python -m monai.bundle run" in stdout
    assert json.loads((out / "configs" / "inference.json").read_text())["n_per_class"] == 5
    assert json.loads((out / "configs" / "metadata.json").read_text())["name"] == "x"
    # an existing non-empty folder is refused (and left alone) unless --overwrite
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "export-bundle", tiny_checkpoint, "--out", out)
    assert_one_line_error(code, err, str(out), "not empty", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    code, _, err = run_cli(capsys, "export-bundle", tiny_checkpoint, "--out", out, "--overwrite")
    assert code == 0, err
    assert not (out / "keep.txt").exists() and (out / "models" / "model.ts").is_file()


def test_cli_missing_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "export-bundle", tmp_path / "nope.safetensors", "--out", tmp_path / "b")
    assert_one_line_error(code, err, "nope.safetensors", "not found")
    assert not (tmp_path / "b").exists()


def test_cli_cyclegan_checkpoint(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "step-0000004.safetensors"
    shutil.copy(tiny_checkpoint, fake)
    meta = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    meta["model"]["kind"] = "cyclegan"
    fake.with_suffix(".json").write_text(json.dumps(meta))
    code, _, err = run_cli(capsys, "export-bundle", fake, "--out", tmp_path / "b")
    assert_one_line_error(
        code,
        err,
        "model.kind: 'cyclegan' (CycleGAN",
        "cannot be exported as a MONAI bundle; cgan or diffusion checkpoints can",
    )
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))


def test_cli_bad_output_ext(
    capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    code, _, err = run_cli(
        capsys, "export-bundle", tiny_checkpoint, "--out", tmp_path / "b", "--output-ext", ".jpg"
    )
    assert_one_line_error(code, err, "--output-ext", ".png")


# ---------------------------------------------------------------- a diffusion checkpoint: the whole DDIM loop


@pytest.mark.slow
def test_diffusion_bundle_runs_without_medgan_and_writes_generate_images(
    tiny_diffusion_checkpoint: Path, tmp_path: Path
) -> None:
    """A diffusion checkpoint exports as a bundle whose TorchScript module runs the DDIM sampler
    (noise drawn inside, guidance included); MONAI's runner writes the images ``medgan generate``
    writes for the same seed, with no medgan installed."""
    from medgan.generate import generate
    from medgan.synthesis import registry

    synth = registry.load_sampler(tiny_diffusion_checkpoint)
    out = export_bundle(tiny_diffusion_checkpoint, tmp_path / "dbundle")
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["medgan"]["kind"] == "diffusion" and meta["medgan"]["sampling_steps"] == 3
    assert "diffusion" in meta["description"] and "DDIM" in meta["medgan"]["noise"]
    assert out.name == "dbundle" and "diffusion" in (out / "docs" / "README.md").read_text()
    errors = [e.message for e in spec_validator().iter_errors(meta)]
    assert not errors, errors
    module = torch.jit.load(str(out / "models" / "model.ts"))
    labels, seeds = [0, 1, 1], [4, 5, 6]
    got = module(torch.tensor(seeds), torch.tensor(labels))
    assert (got - synth.generate(labels, seeds)).abs().max() <= 1e-4
    proc = run_bundle(out, tmp_path / "bundle_out", tmp_path, n_per_class=2, seed=7)
    assert "wrote 4 synthetic images" in proc.stdout
    manifest = generate(tiny_diffusion_checkpoint, tmp_path / "gen", 2, seed=7, fmt="png", device="cpu")
    for name in (Path(p).name for p in manifest["path"]):
        a = np.asarray(Image.open(tmp_path / "bundle_out" / name), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "gen" / "images" / name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1, name  # 8-bit rounding of float32-close images


def test_a_sampler_kind_without_an_export_is_refused_naming_it(
    tiny_diffusion_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kind whose sampler cannot be scripted is refused with one line naming ``model.kind``, before
    anything is written (here the diffusion entry with its export switched off)."""
    import dataclasses

    from medgan.errors import ConfigError
    from medgan.synthesis import registry

    monkeypatch.setitem(
        registry.KINDS, "diffusion", dataclasses.replace(registry.KINDS["diffusion"], exports=False)
    )
    with pytest.raises(
        ConfigError, match=r"model.kind: 'diffusion' \(.*\) cannot be exported as a MONAI bundle; cgan"
    ):
        export_bundle(tiny_diffusion_checkpoint, tmp_path / "b")
    assert not (tmp_path / "b").exists()
