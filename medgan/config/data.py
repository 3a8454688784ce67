"""The ``data:`` section: where slices come from (one source model per input format) and their shape."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from medgan.config.base import Seed, StrictModel
from medgan.errors import ConfigError
from medgan.intensity import WINDOW_PRESETS
from medgan.io.limits import MAX_VOXELS_ENV, max_voxels
from medgan.paths import resolve_under


class Window(StrictModel):
    """An explicit display window in raw units (HU for CT)."""

    center: float
    width: float = Field(gt=0)


class IntensityConfig(StrictModel):
    """How raw intensities map onto [-1, 1].

    ``auto``: a CT window when one is given (or, for DICOM CT, the file's own
    WindowCenter/WindowWidth); the full dtype range for image files (8 / 16 bit) and for
    uint8 volumes; otherwise per-volume percentiles (the usual choice for MR, whatever the
    stored integer type).
    """

    mode: Literal["auto", "window", "percentile", "minmax", "dtype"] = "auto"
    window: str | Window | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)

    @field_validator("window")
    @classmethod
    def _known_preset(cls, v: str | Window | None) -> str | Window | None:
        if isinstance(v, str) and v not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {v!r}; choose one of {sorted(WINDOW_PRESETS)}")
        return v

    @field_validator("percentiles")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] < v[1] <= 100.0:
            raise ValueError("percentiles must satisfy 0 <= low < high <= 100")
        return v

    @model_validator(mode="after")
    def _window_needed(self) -> IntensityConfig:
        if self.mode == "window" and self.window is None:
            raise ValueError("mode 'window' needs a window (a preset name or center/width)")
        return self


def _check_exists(path: Path, key: str) -> Path:
    if not path.exists():
        raise ConfigError(key, f"file not found: {path}")
    return path


class MedMNISTSource(StrictModel):
    """An official MedMNIST ``.npz`` (any 2-D set, any official size), e.g. ``name: breastmnist``."""

    kind: Literal["medmnist"]
    name: str
    path: Path | None = None
    download: bool = True

    def resolved(self, data_dir: Path, key: str = "data.source") -> MedMNISTSource:
        """Absolute paths under ``data_dir`` (the .npz may be downloaded later)."""
        if self.path is None:
            return self
        return self.model_copy(
            update={"path": _check_exists(resolve_under(self.path, data_dir), f"{key}.path")}
        )


class ImageFolderSource(StrictModel):
    """PNG / JPEG / TIFF files listed in a CSV with columns ``path,label[,patient_id][,split]``."""

    kind: Literal["images"]
    labels_csv: Path
    root: Path | None = None
    classes: list[str] | None = None
    intensity: IntensityConfig = Field(default_factory=IntensityConfig)

    def resolved(self, data_dir: Path, key: str = "data.source") -> ImageFolderSource:
        """Absolute, existing paths."""
        csv = _check_exists(resolve_under(self.labels_csv, data_dir), f"{key}.labels_csv")
        root = (
            csv.parent
            if self.root is None
            else _check_exists(resolve_under(self.root, data_dir), f"{key}.root")
        )
        return self.model_copy(update={"labels_csv": csv, "root": root})


class VolumeOptions(StrictModel):
    """Options shared by volume sources (DICOM series, NIfTI): labelling and empty-slice filtering."""

    min_lesion_px: int = Field(1, ge=1)
    empty_threshold: float | None = None
    min_body_fraction: float = Field(0.01, ge=0.0, le=1.0)
    classes: list[str] = Field(default_factory=lambda: ["healthy", "lesion"])
    unlabelled_class: str | None = None
    patient_id: str | None = None
    intensity: IntensityConfig = Field(default_factory=IntensityConfig)

    @field_validator("classes")
    @classmethod
    def _two_classes(cls, v: list[str]) -> list[str]:
        if len(v) != 2 or len(set(v)) != 2:
            raise ValueError("volume sources have exactly two distinct classes: [without-mask, with-mask]")
        return v


class DicomSource(VolumeOptions):
    """A DICOM file, multi-frame file or folder of files (grouped into series), with an optional mask."""

    kind: Literal["dicom"]
    path: Path
    mask: Path | None = None
    segments: list[int] | None = None
    series: str | None = None

    def resolved(self, data_dir: Path, key: str = "data.source") -> DicomSource:
        """Absolute, existing paths."""
        upd: dict[str, Any] = {"path": _check_exists(resolve_under(self.path, data_dir), f"{key}.path")}
        if self.mask is not None:
            upd["mask"] = _check_exists(resolve_under(self.mask, data_dir), f"{key}.mask")
        return self.model_copy(update=upd)


class NiftiCase(StrictModel):
    """One image volume with its optional label volume."""

    image: Path
    mask: Path | None = None
    patient_id: str | None = None


class NiftiSource(VolumeOptions):
    """NIfTI (or NRRD / MHA) volumes with optional lesion masks, sliced along ``axis``."""

    kind: Literal["nifti"]
    image: Path | None = None
    mask: Path | None = None
    cases: list[NiftiCase] | None = None
    axis: Literal["axial", "coronal", "sagittal"] = "axial"
    volume_index: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _image_or_cases(self) -> NiftiSource:
        if (self.image is None) == (self.cases is None):
            raise ValueError("give either 'image' (with optional 'mask') or 'cases', not both")
        if self.cases is not None and self.mask is not None:
            raise ValueError("'mask' goes inside each entry of 'cases'")
        if self.cases is not None and not self.cases:
            raise ValueError("'cases' is empty")
        return self

    def case_list(self) -> list[NiftiCase]:
        """The volumes to read, as a list of cases."""
        if self.cases is not None:
            return list(self.cases)
        assert self.image is not None
        return [NiftiCase(image=self.image, mask=self.mask, patient_id=self.patient_id)]

    def resolved(self, data_dir: Path, key: str = "data.source") -> NiftiSource:
        """Absolute, existing paths (single image/mask is turned into one case)."""
        cases = []
        for i, c in enumerate(self.case_list()):
            k = f"{key}.cases.{i}" if self.cases is not None else key
            cases.append(
                NiftiCase(
                    image=_check_exists(resolve_under(c.image, data_dir), f"{k}.image"),
                    mask=None
                    if c.mask is None
                    else _check_exists(resolve_under(c.mask, data_dir), f"{k}.mask"),
                    patient_id=c.patient_id,
                )
            )
        return self.model_copy(update={"cases": cases, "image": None, "mask": None})


Source = Annotated[
    MedMNISTSource | ImageFolderSource | DicomSource | NiftiSource, Field(discriminator="kind")
]


class SplitConfig(StrictModel):
    """Fractions for seeded, label-stratified, patient-grouped splits (official splits win)."""

    train: float = Field(0.7, ge=0.0, le=1.0)
    val: float = Field(0.15, ge=0.0, le=1.0)
    test: float = Field(0.15, ge=0.0, le=1.0)
    seed: Seed = 0
    #: An explicit split (a ``split`` column) that puts one patient in two splits is refused; true
    #: accepts it and flags it in inspect, prepare, run and the report (a leak between splits).
    allow_patient_overlap: bool = False

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1 (got {total:g})")
        return self


class DataConfig(StrictModel):
    """Where the slices come from and how they are shaped."""

    source: Source
    size: int | tuple[int, int] | None = None
    channels: Literal[1, 3] | None = None
    splits: SplitConfig = Field(default_factory=SplitConfig)

    @field_validator("size")
    @classmethod
    def _positive(cls, v: int | tuple[int, int] | None) -> int | tuple[int, int] | None:
        sizes = [v] if isinstance(v, int) else list(v or [])
        if any(s < 4 for s in sizes):
            raise ValueError("size must be at least 4 pixels")
        if sizes and math.prod(sizes if len(sizes) == 2 else sizes * 2) > max_voxels():
            raise ValueError(
                f"size {v} makes one slice larger than the limit of {max_voxels():,} values "
                f"({MAX_VOXELS_ENV}); every slice is resized to this size"
            )
        return v

    def hw(self) -> tuple[int, int] | None:
        """The configured (H, W), or None to keep the native size."""
        if self.size is None:
            return None
        return (
            (self.size, self.size) if isinstance(self.size, int) else (int(self.size[0]), int(self.size[1]))
        )
