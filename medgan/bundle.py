"""``medgan export-bundle``: a sampler checkpoint (any kind the registry can export) as a self-contained MONAI bundle.

The bundle runs where medgan is not installed (MONAI, PyTorch and NumPy suffice)::

    BUNDLE/
      configs/metadata.json     MONAI bundle metadata + medgan provenance (checkpoint SHA-256, classes)
      configs/inference.json    ``python -m monai.bundle run`` config: (label, seed) plan -> images
      models/model.ts           TorchScript: forward(seeds int64 (N,), labels int64 (N,)) -> (N, C, H, W)
      models/model.safetensors  the network's (EMA) weights, no pickle
      docs/README.md            what it is, the classes, how to run it

The module comes from the sampler's own ``export()`` (:class:`~medgan.synthesis.protocols.Export`:
a cGAN generator, or a diffusion model's whole DDIM loop); a kind that cannot be scripted is
refused by :func:`medgan.synthesis.registry.load_exportable` with one line naming ``model.kind``.
``model.ts`` draws each image's noise inside the module with the same counter-based SplitMix64
generator as :func:`medgan.seeding.noise_for_seeds`, and ``inference.json`` derives the
per-image seeds as :func:`medgan.generate.plan` does, so the bundle writes the same images (same
file names, same 8-bit pixels) as ``medgan generate --format png`` with the same ``--seed``.
There is no ``models/model.pt``: medgan never writes pickled weights.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from medgan import __version__
from medgan.errors import InputError
from medgan.io.atomic import atomic_dir, atomic_write_bytes, atomic_write_text
from medgan.io.output import check_room
from medgan.io.tensors import canonical_safetensors
from medgan.paths import slug
from medgan.synthesis import registry
from medgan.synthesis.protocols import Export, Sampler
from medgan.training.checkpoint import CheckpointMeta

#: The MONAI bundle metadata schema the exported ``metadata.json`` names (and was checked against).
SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)
#: Top-level keys that schema requires.
REQUIRED_METADATA_KEYS: tuple[str, ...] = (
    "schema",
    "version",
    "monai_version",
    "pytorch_version",
    "numpy_version",
    "required_packages_version",
    "task",
    "description",
    "authors",
    "copyright",
    "network_data_format",
)
OUTPUT_EXTS: tuple[str, ...] = (".png", ".nii.gz")

#: ``configs/logging.conf`` (MONAI's ConfigWorkflow reads it; only ``logging`` classes and literal args)
LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def _data_description(meta: CheckpointMeta) -> tuple[str, str]:
    """(data_source, data_type) for the metadata, from the checkpoint's config and data record."""
    src = (meta.config.get("data") or {}).get("source") or {}
    kind = src.get("kind") or meta.data.source_format or "unknown"
    what = src.get("name") or src.get("path") or ""
    n = meta.data.n_train
    source = f"{kind}{': ' + str(what) if what else ''}, train split" + (f" ({n} slices)" if n else "")
    return source, str(meta.data.source_format or kind)


def build_metadata(synth: Sampler, exp: Export, version: str, name: str) -> dict[str, Any]:
    """The bundle's ``metadata.json`` content (MONAI schema fields + medgan provenance) for a loaded sampler."""
    import numpy as np

    try:
        import PIL

        pillow = PIL.__version__
    except ImportError:  # pragma: no cover - pillow is a medgan dependency
        pillow = "10.0"
    import monai

    meta = synth.meta
    c, h, w = synth.shape
    classes = list(synth.classes)
    modality = meta.data.modality or "n/a"
    source, dtype = _data_description(meta)
    class_list = ", ".join(f"{i} = {n}" for i, n in enumerate(classes))
    sha = synth.sha256
    return {
        "schema": SCHEMA_URL,
        "version": version,
        "changelog": {version: f"exported by medgan {__version__} from checkpoint sha256 {sha}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"pillow": pillow},
        "name": name,
        "task": f"Class-conditional synthesis of {h}x{w} medical image slices ({', '.join(classes)})",
        "description": (
            f"A {exp.what} trained with medgan on {source}. Given a class index and "
            "an integer seed it generates one synthetic slice; the same (label, seed) always gives the "
            "same image. Outputs are synthetic, not patient data."
        ),
        "authors": "medgan user (trained and exported with medgan)",
        "copyright": "Copyright (c) the owner of the training data and checkpoint",
        "intended_use": (
            "Research: synthetic slices for data augmentation and method development. "
            "Not for diagnostic use; the images are generated and depict no patient."
        ),
        "data_source": source,
        "data_type": dtype,
        "image_classes": f"{c} channel(s), {h}x{w}, values in [-1, 1] (written as 8-bit PNG or float NIfTI)",
        "label_classes": f"class index: {class_list}",
        "pred_classes": f"synthetic image of the requested class ({class_list})",
        "references": list(exp.references),
        "network_data_format": {
            "inputs": {
                "seeds": {
                    "type": "tuples",
                    "format": "seed",
                    "modality": "n/a",
                    "num_channels": 1,
                    "spatial_shape": ["*"],
                    "dtype": "int64",
                    "value_range": [0, 2**63 - 1],
                    "is_patch_data": False,
                    "channel_def": {"0": "one integer seed per image (its noise vector)"},
                },
                "labels": {
                    "type": "tuples",
                    "format": "classes",
                    "modality": "n/a",
                    "num_channels": 1,
                    "spatial_shape": ["*"],
                    "dtype": "int64",
                    "value_range": [0, len(classes) - 1],
                    "is_patch_data": False,
                    "channel_def": {str(i): n for i, n in enumerate(classes)},
                },
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": modality,
                    "num_channels": c,
                    "spatial_shape": [h, w],
                    "dtype": "float32",
                    "value_range": [-1, 1],
                    "is_patch_data": False,
                    "channel_def": {str(i): "synthetic image" for i in range(c)},
                }
            },
        },
        "synthetic": True,
        "medgan": {
            "version": __version__,
            "checkpoint_sha256": sha,
            "checkpoint_step": meta.step,
            "run_name": meta.config.get("name"),
            "classes": classes,
            "shape": [c, h, w],
            "kind": meta.kind,
            **exp.network,
            "model": meta.model,
            "intensity": meta.data.intensity.model_dump(exclude_unset=True)
            if "data" in meta.model_fields_set
            else None,
            "synthetic": True,
            "noise": exp.noise,
            "seed_derivation": (
                "image k of class c uses seed int(SeedSequence([S, c, k]).generate_state(1, uint64)[0] >> 1), "
                "S = the run seed (as medgan generate --seed S)"
            ),
        },
    }


def build_inference_config(
    synth: Sampler, n_per_class: int, seed: int, batch_size: int, output_ext: str
) -> dict:
    """The bundle's ``inference.json``: MONAI config syntax, runnable with ``python -m monai.bundle run``."""
    data = synth.meta.data
    lo, hi = data.intensity.lo, data.intensity.hi
    sp = data.spacing or [None, None]
    spacing = [float(sp[0]), float(sp[1])] if sp and sp[0] and sp[1] else [1.0, 1.0]
    thickness = float(data.thickness) if data.thickness else 1.0
    classes = list(synth.classes)
    return {
        "imports": ["$import os", "$import pathlib"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "model_path": "$@bundle_root + '/models/model.ts'",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "classes": classes,
        "class_slugs": [slug(n) for n in classes],
        "checkpoint_sha256": synth.sha256,
        "labels": "$list(range(len(@classes)))",
        "n_per_class": n_per_class,
        "seed": seed,
        "batch_size": batch_size,
        "output_ext": output_ext,
        "intensity": [float(lo), float(hi)] if lo is not None and hi is not None else None,
        "spacing": spacing,
        "thickness": thickness,
        "label_ids": (
            "$[@classes.index(c) if isinstance(c, str) and c in @classes else int(c) "
            "for c in (@labels if isinstance(@labels, (list, tuple)) else [@labels])]"
        ),
        "items": (
            "$[(lab, k, int(np.random.SeedSequence([@seed & 0xFFFFFFFFFFFFFFFF, lab, k])"
            ".generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))) "
            "for lab in @label_ids for k in range(@n_per_class)]"
        ),
        "file_names": "$['%02d-%s-%06d' % (it[0], @class_slugs[it[0]], it[1]) for it in @items]",
        "network": "$torch.jit.load(@model_path, map_location=@device).eval()",
        "generate": (
            "$torch.no_grad()(lambda its: @network("
            "torch.tensor([it[2] for it in its], dtype=torch.int64, device=@device), "
            "torch.tensor([it[0] for it in its], dtype=torch.int64, device=@device)).float().cpu())"
        ),
        "to_png": (
            "$lambda x: torch.round((x.double() + 1.0) / 2.0 * 255.0).clamp(0, 255).to(torch.uint8)"
            ".transpose(-1, -2)"
        ),
        "to_nifti": (
            "$lambda x: ((x.double() + 1.0) * (@intensity[1] - @intensity[0]) / 2.0 + @intensity[0]"
            " if @intensity else x.double()).float().transpose(-1, -2).unsqueeze(-1)"
        ),
        "affine": (
            "$torch.diag(torch.tensor([-@spacing[1], -@spacing[0], @thickness, 1.0], dtype=torch.float64))"
        ),
        "saver": {
            "_target_": "SaveImage",
            "output_dir": "@output_dir",
            "output_ext": "@output_ext",
            "output_postfix": "",
            "separate_folder": False,
            "resample": False,
            "print_log": False,
            "channel_dim": 0,
            "squeeze_end_dims": "$@output_ext == '.png'",
            "output_dtype": "$np.uint8 if @output_ext == '.png' else np.float32",
        },
        "save": (
            "$lambda img, name: @saver(monai.data.MetaTensor("
            "@to_png(img) if @output_ext == '.png' else @to_nifti(img), "
            "affine=@affine, meta={'filename_or_obj': name}))"
        ),
        "manifest": (
            "$'path,label,label_name,index,seed,checkpoint_sha256,source\\n' + ''.join("
            "'%s%s,%d,\"%s\",%d,%d,%s,synthetic\\n' % (name, @output_ext, it[0], "
            "@classes[it[0]].replace('\"', '\"\"'), it[1], it[2], @checkpoint_sha256) "
            "for it, name in zip(@items, @file_names))"
        ),
        "run": [
            "$os.makedirs(@output_dir, exist_ok=True)",
            (
                "$[@save(img, name) for s in range(0, len(@items), @batch_size) "
                "for img, name in zip(@generate(@items[s:s + @batch_size]), @file_names[s:s + @batch_size])]"
            ),
            "$pathlib.Path(@output_dir, 'manifest.csv').write_text(@manifest)",
            "$print('wrote %d synthetic images to %s' % (len(@items), @output_dir))",
        ],
    }


def _readme(synth: Sampler, exp: Export, meta: dict[str, Any], cfg: dict[str, Any], name: str) -> str:
    c, h, w = synth.shape
    classes = "\n".join(f"| {i} | {n} |" for i, n in enumerate(synth.classes))
    return f"""# {name}

A {exp.what} exported by medgan {__version__} as a MONAI bundle.
**Every image it produces is synthetic**: generated from a class label and a seed, it depicts
no patient. Not for diagnostic use.

- Task: {meta["task"]}
- Trained on: {meta["data_source"]}
- Output: {c} channel(s), {h} x {w} pixels, values in [-1, 1] before writing
- Checkpoint SHA-256: `{synth.sha256}` (step {meta["medgan"]["checkpoint_step"]})

## Classes

| index | name |
|---|---|
{classes}

## Run

Needs MONAI, PyTorch, NumPy and Pillow (nibabel for NIfTI output) and, for MONAI's command
line, `fire` (`pip install fire`); medgan is not needed. From this folder:

```bash
python -m monai.bundle run --config_file configs/inference.json
```

or from anywhere, naming the bundle folder and an output folder:

```bash
python -m monai.bundle run --config_file BUNDLE/configs/inference.json \\
    --bundle_root BUNDLE --output_dir synth --n_per_class 100 --seed 0
```

`configs/metadata.json` beside the config is read automatically (pass `--meta_file` to use
another). Values you can override on the command line:

| key | default | meaning |
|---|---|---|
| `output_dir` | `<bundle_root>/eval` | where the images and `manifest.csv` go |
| `n_per_class` | {cfg["n_per_class"]} | images per class |
| `labels` | all classes | class indices or names, e.g. `--labels "[1]"` |
| `seed` | {cfg["seed"]} | run seed; image k of class c uses a seed derived from (seed, c, k) |
| `batch_size` | {cfg["batch_size"]} | images per forward pass |
| `output_ext` | `{cfg["output_ext"]}` | `.png` (8-bit) or `.nii.gz` (float32{", in the training intensity units" if cfg["intensity"] else ""}) |
| `device` | CUDA if available, else CPU | e.g. `--device cpu` |

Files are named `<class index>-<class name>-<k>.png` and listed in `manifest.csv` with their
label, index and seed. With the same seed they are the images `medgan generate --seed S
--format png` writes (same names, same pixels), so a bundle run can be traced back to the
checkpoint.

Parsing a MONAI config runs the code in it (`$` expressions, `_target_`); run only bundles you trust.

## Files

- `configs/metadata.json`: MONAI bundle metadata; `medgan` holds the provenance (checkpoint
  SHA-256, classes, how seeds and noise are derived) and `synthetic` is `true`.
- `configs/inference.json`: the generation workflow in MONAI's config syntax.
- `models/model.ts`: TorchScript module, `forward(seeds, labels)` with int64 tensors of equal
  length -> float32 images (N, C, H, W) in [-1, 1]. It draws the noise for each seed itself.
- `models/model.safetensors`: the network weights (no `model.pt`: medgan never writes pickles).

Check the metadata against MONAI's schema (downloads the schema once; give a local copy as
`--filepath` to check offline):

```bash
python -m monai.bundle verify_metadata --meta_file configs/metadata.json --filepath schema.json
```
"""


def export_bundle(
    checkpoint: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    name: str | None = None,
    version: str = "0.1.0",
    n_per_class: int = 16,
    seed: int = 0,
    batch_size: int = 256,
    output_ext: str = ".png",
) -> Path:
    """Write a MONAI bundle for a sampler ``checkpoint`` into ``out`` (atomically); returns ``out``.

    Every kind whose sampler can be written as TorchScript is exported (the registry's
    ``exports``: the conditional GAN, the diffusion model); another kind is refused with one line
    naming ``model.kind``.

    ``n_per_class``, ``seed``, ``batch_size`` and ``output_ext`` are the defaults written into
    ``configs/inference.json`` (each can be overridden when the bundle runs). A non-empty ``out``
    is refused unless ``overwrite``.
    """
    if output_ext not in OUTPUT_EXTS:
        raise InputError("--output-ext", f"must be one of {', '.join(OUTPUT_EXTS)} (got {output_ext!r})")
    if n_per_class <= 0:
        raise InputError("--n-per-class", f"must be at least 1 (got {n_per_class})")
    if batch_size <= 0:
        raise InputError("--batch-size", f"must be at least 1 (got {batch_size})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(out, "output folder exists and is not empty (pass --overwrite to replace it)")
    synth = registry.load_exportable(checkpoint)
    if output_ext == ".nii.gz" and synth.shape[0] != 1:
        raise InputError("--output-ext", "NIfTI output takes grey images; this checkpoint makes colour ones")
    kind = synth.meta.kind
    name = name or f"medgan_{slug(str(synth.meta.config.get('name') or kind))}_{kind}"
    exp = synth.export()  # type: ignore[attr-defined]  # load_exportable checked it
    module = exp.module
    _self_check(module, synth, exp.tolerance)
    meta = build_metadata(synth, exp, version, name)
    cfg = build_inference_config(synth, n_per_class, seed, batch_size, output_ext)
    weights = exp.weights
    st_meta = {
        "format": "medgan-bundle-generator/1",
        "kind": kind,
        "checkpoint_sha256": synth.sha256,
        "classes": json.dumps(synth.classes),
        "shape": json.dumps(list(synth.shape)),
        "model": json.dumps(synth.meta.model, sort_keys=True),
    }
    meta_text = json.dumps(meta, indent=4) + "\n"
    # TorchScript into memory first: torch's file writer aborts the process on a full disk, while
    # a Python write raises (ENOSPC), which the atomic folder turns into a clean one-line error
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, buffer, _extra_files={"metadata.json": meta_text})
    weights_bytes = canonical_safetensors(weights, st_meta)
    check_room(
        out,
        8,
        len(buffer.getvalue()) + len(weights_bytes) + 64_000,
        "the bundle",
        "free space or write it elsewhere",
    )
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for sub in ("configs", "models", "docs"):
            (tmp / sub).mkdir()
        atomic_write_text(tmp / "configs" / "metadata.json", meta_text)
        atomic_write_text(tmp / "configs" / "inference.json", json.dumps(cfg, indent=4) + "\n")
        atomic_write_text(tmp / "configs" / "logging.conf", LOGGING_CONF)
        atomic_write_bytes(tmp / "models" / "model.ts", buffer.getvalue())
        atomic_write_bytes(tmp / "models" / "model.safetensors", weights_bytes)
        atomic_write_text(tmp / "docs" / "README.md", _readme(synth, exp, meta, cfg, name))
    return out


def _self_check(module: torch.jit.ScriptModule, synth: Sampler, tolerance: float = 1e-5) -> None:
    """Refuse to write a bundle whose TorchScript module does not reproduce the checkpoint's sampler."""
    labels = [i % len(synth.classes) for i in range(4)]
    seeds = [0, 1, 2**62 + 7, 123456789]
    want = synth.generate(labels, seeds)
    with torch.no_grad():
        got = module(torch.tensor(seeds, dtype=torch.int64), torch.tensor(labels, dtype=torch.int64))
    if got.shape != want.shape or not torch.allclose(got, want, atol=tolerance, rtol=0):
        raise RuntimeError("the TorchScript export does not reproduce the sampler (please report this)")
