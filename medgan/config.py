"""Typed run configuration, loaded from YAML with ``--set key.path=value`` overrides.

Unknown keys, wrong types and missing files fail with a :class:`~medgan.errors.ConfigError`
naming the file and the key. Paths in a config are relative to the data directory
(``--data-dir``, else ``$MEDGAN_DATA_DIR``, else the user cache).
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from medgan.errors import ConfigError
from medgan.intensity import WINDOW_PRESETS
from medgan.io.limits import MAX_VOXELS_ENV, max_voxels
from medgan.paths import resolve_under


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
    seed: int = 0

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


class SpectralNormConfig(StrictModel):
    """Where spectral normalisation wraps conv / linear / embedding weights."""

    generator: bool = False
    discriminator: bool = True


class CGANConfig(StrictModel):
    """Class-conditional GAN: noise + class -> slice (see docs/synthesis.md for every option)."""

    kind: Literal["cgan"] = "cgan"
    z_dim: int = Field(128, ge=1)
    embed_dim: int = Field(64, ge=1)
    g_channels: int = Field(128, ge=8)
    d_channels: int = Field(32, ge=8)
    g_max_channels: int = Field(512, ge=8)
    d_max_channels: int = Field(512, ge=8)
    g_norm: Literal["group", "batch", "instance", "none"] = "group"
    g_res_units: int = Field(1, ge=0, le=4)
    d_res_units: int = Field(1, ge=0, le=4)
    spectral_norm: SpectralNormConfig = Field(default_factory=SpectralNormConfig)
    init: Literal["xavier", "he", "normal", "default"] = "xavier"
    g_cond: Literal["input", "norm"] = "norm"
    d_arch: Literal["patch", "global"] = "global"
    mbstd_group: int = Field(4, ge=0)
    # the objective and what trains with it (under ``train:`` before 2026-11-29; still read there)
    loss: Literal["hinge", "nonsaturating", "wgan-gp", "rpgan"] = "hinge"
    gp_weight: float = Field(10.0, ge=0.0)
    r1_gamma: float = Field(0.0, ge=0.0)
    r2_gamma: float = Field(0.0, ge=0.0)
    r1_every: int = Field(16, ge=1)
    lecam_weight: float = Field(0.0, ge=0.0)
    lecam_decay: float = Field(0.99, ge=0.0, lt=1.0)
    d_steps: int = Field(1, ge=1)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    ema_start: int = Field(0, ge=0)
    ema_kimg: float | None = Field(10.0, gt=0.0)
    ema_rampup: float | None = Field(0.05, gt=0.0)
    diffaugment: Literal["auto"] | list[Literal["translation", "cutout", "color"]] = Field(
        default_factory=lambda: ["translation", "cutout", "color"]
    )
    xflip: bool = False
    class_balance: bool = False

    #: Defaults this kind gives the shared ``train:`` keys (none: the shared defaults are the cGAN's).
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {}


#: What a checkpoint written before a model key existed was built with: a key missing from a
#: checkpoint's recorded model config takes this value, not today's default.
CGAN_LEGACY = {"g_cond": "input", "d_arch": "patch", "mbstd_group": 0}

#: The same for the training keys of the small-data recipe (what a run without them did), as
#: dotted config keys; a resume may name these values for keys its checkpoint does not record.
LEGACY_KEYS: dict[str, object] = {
    **{f"model.{k}": v for k, v in CGAN_LEGACY.items()},
    "model.ema_kimg": None,
    "model.ema_rampup": 0.05,
    "model.r1_gamma": 0.0,
    "model.r2_gamma": 0.0,
    "model.r1_every": 16,
    "model.lecam_weight": 0.0,
    "model.lecam_decay": 0.99,
    "model.xflip": False,
    "train.select.every": 0,
    "train.select.metric": "fid",
    "train.select.n": 200,
    "train.select.features": "inception",
    "train.select.seed": 777,
}


class CycleGANConfig(StrictModel):
    """Unpaired translation between two domains (healthy <-> lesion); see docs/synthesis.md."""

    kind: Literal["cyclegan"]
    domain_a: str | int = 0
    domain_b: str | int = 1
    generator: Literal["resnet", "unet"] = "resnet"
    g_channels: int = Field(64, ge=4)
    n_res_blocks: int | None = Field(None, ge=1)
    n_downsampling: int = Field(2, ge=1, le=4)
    d_channels: int = Field(64, ge=4)
    d_layers: int | None = Field(None, ge=1, le=5)
    d_scales: int = Field(1, ge=1, le=4)
    norm: Literal["instance", "batch", "group"] = "instance"
    lambda_cycle: float = Field(10.0, ge=0.0)
    lambda_identity: float = Field(0.5, ge=0.0)
    pool_size: int = Field(50, ge=0)
    init: Literal["xavier", "he", "normal", "default"] = "normal"
    diffaugment: list[Literal["translation", "cutout", "color"]] = Field(default_factory=list)

    #: The reference CycleGAN optimisation (Zhu et al. 2017): the shared ``train:`` keys take these
    #: values where a config does not set them.
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "betas": (0.5, 0.999),
        "lr_schedule": "linear_decay",
        "batch_size": 8,
    }


def _model_kind(v: Any) -> str:
    if isinstance(v, dict):
        return v.get("kind", "cgan")
    return getattr(v, "kind", "cgan")


ModelConfig = Annotated[
    Annotated[CGANConfig, Tag("cgan")] | Annotated[CycleGANConfig, Tag("cyclegan")],
    Discriminator(_model_kind),
]


class SelectConfig(StrictModel):
    """Checkpoint selection on the validation split (docs/synthesis.md): score the EMA generator every
    ``every`` steps, keep the best as ``checkpoints/best``. ``every: 0`` turns it off."""

    every: int = Field(0, ge=0)
    metric: Literal["fid", "kid"] = "fid"
    n: int = Field(200, ge=10)
    features: str = "inception"
    seed: int = 777


class TrainConfig(StrictModel):
    """Optimisation, logging and checkpointing of the shared fit loop (every synthesizer kind).

    Keys of one synthesizer's objective (a cGAN's loss, EMA, regularisers, DiffAugment) live in
    its ``model:`` section. A kind may change the defaults of these shared keys (the CycleGAN's
    reference settings: :attr:`CycleGANConfig.TRAIN_DEFAULTS`).
    """

    steps: int = Field(2000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr_g: float = Field(2e-4, gt=0.0)
    lr_d: float = Field(2e-4, gt=0.0)
    betas: tuple[float, float] = (0.0, 0.99)
    lr_schedule: Literal["constant", "linear_decay"] = "constant"
    decay_start: float = Field(0.5, ge=0.0, le=1.0)
    select: SelectConfig = Field(default_factory=SelectConfig)
    sample_every: int = Field(250, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_last: int = Field(3, ge=1)
    log_every: int = Field(10, ge=1)
    samples_per_class: int = Field(8, ge=1, le=64)
    device: str = "auto"
    amp: Literal["auto", "bf16", "bf16-if-native", "off"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: bool = False
    #: Experiment trackers for training runs and studies (medgan.training.tracking); None:
    #: TensorBoard when it is installed, [] for none.
    tracking: list[Literal["tensorboard", "mlflow"]] | None = None

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu") and not v.startswith("cuda") and v != "mps":
            raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
        return v


class ClassifierConfig(StrictModel):
    """A MONAI classifier trained on real slices (label-preservation checks, domain features, the study)."""

    arch: Literal["resnet10", "resnet18", "densenet121"] = "resnet10"
    width: int = Field(16, ge=4)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(8, ge=1)
    class_weighted: bool = False
    augment: bool = True
    seed: int = 0
    device: str = "auto"


def _positive_ratios(v: list[float]) -> list[float]:
    """Synthetic ratios: a non-empty list of values > 0."""
    if not v or any(r <= 0 for r in v):
        raise ValueError("ratios must be a non-empty list of values > 0")
    return v


class LeverConfig(StrictModel):
    """One named variant of the synthetic arms: how synthetic slices are mixed into training.

    Each lever adds the arms ``<arm>[<name>]`` (for every arm in ``arms``) beside the plain ones,
    with the study's own settings overridden by the fields given here; each lever cell is paired
    with ``real`` (and with ``classical`` when that arm runs) on the same seed. ``ratios``
    defaults to the study's ratios.
    """

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=40)
    arms: list[Literal["cgan", "cyclegan", "cgan+classical"]] = Field(default_factory=lambda: ["cgan"])
    ratios: list[float] | None = None
    policy: Literal["add", "balance", "replace"] | None = None
    synthetic_weight: float | None = Field(None, ge=0.0)
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    pretrain: bool | None = None

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float] | None) -> list[float] | None:
        return None if v is None else _positive_ratios(v)

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("arms must name at least one synthetic arm")
        return list(dict.fromkeys(v))


class StudyConfig(StrictModel):
    """The augmentation-benefit study: arms x synthetic ratios x real-data fractions x seeds.

    ``levers`` add named variants of the synthetic arms (loss weight, confidence filtering,
    synthetic pre-training, the ``balance`` policy), each run beside the plain arms.
    """

    arms: list[Literal["real", "classical", "cgan", "cyclegan", "cgan+classical"]] = Field(
        default_factory=lambda: ["real", "classical", "cgan", "cyclegan", "cgan+classical"]
    )
    ratios: list[float] = Field(default_factory=lambda: [0.5, 1.0])
    fractions: list[float] = Field(default_factory=lambda: [1.0])
    seeds: int = Field(5, ge=1)
    policy: Literal["add", "balance", "replace"] = "add"
    synthetic_weight: float = Field(1.0, ge=0.0)
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    pretrain: bool = False
    cgan_steps: int | None = Field(None, ge=1)
    cyclegan_steps: int | None = Field(None, ge=1)
    cgan: CGANConfig = Field(default_factory=CGANConfig)
    cyclegan: CycleGANConfig = Field(
        default_factory=lambda: CycleGANConfig(kind="cyclegan", g_channels=32, n_res_blocks=6)
    )
    n_boot: int = Field(1000, ge=10)
    min_per_class: int = Field(2, ge=1)
    skip_failing_synthesizers: bool = False
    levers: list[LeverConfig] = Field(default_factory=list)
    #: Where the cells and per-subset synthesizers run: ``local`` (this process, one after
    #: another) or ``ray`` (Ray tasks; ``pip install 'medgan[ray]'``; docs/study.md).
    executor: Literal["local", "ray"] = "local"
    #: CPU cores (and torch threads) per job; None: all of this machine's with ``local``, 1
    #: with ``ray``. Results are bit-identical across executors for the same value.
    cpus_per_task: int | None = Field(None, ge=1)
    #: GPUs per job under ``ray`` (fractions share a GPU).
    gpus_per_task: float = Field(0.0, ge=0.0)
    #: The Ray cluster: None starts a local Ray (or joins ``$RAY_ADDRESS``), ``auto`` joins the
    #: cluster ``ray start`` runs on this machine, ``ray://host:10001`` a remote one.
    ray_address: str | None = None

    @field_validator("cgan", "cyclegan", mode="before")
    @classmethod
    def _arm_model(cls, v: Any, info: ValidationInfo) -> Any:
        """The model of an arm whose kind is not the run's ``model.kind`` (the run's own model is
        used for the arm of its kind); a CycleGAN arm starts from 32 channels and 6 blocks."""
        if not isinstance(v, dict):
            return v
        base = {"g_channels": 32, "n_res_blocks": 6} if info.field_name == "cyclegan" else {}
        return {**base, **v, "kind": v.get("kind", info.field_name)}

    @field_validator("levers")
    @classmethod
    def _levers(cls, v: list[LeverConfig]) -> list[LeverConfig]:
        names = [lv.name for lv in v]
        if len(set(names)) != len(names):
            raise ValueError("lever names must be unique")
        return v

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        return _positive_ratios(v)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < f <= 1 for f in v):
            raise ValueError("fractions must be a non-empty list of values in (0, 1]")
        return v

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: list[str]) -> list[str]:
        if "real" not in v:
            raise ValueError("arms must include 'real' (every arm is compared with it)")
        return list(dict.fromkeys(v))


class PipelineConfig(StrictModel):
    """What ``medgan run`` does after training the conditional GAN (docs/metrics.md, docs/study.md).

    The evaluation set is generated in the **test split's class proportions**, ``eval_n`` slices
    in all (default: as many as the test split holds), so that no metric is flattered or punished
    by a class mix the real set does not have. ``eval_per_class`` (kept for older configs) asks
    for equal counts per class instead. ``label_scores`` adds label agreement and CAS; the CAS
    training set has ``cas_n`` slices (default: the train split's N) in the train split's
    proportions.
    """

    evaluate: bool = True
    features: str = "inception"
    eval_n: int | None = Field(None, ge=2)
    eval_per_class: int | None = Field(None, ge=2)
    label_scores: bool = True
    cas_n: int | None = Field(None, ge=2)
    study: bool = True

    @model_validator(mode="after")
    def _one_size(self) -> PipelineConfig:
        if self.eval_n is not None and self.eval_per_class is not None:
            raise ValueError("give eval_n (test proportions) or eval_per_class (equal counts), not both")
        return self


class GatesConfig(StrictModel):
    """Quality gates a synthesizer must pass (docs/metrics.md); ``null`` switches one gate off.

    ``fid_ratio_max``: FID / real-real floor FID at most this; ``recall_min`` / ``precision_min``:
    k-NN recall / precision at least this; ``ms_ssim_max``: within-class MS-SSIM at most this;
    ``label_agreement_margin``: label agreement at least the real classifier's test accuracy
    minus this; ``cas_auc_min``: CAS test AUC at least this; ``memorized_max``: near-copies of
    training images at most this many.
    """

    fid_ratio_max: float | None = Field(2.0, gt=0.0)
    recall_min: float | None = Field(0.30, ge=0.0, le=1.0)
    precision_min: float | None = Field(0.50, ge=0.0, le=1.0)
    ms_ssim_max: float | None = Field(0.50, le=1.0)
    label_agreement_margin: float | None = Field(0.05, ge=0.0, le=1.0)
    cas_auc_min: float | None = Field(0.80, ge=0.0, le=1.0)
    memorized_max: int | None = Field(0, ge=0)

    def active(self) -> bool:
        """Whether any gate is switched on."""
        return any(v is not None for v in self.model_dump().values())


class AugmentConfig(StrictModel):
    """``medgan augment``: a ready-to-train dataset of real training slices plus synthetic ones.

    Synthetic counts come from ``n_per_class`` (exact counts per class name) or else from
    ``policy`` and ``ratio`` as in the study (``add``: ratio x each class's real count;
    ``balance``: ratio x the gap to the largest class; ``replace``: that fraction of each class's
    real slices is swapped for synthetic ones). With several checkpoints, each class's synthetic
    count is split between them as evenly as possible. Validation and test stay real-only.
    """

    checkpoints: list[str] = Field(default_factory=list)
    policy: Literal["add", "balance", "replace"] = "add"
    ratio: float = Field(1.0, gt=0)
    n_per_class: dict[str, int] | None = None
    format: Literal["png", "nifti"] = "png"
    bits: Literal[8, 16] = 8
    seed: int = 0
    batch_size: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        if self.policy == "replace" and self.ratio > 1:
            raise ValueError("'replace' swaps a fraction of the real slices: ratio must be <= 1")
        if self.n_per_class is not None and any(v < 0 for v in self.n_per_class.values()):
            raise ValueError("n_per_class counts must be >= 0")
        return self


class RunConfig(StrictModel):
    """The whole run: one YAML file."""

    name: str = "medgan"
    seed: int = 0
    data: DataConfig
    data_b: DataConfig | None = None
    model: ModelConfig = Field(default_factory=CGANConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    gates: GatesConfig | None = Field(default_factory=GatesConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @model_validator(mode="before")
    @classmethod
    def _kind_keys(cls, raw: Any) -> Any:
        """Older spellings moved to today's (:func:`upgrade_raw`), then the kind's ``train:`` defaults."""
        if not isinstance(raw, dict):
            return raw
        raw = upgrade_raw(raw, strict=False)
        model_cls = MODEL_CONFIGS.get(_model_kind(raw.get("model") or {}))
        train = raw.get("train")
        if model_cls is not None and model_cls.TRAIN_DEFAULTS and (train is None or isinstance(train, dict)):
            raw = {**raw, "train": {**model_cls.TRAIN_DEFAULTS, **(train or {})}}
        return raw

    @model_validator(mode="after")
    def _second_domain(self) -> RunConfig:
        if self.data_b is not None and self.model.kind != "cyclegan":
            raise ValueError("data_b (a second domain) is only used by model.kind: cyclegan")
        return self


#: Every synthesizer kind's config class (the ``model:`` section), by ``model.kind``.
MODEL_CONFIGS: dict[str, type[CGANConfig] | type[CycleGANConfig]] = {
    "cgan": CGANConfig,
    "cyclegan": CycleGANConfig,
}


#: Training keys of one kind that sat under ``train:`` before 2026-11-29 (still read there).
MOVED_TRAIN_KEYS = frozenset(
    {"loss", "gp_weight", "r1_gamma", "r2_gamma", "r1_every", "lecam_weight", "lecam_decay", "d_steps",
     "ema_decay", "ema_start", "ema_kimg", "ema_rampup", "diffaugment", "xflip", "class_balance"}
)  # fmt: skip


def upgrade_raw(raw: dict[str, Any], strict: bool = True, where: str = "config") -> dict[str, Any]:
    """A raw config dict in today's layout: a kind's training keys under ``train:`` move to ``model:``.

    Configs and checkpoints written before 2026-11-29 held a cGAN's objective (``loss``, EMA,
    regularisers, ``diffaugment``, ...) under ``train:``. A key that the config's ``model.kind``
    has is moved to ``model:``; one that it does not have is refused (``strict``: a user's config,
    where it would be ignored) or dropped (a checkpoint's recorded config, which listed every
    ``train:`` key whatever the kind).
    """
    train = raw.get("train")
    if not isinstance(train, dict):
        return raw
    legacy = [k for k in train if k in MOVED_TRAIN_KEYS]
    if not legacy:
        return raw
    model = raw.get("model")
    model = dict(model) if isinstance(model, dict) else {}
    kind = _model_kind(model)
    fields = MODEL_CONFIGS[kind].model_fields if kind in MODEL_CONFIGS else {}
    train = dict(train)
    for k in legacy:
        value = train.pop(k)
        if k not in fields:
            if strict:
                users = sorted(n for n, c in MODEL_CONFIGS.items() if k in c.model_fields)
                raise ConfigError(
                    f"{where}: train.{k}",
                    f"is a {'/'.join(users)} training key; model.kind {kind!r} does not use it",
                )
            continue
        if k in model:
            if strict:
                raise ConfigError(f"{where}: train.{k}", f"given twice: write it once, as model.{k}")
            continue
        model[k] = value
    return {**raw, "train": train, "model": model}


_TYPE_NAMES = {"int", "float", "str", "bool", "none", "Window", "list", "tuple", "dict"}


def _format_loc(loc: tuple[Any, ...]) -> str:
    tags = {"medmnist", "images", "dicom", "nifti", "cgan", "cyclegan"}
    parts = []
    for i, p in enumerate(loc):
        if i > 0 and loc[i - 1] in ("source", "model") and p in tags:
            continue  # the discriminator tag pydantic inserts
        if isinstance(p, str) and ("[" in p or p in _TYPE_NAMES):
            continue  # union member names pydantic inserts
        parts.append(str(p))
    return ".".join(parts) or "(top level)"


def validation_error_message(err: ValidationError, where: str) -> ConfigError:
    """Turn a pydantic error into one-line :class:`ConfigError` naming each bad key."""
    msgs: list[str] = []
    seen: set[str] = set()
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        loc = _format_loc(tuple(e["loc"]))
        if loc in seen:
            continue
        seen.add(loc)
        msgs.append(f"{loc}: {msg}")
    return ConfigError(where, "; ".join(msgs))


#: Largest config file read (bytes): real configs are a few KiB.
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting of mappings / lists in a config (real configs nest 4 levels).
MAX_YAML_DEPTH = 64
#: Most values a config may hold once YAML aliases are expanded (a "billion laughs" file holds 10**9).
MAX_YAML_VALUES = 100_000
_KEY_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


class _YAMLBound(yaml.YAMLError):
    """A config beyond the bounds above, or with a key given twice."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with bounded depth and size, refusing a key given twice in one mapping."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YAMLBound(
                    f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _expanded_size(node, {}, set())
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise _YAMLBound(
                        f"key {key_node.value!r} appears twice in one mapping", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """Values ``node`` holds once aliases are expanded; refuses recursion and more than MAX_YAML_VALUES."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _YAMLBound("an alias refers to the mapping or list that contains it", node.start_mark)
    active.add(key)
    if isinstance(node, yaml.ScalarNode):
        total = 1
    elif isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(child, memo, active) for child in node.value)
    else:
        total = 1 + sum(
            _expanded_size(k, memo, active) + _expanded_size(v, memo, active) for k, v in node.value
        )
    active.discard(key)
    if total > MAX_YAML_VALUES:
        raise _YAMLBound(
            f"holds more than {MAX_YAML_VALUES:,} values once aliases are expanded", node.start_mark
        )
    memo[key] = total
    return total


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely (no code execution), within the bounds above; raises ``yaml.YAMLError``."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass: no code execution
    except RecursionError:
        raise _YAMLBound("nested too deeply", None) from None


def _override_parts(item: str, key: str) -> list[str]:
    parts = key.strip().split(".")
    if not key.strip():
        raise ConfigError(f"--set {item}", "empty key")
    bad = [p for p in parts if not _KEY_PART.fullmatch(p)]
    if bad:
        shown = "an empty part" if "" in bad else f"{bad[0]!r}"
        raise ConfigError(
            f"--set {item}", f"key has {shown}; expected dotted names like data.size or study.ratios"
        )
    return parts


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict; returns a copy."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}", "expected KEY=VALUE, e.g. data.size=64")
        key, _, text = item.partition("=")
        parts = _override_parts(item, key)
        key = key.strip()
        try:
            value = parse_yaml(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}", f"value is not valid YAML ({_yaml_problem(exc)})") from None
        node: Any = out
        for i, p in enumerate(parts[:-1]):
            if isinstance(node, list) and p.isdigit() and int(p) < len(node):
                node = node[int(p)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}", f"'{'.'.join(parts[:i])}' is not a mapping")
            node = node.setdefault(p, {})
            if node is None:
                node = {}
        last = parts[-1]
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {key}", f"'{'.'.join(parts[:-1])}' is not a mapping")
    return out


def _yaml_problem(exc: BaseException) -> str:
    return str(getattr(exc, "problem", None) or exc.__class__.__name__)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely (no code execution; bounded size and depth; no key twice); one-line errors."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(str(p), "config file not found")
    if p.is_dir():
        raise ConfigError(str(p), "is a folder, expected a YAML config file")
    if not p.is_file():
        raise ConfigError(
            str(p), "is not a regular file (a device, pipe or socket), expected a YAML config file"
        )
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(str(p), f"is {size:,} bytes; a config may be at most {MAX_CONFIG_BYTES:,}")
    try:
        raw = parse_yaml(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{p}:{line + 1}" if line is not None else str(p)
        raise ConfigError(where, f"not valid YAML ({_yaml_problem(exc)})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(p), "top level must be a mapping of keys to values")
    return raw


def config_from_dict(raw: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a plain dict into a :class:`RunConfig`."""
    try:
        return RunConfig.model_validate(upgrade_raw(raw, strict=True, where=where))
    except ValidationError as err:
        raise validation_error_message(err, where) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load and validate a YAML config, applying ``--set`` overrides first."""
    raw = apply_overrides(read_yaml(path), list(overrides or []))
    return config_from_dict(raw, str(path))


def dump_config(cfg: BaseModel) -> str:
    """YAML text of a config (paths as strings), e.g. for ``config.resolved.yaml``."""
    return yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=False), sort_keys=False)
