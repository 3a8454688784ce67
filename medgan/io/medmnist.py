"""MedMNIST ``.npz`` files (official keys ``{train,val,test}_{images,labels}``), any 2-D set.

``medmnist:NAME`` resolves under the data directory; when the file is missing and the network
is reachable it is downloaded from the official record with MD5 verification.
:func:`read_medmnist` returns the 2-D reader contract (:class:`~medgan.io.contract.Images2D`):
uint8 images per official split with their manifest rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgan.errors import InputError
from medgan.io.contract import ImageBatch, Images2D
from medgan.io.npz import read_npz, read_npz_keys
from medgan.paths import require_regular_file, user_cache_dir

#: The official MedMNIST record (v3 on Zenodo; the 28-px files are byte-identical to v2).
MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{name}.npz?download=1"
SPLIT_KEYS = ("train", "val", "test")
#: More distinct classes than this in a labels array means the file is broken.
MAX_CLASSES = 10_000


@dataclass(frozen=True)
class MedMNISTInfo:
    """What medgan knows about one official 2-D MedMNIST set (28 px file)."""

    md5: str
    task: str
    labels: tuple[str, ...]
    n_channels: int


_ORGAN = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)

#: Official 2-D MedMNIST sets: MD5 of the 28-px file, task, class names, channels (MedMNIST v2 INFO).
MEDMNIST_INFO: dict[str, MedMNISTInfo] = {
    "pathmnist": MedMNISTInfo(
        "a8b06965200029087d5bd730944a56c1",
        "multi-class",
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        3,
    ),
    "chestmnist": MedMNISTInfo("02c8a6516a18b556561a56cbdd36c4a8", "multi-label, binary-class", (), 1),
    "dermamnist": MedMNISTInfo(
        "0744692d530f8e62ec473284d019b0c7",
        "multi-class",
        (
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
        3,
    ),
    "octmnist": MedMNISTInfo(
        "c68d92d5b585d8d81f7112f81e2d0842",
        "multi-class",
        ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
        1,
    ),
    "pneumoniamnist": MedMNISTInfo(
        "28209eda62fecd6e6a2d98b1501bb15f", "binary-class", ("normal", "pneumonia"), 1
    ),
    "retinamnist": MedMNISTInfo(
        "bd4c0672f1bba3e3a89f0e4e876791e4", "ordinal-regression", ("0", "1", "2", "3", "4"), 3
    ),
    "breastmnist": MedMNISTInfo(
        "750601b1f35ba3300ea97c75c52ff8f6", "binary-class", ("malignant", "normal, benign"), 1
    ),
    "bloodmnist": MedMNISTInfo(
        "7053d0359d879ad8a5505303e11de1dc",
        "multi-class",
        (
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
        3,
    ),
    "tissuemnist": MedMNISTInfo(
        "ebe78ee8b05294063de985d821c1c34b",
        "multi-class",
        (
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ),
        1,
    ),
    "organamnist": MedMNISTInfo("866b832ed4eeba67bfb9edee1d5544e6", "multi-class", _ORGAN, 1),
    "organcmnist": MedMNISTInfo("0afa5834fb105f7705a7d93372119a21", "multi-class", _ORGAN, 1),
    "organsmnist": MedMNISTInfo("e5c39f1af030238290b9557d9503af9d", "multi-class", _ORGAN, 1),
}


def _base_name(name: str) -> str:
    """``breastmnist_64`` -> ``breastmnist``."""
    base, _, size = name.rpartition("_")
    return base if base and size.isdigit() else name


def candidate_paths(name: str, data_dir: Path) -> list[Path]:
    """Where ``medmnist:NAME`` is looked for, in order."""
    return [
        data_dir / "medmnist" / f"{name}.npz",
        data_dir / f"{name}.npz",
        user_cache_dir() / "medmnist" / f"{name}.npz",
    ]


def _download_target(name: str, data_dir: Path) -> Path:
    """``DATA_DIR/medmnist/NAME.npz`` when that folder can be written, else the user cache (nothing is created)."""
    target = data_dir / "medmnist"
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK):
        return target / f"{name}.npz"
    return user_cache_dir() / "medmnist" / f"{name}.npz"


def download_medmnist(name: str, dest: Path) -> Path:
    """Download the official ``NAME.npz`` to ``dest``, verifying its MD5; one-line error when offline."""
    info = MEDMNIST_INFO.get(name)
    if info is None:
        raise InputError(
            dest,
            f"no checksum is known for MedMNIST '{name}', so it is not downloaded; put the .npz file there",
        )
    import logging
    import sys

    from monai.apps import download_url

    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = MEDMNIST_URL.format(name=name)
    monai_log = logging.getLogger("monai.apps")
    level = monai_log.level
    monai_log.setLevel(logging.CRITICAL)  # our one-line error replaces MONAI's log lines
    try:
        download_url(
            url, filepath=str(dest), hash_val=info.md5, hash_type="md5", progress=sys.stderr.isatty()
        )
    except Exception as exc:  # network errors come in many types (URLError, HTTPError, timeouts, ...)
        for tmp in dest.parent.glob(f"{dest.name}*"):
            if tmp != dest:
                tmp.unlink(missing_ok=True)
        for folder in created:  # innermost first; only folders this call made, only if empty
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise InputError(
            dest,
            f"MedMNIST '{name}' is not on disk and could not be downloaded ({exc.__class__.__name__}); "
            f"download {url} and put it at {dest}, or set MEDGAN_DATA_DIR / --data-dir to a folder "
            f"holding medmnist/{name}.npz",
        ) from None
    finally:
        monai_log.setLevel(level)
    return dest


def resolve_medmnist(name: str, data_dir: Path, path: Path | None = None, download: bool = True) -> Path:
    """The ``.npz`` file for ``medmnist:NAME``: explicit path, data dir, user cache, else download."""
    if path is not None:
        if not Path(path).exists():
            raise InputError(path, "MedMNIST file not found")
        return require_regular_file(path, expected="a MedMNIST .npz file")
    name = name.lower().removesuffix(".npz")
    for p in candidate_paths(name, data_dir):
        if p.is_file():
            return p
    if _base_name(name) not in MEDMNIST_INFO:
        known = ", ".join(sorted(MEDMNIST_INFO))
        raise InputError(
            f"medmnist:{name}", f"unknown MedMNIST set and no file found (known 2-D sets: {known})"
        )
    dest = _download_target(name, data_dir)
    if not download:
        raise InputError(dest, f"MedMNIST '{name}' not found and download is off; put {name}.npz there")
    return download_medmnist(name, dest)


def read_medmnist_npz(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the official keys: split -> (images (N, H, W[, 3]) uint8, labels (N,) int64)."""
    wanted = {f"{s}_{part}" for s in SPLIT_KEYS for part in ("images", "labels")}
    arrays = read_npz(path, keys=wanted)
    keys = set(arrays)
    present = [s for s in SPLIT_KEYS if f"{s}_images" in keys]
    if not present:
        found = sorted(read_npz_keys(path))[:6]
        raise InputError(path, f"not a MedMNIST file: no '<split>_images' keys (found {found})")
    out = {}
    for s in present:
        if f"{s}_labels" not in keys:
            raise InputError(path, f"'{s}_images' has no matching '{s}_labels' key")
        out[s] = (arrays[f"{s}_images"], arrays[f"{s}_labels"])
    for s, (imgs, labs) in out.items():
        if imgs.ndim not in (3, 4) or (imgs.ndim == 4 and imgs.shape[-1] not in (1, 3)):
            raise InputError(path, f"'{s}_images' has shape {imgs.shape}; expected (N, H, W) or (N, H, W, 3)")
        if 0 in imgs.shape[1:3]:
            raise InputError(path, f"'{s}_images' has shape {imgs.shape}; images need at least one pixel")
        labs = np.asarray(labs)
        if labs.ndim == 2 and labs.shape[1] > 1:
            raise InputError(
                path, f"'{s}_labels' is multi-label {labs.shape}; medgan needs one class per image"
            )
        labs = labs.reshape(-1)
        if labs.shape[0] != imgs.shape[0]:
            raise InputError(path, f"'{s}' has {imgs.shape[0]} images but {labs.shape[0]} labels")
        out[s] = (imgs, _class_indices(labs, path, f"{s}_labels"))
    return out


def _class_indices(labs: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Labels as int64 class indices in ``0..MAX_CLASSES - 1``; one-line error for anything else."""
    if labs.dtype == np.bool_:
        labs = labs.astype(np.uint8)
    if labs.dtype.kind == "f":
        if labs.size and not (np.all(np.isfinite(labs)) and np.all(labs == np.round(labs))):
            raise InputError(path, f"'{key}' has non-integer values; labels are class numbers")
    elif labs.dtype.kind not in "iu":
        raise InputError(path, f"'{key}' has dtype {labs.dtype}; labels are integer class numbers")
    if labs.size and (labs.min() < 0 or labs.max() >= MAX_CLASSES):
        lo, hi = labs.min(), labs.max()
        raise InputError(
            path, f"'{key}' has values {lo}..{hi}; class numbers must be in 0..{MAX_CLASSES - 1}"
        )
    return labs.astype(np.int64)


def read_medmnist(name: str, data_dir: Path, path: Path | None = None, download: bool = True) -> Images2D:
    """Read a MedMNIST set with its official splits (file found as :func:`resolve_medmnist` says).

    One :class:`~medgan.io.contract.ImageBatch` per split present: uint8 pixels (n, C, H, W) and
    rows carrying the official ``split``; ``info`` has ``file``, ``task`` and the integer
    ``raw_range`` of all pixels.
    """
    path = resolve_medmnist(name, data_dir, path, download)
    splits = read_medmnist_npz(path)
    info = MEDMNIST_INFO.get(_base_name(name.lower().removesuffix(".npz")))
    if not any(lab.size for _, lab in splits.values()):
        raise InputError(path, "holds no images (every split is empty)")
    n_classes = int(max(int(lab.max()) for _, lab in splits.values() if lab.size) + 1)
    classes = (
        list(info.labels) if info and len(info.labels) >= n_classes else [str(i) for i in range(n_classes)]
    )
    source = str(path)
    batches = []
    raw_lo, raw_hi = 255, 0
    for split, (imgs, labs) in splits.items():
        if imgs.dtype != np.uint8:
            raise InputError(path, f"'{split}_images' has dtype {imgs.dtype}; MedMNIST images are uint8")
        if labs.size and (labs.min() < 0 or labs.max() >= len(classes)):
            raise InputError(path, f"'{split}_labels' has values outside 0..{len(classes) - 1}")
        arr = imgs[:, None] if imgs.ndim == 3 else np.moveaxis(imgs, -1, 1)
        if imgs.size:
            raw_lo, raw_hi = min(raw_lo, int(imgs.min())), max(raw_hi, int(imgs.max()))
        rows = [
            {
                "label": lab,
                "label_name": classes[lab],
                "split": split,
                "source": source,
                "source_format": "medmnist",
                "slice_index": i,
                "rows": arr.shape[2],
                "cols": arr.shape[3],
            }
            for i, lab in enumerate(labs.tolist())
        ]
        batches.append(ImageBatch(arr, rows, source))
    return Images2D(
        classes,
        batches,
        "medmnist",
        where=source,
        info={"file": source, "task": info.task if info else None, "raw_range": [raw_lo, raw_hi]},
    )
