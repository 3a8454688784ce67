"""``medgan export-bundle``: a conditional-GAN checkpoint as a self-contained MONAI bundle.

The bundle runs where medgan is not installed (MONAI, PyTorch and NumPy suffice)::

    BUNDLE/
      configs/metadata.json     MONAI bundle metadata + medgan provenance (checkpoint SHA-256, classes)
      configs/inference.json    ``python -m monai.bundle run`` config: (label, seed) plan -> images
      models/model.ts           TorchScript: forward(seeds int64 (N,), labels int64 (N,)) -> (N, C, H, W)
      models/model.safetensors  the generator's (EMA) weights, no pickle
      docs/README.md            what it is, the classes, how to run it

``model.ts`` draws each image's noise inside the module with the same counter-based SplitMix64
generator as :func:`medgan.synthesis.cgan.noise_for_seeds`, and ``inference.json`` derives the
per-image seeds as :func:`medgan.generate.plan` does, so the bundle writes the same images (same
file names, same 8-bit pixels) as ``medgan generate --format png`` with the same ``--seed``.
There is no ``models/model.pt``: medgan never writes pickled weights.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medgan import __version__
from medgan.errors import InputError
from medgan.io.atomic import atomic_dir, atomic_write_text
from medgan.io.tensors import write_safetensors
from medgan.paths import slug
from medgan.synthesis import registry
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

# TorchScript cannot read module globals, so the SplitMix64 constants of medgan.synthesis.cgan
# (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB as signed int64), the bit masks,
# 2**-53 and 2*pi are written out as literals below; tests/test_bundle.py checks that the noise
# equals noise_for_seeds bit for bit.


def _mix64_ts(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ ((z >> 30) & 17179869183)) * -4658895280553007687
    z = (z ^ ((z >> 27) & 137438953471)) * -7723592293110705685
    return z ^ ((z >> 31) & 8589934591)


def seeded_noise(seeds: torch.Tensor, z_dim: int) -> torch.Tensor:
    """TorchScript-compatible :func:`~medgan.synthesis.cgan.noise_for_seeds`: (N,) int64 seeds -> (N, z_dim) float32.

    Same integer hashing and float64 Box-Muller, op for op, so the vectors are bit-identical.
    """
    s = seeds.to(torch.int64)
    half = (z_dim + 1) // 2
    j = torch.arange(1, 2 * half + 1, dtype=torch.int64, device=s.device)
    x = _mix64_ts(_mix64_ts(s).unsqueeze(1) + j.unsqueeze(0) * -7046029254386353131)
    u = (((x >> 11) & 9007199254740991).double() + 0.5) * 1.1102230246251565e-16
    r = torch.sqrt(-2.0 * torch.log(u[:, :half]))
    theta = 6.283185307179586 * u[:, half:]
    return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)[:, :z_dim].float()


class SeededGenerator(nn.Module):
    """``forward(seeds, labels)``: a conditional generator that draws its own per-seed noise; images in [-1, 1]."""

    def __init__(self, generator: nn.Module, z_dim: int, n_classes: int) -> None:
        super().__init__()
        self.generator = generator
        self.z_dim = z_dim
        self.n_classes = n_classes

    def forward(self, seeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) int64 seeds and class indices -> (N, C, H, W) float32 images in [-1, 1]."""
        if seeds.dim() != 1 or labels.dim() != 1 or seeds.size(0) != labels.size(0):
            raise ValueError("seeds and labels must be 1-D tensors of the same length")
        if labels.numel() > 0 and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError("labels must be class indices in [0, n_classes)")
        z = seeded_noise(seeds, self.z_dim)
        return self.generator(z, labels.to(torch.int64).to(z.device)).float()


def script_generator(generator: nn.Module, z_dim: int, n_classes: int) -> torch.jit.ScriptModule:
    """A CPU, eval-mode, gradient-free TorchScript :class:`SeededGenerator` around ``generator`` (scripted, else traced)."""
    import copy

    g = copy.deepcopy(generator).cpu().eval().to(memory_format=torch.contiguous_format)
    for p in g.parameters():
        p.requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still supported
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            inner: nn.Module = torch.jit.script(g)
        except Exception:  # a generator TorchScript cannot compile: trace it (shapes stay dynamic in N)
            z = torch.zeros(2, z_dim)
            inner = torch.jit.trace(g, (z, torch.zeros(2, dtype=torch.int64)), check_trace=False)
        module = torch.jit.script(SeededGenerator(inner, z_dim, n_classes))
    return module.eval()


def _data_description(meta: CheckpointMeta) -> tuple[str, str]:
    """(data_source, data_type) for the metadata, from the checkpoint's config and data record."""
    src = (meta.config.get("data") or {}).get("source") or {}
    kind = src.get("kind") or meta.data.source_format or "unknown"
    what = src.get("name") or src.get("path") or ""
    n = meta.data.n_train
    source = f"{kind}{': ' + str(what) if what else ''}, train split" + (f" ({n} slices)" if n else "")
    return source, str(meta.data.source_format or kind)


def build_metadata(synth: Any, version: str, name: str) -> dict[str, Any]:
    """The bundle's ``metadata.json`` content (MONAI schema fields + medgan provenance) for a loaded synthesizer."""
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
            f"A class-conditional GAN generator trained with medgan on {source}. Given a class index and "
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
        "references": [
            "Miyato T., Koyama M. cGANs with Projection Discriminator. ICLR 2018. https://arxiv.org/abs/1802.05637"
        ],
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
            "z_dim": synth.model_cfg.z_dim,
            "model": meta.model,
            "intensity": meta.data.intensity.model_dump(exclude_unset=True)
            if "data" in meta.model_fields_set
            else None,
            "synthetic": True,
            "noise": "z = noise_for_seeds(seed): SplitMix64 counter hash + float64 Box-Muller (medgan.synthesis.cgan)",
            "seed_derivation": (
                "image k of class c uses seed int(SeedSequence([S, c, k]).generate_state(1, uint64)[0] >> 1), "
                "S = the run seed (as medgan generate --seed S)"
            ),
        },
    }


def build_inference_config(synth: Any, n_per_class: int, seed: int, batch_size: int, output_ext: str) -> dict:
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


def _readme(synth: Any, meta: dict[str, Any], cfg: dict[str, Any], name: str) -> str:
    c, h, w = synth.shape
    classes = "\n".join(f"| {i} | {n} |" for i, n in enumerate(synth.classes))
    return f"""# {name}

A class-conditional GAN generator exported by medgan {__version__} as a MONAI bundle.
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
- `models/model.safetensors`: the generator weights (no `model.pt`: medgan never writes pickles).

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
    """Write a MONAI bundle for a conditional-GAN ``checkpoint`` into ``out`` (atomically); returns ``out``.

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
    synth = registry.load(checkpoint, "cpu", makes="samples")
    if output_ext == ".nii.gz" and synth.shape[0] != 1:
        raise InputError("--output-ext", "NIfTI output takes grey images; this checkpoint makes colour ones")
    name = name or f"medgan_{slug(str(synth.meta.config.get('name') or 'cgan'))}_cgan"
    module = script_generator(synth.g, synth.model_cfg.z_dim, len(synth.classes))
    _self_check(module, synth)
    meta = build_metadata(synth, version, name)
    cfg = build_inference_config(synth, n_per_class, seed, batch_size, output_ext)
    weights = {k: v.detach().cpu().contiguous() for k, v in synth.g.state_dict().items()}
    st_meta = {
        "format": "medgan-bundle-generator/1",
        "checkpoint_sha256": synth.sha256,
        "classes": json.dumps(synth.classes),
        "shape": json.dumps(list(synth.shape)),
        "model": json.dumps(synth.meta.model, sort_keys=True),
    }
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for sub in ("configs", "models", "docs"):
            (tmp / sub).mkdir()
        meta_text = json.dumps(meta, indent=4) + "\n"
        atomic_write_text(tmp / "configs" / "metadata.json", meta_text)
        atomic_write_text(tmp / "configs" / "inference.json", json.dumps(cfg, indent=4) + "\n")
        atomic_write_text(tmp / "configs" / "logging.conf", LOGGING_CONF)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(
                module, str(tmp / "models" / "model.ts"), _extra_files={"metadata.json": meta_text}
            )
        write_safetensors(tmp / "models" / "model.safetensors", weights, metadata=st_meta)
        atomic_write_text(tmp / "docs" / "README.md", _readme(synth, meta, cfg, name))
    return out


def _self_check(module: torch.jit.ScriptModule, synth: Any) -> None:
    """Refuse to write a bundle whose TorchScript module does not reproduce the checkpoint's generator."""
    labels = [i % len(synth.classes) for i in range(4)]
    seeds = [0, 1, 2**62 + 7, 123456789]
    want = synth.generate(labels, seeds)
    with torch.no_grad():
        got = module(torch.tensor(seeds, dtype=torch.int64), torch.tensor(labels, dtype=torch.int64))
    if got.shape != want.shape or not torch.allclose(got, want, atol=1e-5, rtol=0):
        raise RuntimeError("the TorchScript export does not reproduce the generator (please report this)")
