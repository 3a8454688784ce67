"""The ``data:`` section: where slices come from (one source model per input format) and their shape."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from medgan.config.base import Seed, StrictModel
from medgan.errors import ConfigError, InputError
from medgan.intensity import WINDOW_PRESETS
from medgan.io.limits import MAX_VOXELS_ENV, max_voxels
from medgan.paths import inside, require_regular_file, resolve_under


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
    """NIfTI (or NRRD / MHA) volumes with optional lesion masks, sliced along ``axis``.

    The volumes are one ``image`` (with its ``mask``), a ``cases`` list, a ``cases_csv`` (columns
    ``image[,mask][,patient_id]``, paths relative to the CSV's folder), or a ``cases_glob`` (image
    files under the data directory, e.g. ``imagesTr/*.nii.gz``) with ``mask_pattern`` naming each
    image's mask (``labelsTr/{name}``: ``{name}`` is the image's file name, ``{stem}`` the name
    without its extension); the patient ID of a globbed case is its stem.
    """

    kind: Literal["nifti"]
    image: Path | None = None
    mask: Path | None = None
    cases: list[NiftiCase] | None = None
    cases_csv: Path | None = None
    cases_glob: str | None = None
    mask_pattern: str | None = None
    axis: Literal["axial", "coronal", "sagittal"] = "axial"
    volume_index: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _image_or_cases(self) -> NiftiSource:
        given = [k for k in ("image", "cases", "cases_csv", "cases_glob") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'image' (with optional 'mask'), 'cases', 'cases_csv' or 'cases_glob'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.image is None and self.mask is not None:
            raise ValueError("'mask' goes with 'image' (each case names its own)")
        if self.mask_pattern is not None and self.cases_glob is None:
            raise ValueError("'mask_pattern' goes with 'cases_glob'")
        if self.cases is not None and not self.cases:
            raise ValueError("'cases' is empty")
        return self

    def case_list(self) -> list[NiftiCase]:
        """The volumes to read, as a list of cases (after :meth:`resolved` for a CSV or a glob)."""
        if self.cases is not None:
            return list(self.cases)
        assert self.image is not None, "resolve a cases_csv / cases_glob source first"
        return [NiftiCase(image=self.image, mask=self.mask, patient_id=self.patient_id)]

    def resolved(self, data_dir: Path, key: str = "data.source") -> NiftiSource:
        """Absolute, existing paths (single image/mask is turned into one case; a CSV or a glob
        into its cases)."""
        if self.cases_csv is not None:
            listed = cases_from_csv(
                _check_exists(resolve_under(self.cases_csv, data_dir), f"{key}.cases_csv")
            )
            return self.model_copy(update={"cases": listed, "cases_csv": None}).resolved(data_dir, key)
        if self.cases_glob is not None:
            listed = cases_from_glob(self.cases_glob, self.mask_pattern, data_dir, key)
            return self.model_copy(
                update={"cases": listed, "cases_glob": None, "mask_pattern": None}
            ).resolved(data_dir, key)
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


#: Columns of a ``cases_csv``.
CASE_COLUMNS = ("image", "mask", "patient_id")
_VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def cases_from_csv(path: Path) -> list[NiftiCase]:
    """The cases a CSV lists (``image[,mask][,patient_id]``, paths relative to the CSV's folder and
    inside it); a missing column, an unknown one, an empty image cell or a path that leaves the
    folder is a one-line error naming the CSV and the row."""
    require_regular_file(path, expected="a cases CSV file")
    try:
        rows = [
            r
            for r in csv.reader(path.read_text(encoding="utf-8-sig").splitlines())
            if any(c.strip() for c in r)
        ]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"not a readable UTF-8 CSV file ({exc.__class__.__name__})") from None
    if not rows:
        raise InputError(path, "empty file; expected a header line 'image[,mask][,patient_id]'")
    header = [c.strip().lower() for c in rows[0]]
    unknown = [c for c in header if c not in CASE_COLUMNS]
    if unknown or "image" not in header or len(set(header)) != len(header):
        raise InputError(path, f"header {header}: expected the columns 'image[,mask][,patient_id]' once each")
    if len(rows) == 1:
        raise InputError(path, "no rows: the CSV has a header but lists no cases")
    cases = []
    for n, cells in enumerate(rows[1:], start=1):
        rec = dict(zip(header, [c.strip() for c in cells] + [""] * (len(header) - len(cells)), strict=False))
        if len(cells) > len(header) or not rec["image"]:
            raise InputError(path, f"row {n}: {'too many cells' if len(cells) > len(header) else 'no image'}")
        image = inside(path.parent, rec["image"], path, f"row {n}: image")
        mask = inside(path.parent, rec["mask"], path, f"row {n}: mask") if rec.get("mask") else None
        cases.append(NiftiCase(image=image, mask=mask, patient_id=rec.get("patient_id") or None))
    return cases


def _stem(name: str) -> str:
    return next((name[: -len(s)] for s in _VOLUME_SUFFIXES if name.lower().endswith(s)), Path(name).stem)


def cases_from_glob(pattern: str, mask_pattern: str | None, data_dir: Path, key: str) -> list[NiftiCase]:
    """The image files ``pattern`` matches under ``data_dir`` (sorted), each with the mask
    ``mask_pattern`` names and its stem as patient ID; no match is a one-line error."""
    found = sorted(p for p in Path(data_dir).glob(pattern) if p.is_file())
    if not found:
        raise ConfigError(f"{key}.cases_glob", f"{pattern!r} matches no file under {data_dir}")
    cases = []
    for p in found:
        mask = None
        if mask_pattern is not None:
            try:
                rel = mask_pattern.format(name=p.name, stem=_stem(p.name))
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"{key}.mask_pattern", f"{mask_pattern!r}: use {{name}} or {{stem}} ({exc})"
                ) from None
            mask = resolve_under(Path(rel), data_dir)
        cases.append(NiftiCase(image=p, mask=mask, patient_id=_stem(p.name)))
    return cases


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
    #: Near-duplicate images (frames of one scan, re-crops: :data:`medgan.data.identity.NEAR_DUPLICATE_COSINE`)
    #: kept in one split when splits are assigned, and counted: ``auto`` for image folders (2-D
    #: images without patient ids, e.g. BUSI), ``on`` for every source (volumes too; with given
    #: splits it counts the groups that span them), ``off`` for identical images only.
    near_duplicates: Literal["auto", "on", "off"] = "auto"

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
