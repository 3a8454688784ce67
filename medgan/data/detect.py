"""Turn a command-line SOURCE (``medmnist:NAME``, a path, a config) into a :class:`DataConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medgan.config import DataConfig, apply_overrides, config_from_dict, load_config
from medgan.errors import InputError

_NIFTI = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
_IMAGES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` starts with the DICOM preamble (``DICM`` at byte 128) or has a .dcm suffix."""
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def find_input(spec: str | Path, data_dir: Path) -> Path:
    """A path as given (relative to the working folder) or, failing that, under the data directory."""
    p = Path(spec).expanduser()
    if p.exists():
        return p.resolve()
    q = data_dir / p
    if not p.is_absolute() and q.exists():
        return q.resolve()
    where = f"{p}" if p.is_absolute() else f"{p} (looked in the working folder and in {data_dir})"
    raise InputError(where, "file or folder not found")


def _kind_of(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        files = [f for f in path.rglob("*") if f.is_file()]
        if not files:
            raise InputError(path, "folder is empty")
        if any(f.name.lower().endswith(_NIFTI) for f in files) and not any(
            is_dicom_file(f) for f in files[:200]
        ):
            raise InputError(path, "is a folder of volumes; give one NIfTI file (or a config with 'cases')")
        csvs = [f for f in path.iterdir() if f.suffix.lower() == ".csv"]
        if csvs and not any(is_dicom_file(f) for f in files[:200]):
            raise InputError(path, f"is an image folder; give its labels CSV ({csvs[0].name})")
        return "dicom"
    if name.endswith((".yaml", ".yml")):
        return "config"
    if name.endswith(".npz"):
        return "medmnist"
    if name.endswith(".csv"):
        return "images"
    if name.endswith(_NIFTI):
        return "nifti"
    if name.endswith(_IMAGES):
        raise InputError(
            path, "a single image has no label; list images in a CSV (path,label) and give the CSV"
        )
    if is_dicom_file(path):
        return "dicom"
    raise InputError(
        path,
        "unrecognised input; expected medmnist:NAME, .npz, labels .csv, NIfTI/NRRD, DICOM file/folder or .yaml",
    )


def source_from_spec(
    spec: str,
    data_dir: Path,
    *,
    mask: str | None = None,
    overrides: list[str] | None = None,
    source_options: dict[str, Any] | None = None,
    data_options: dict[str, Any] | None = None,
) -> DataConfig:
    """Build the :class:`DataConfig` that ``medgan data inspect SOURCE`` reads."""
    src_opts = {k: v for k, v in (source_options or {}).items() if v is not None}
    data_opts = {k: v for k, v in (data_options or {}).items() if v is not None}
    if spec.lower().startswith("medmnist:"):
        source: dict[str, Any] = {"kind": "medmnist", "name": spec.split(":", 1)[1]}
    else:
        path = find_input(spec, data_dir)
        kind = _kind_of(path)
        if kind == "config":
            cfg = load_config(path, overrides)
            return cfg.data
        if kind == "medmnist":
            source = {"kind": "medmnist", "name": path.name[: -len(".npz")], "path": str(path)}
        elif kind == "images":
            source = {"kind": "images", "labels_csv": str(path)}
        elif kind == "nifti":
            source = {"kind": "nifti", "image": str(path)}
        else:
            source = {"kind": "dicom", "path": str(path)}
    if mask is not None:
        if source["kind"] not in ("nifti", "dicom"):
            raise InputError(mask, f"--mask applies to DICOM and NIfTI sources, not {source['kind']}")
        source["mask"] = str(find_input(mask, data_dir))
    source.update(src_opts)
    raw: dict[str, Any] = {"data": {"source": source, **data_opts}}
    raw = apply_overrides(raw, list(overrides or []))
    return config_from_dict(raw, "command line").data
