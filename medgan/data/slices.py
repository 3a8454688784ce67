"""Labelled 2-D slices: float32 in [-1, 1], shape (C, H, W), plus a manifest row per slice.

Readers in :mod:`medgan.io` return raw 2-D images with manifest rows (MedMNIST, image
folders) or :class:`~medgan.io.contract.Volume` objects (DICOM series, NIfTI), see
:mod:`medgan.io.contract`. :func:`volume_to_slices` turns a volume into labelled slices (lesion
when the mask has at least ``min_lesion_px`` pixels), and :func:`build_sliceset` resizes, fixes
channels, hashes and splits everything into a :class:`SliceSet`; :mod:`medgan.data.sources`
drives both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from medgan.data.identity import NEAR_DUPLICATE_MAX_SLICES, near_duplicate_groups
from medgan.data.manifest import make_manifest
from medgan.data.splits import assign_splits
from medgan.errors import InputError
from medgan.intensity import (
    WINDOW_PRESETS,
    IntensityRange,
    dtype_range,
    minmax_range,
    normalize,
    percentile_range,
    window_range,
)
from medgan.io.contract import Volume, check_finite
from medgan.io.limits import check_claim

UNLABELLED = "unlabelled"


@dataclass
class SliceSet:
    """Labelled slices and their manifest; ``images[i]`` belongs to ``manifest.iloc[i]``."""

    images: np.ndarray  # (N, C, H, W) float32 in [-1, 1]
    manifest: pd.DataFrame
    classes: list[str]
    source_format: str
    info: dict = field(default_factory=dict)
    #: (N, 1, H, W) uint8 lesion masks (1 = lesion) aligned with ``images``, when every slice has one.
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Slice shape (C, H, W)."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> SliceSet:
        """The slices of one split (``train``, ``val`` or ``test``)."""
        keep = (self.manifest["split"] == name).to_numpy(dtype=bool)
        return SliceSet(
            self.images[keep],
            self.manifest[keep].reset_index(drop=True),
            self.classes,
            self.source_format,
            self.info,
            None if self.masks is None else self.masks[keep],
        )


def resolve_intensity(
    values: np.ndarray,
    mode: str,
    window: object | None,
    percentiles: tuple[float, float],
    *,
    modality: str | None = None,
    window_hint: tuple[float, float] | None = None,
    raw_dtype: str | None = None,
) -> IntensityRange:
    """Choose the raw interval that maps to [-1, 1] (see :class:`medgan.config.IntensityConfig`)."""
    if window is not None and mode in ("auto", "window"):
        if isinstance(window, str):
            c, w = WINDOW_PRESETS[window]
            return window_range(c, w, window)
        return window_range(float(window.center), float(window.width))  # type: ignore[attr-defined]
    if mode == "auto":
        if (modality or "").upper() == "CT" and window_hint is not None and window_hint[1] > 0:
            return window_range(*window_hint, name="dicom")
        if raw_dtype in ("uint8",):
            return dtype_range(np.uint8)
        mode = "percentile"
    if mode == "percentile":
        return percentile_range(values, *percentiles)
    if mode == "minmax":
        return minmax_range(values)
    if mode == "dtype":
        return dtype_range(np.dtype(raw_dtype or values.dtype))
    raise ValueError(f"unknown intensity mode {mode!r}")


def _fmt(values: Sequence[float] | np.ndarray | None) -> str | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)):
        return None
    return "\\".join(f"{v:.6g}" for v in arr)


def volume_to_slices(
    vol: Volume,
    *,
    classes: Sequence[str],
    min_lesion_px: int = 1,
    empty_threshold: float | None = None,
    min_body_fraction: float = 0.01,
    intensity_mode: str = "auto",
    window: object | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    unlabelled_class: str | None = None,
    return_kept: bool = False,
) -> tuple[np.ndarray, list[dict], int] | tuple[np.ndarray, list[dict], int, np.ndarray]:
    """Normalise and label the slices of one volume.

    Returns ``(images (n, C, H, W) float32 in [-1, 1], manifest rows, n_dropped_empty)``.
    A slice is ``classes[1]`` (lesion) when its mask has at least ``min_lesion_px`` pixels,
    else ``classes[0]``; without a mask every slice is ``unlabelled_class`` (or ``unlabelled``).
    With ``empty_threshold`` set, slices whose share of pixels above it is below
    ``min_body_fraction`` are dropped and counted. With ``return_kept``, a fourth item: the
    indices of the kept slices in the volume (to take their masks along).
    """
    data = vol.data
    check_finite(data, vol.sources[0])
    if data.ndim != 4:
        raise InputError(vol.sources[0], f"expected a (Z, C, H, W) volume, got shape {data.shape}")
    z = data.shape[0]
    if vol.mask is not None and (vol.mask.shape[0] != z or vol.mask.shape[1:] != data.shape[2:]):
        raise InputError(
            vol.mask_source or vol.sources[0],
            f"mask shape {tuple(vol.mask.shape)} does not match image shape {(z, *data.shape[2:])}",
        )
    rng = resolve_intensity(
        data,
        intensity_mode,
        window,
        percentiles,
        modality=vol.modality,
        window_hint=vol.window_hint,
        raw_dtype=vol.raw_dtype,
    )
    images = normalize(data, rng)
    keep = np.ones(z, dtype=bool)
    if empty_threshold is not None:
        body = (data > empty_threshold).reshape(z, -1).mean(1)
        keep = body >= min_body_fraction
    mask_px = (
        np.count_nonzero(vol.mask.reshape(z, -1) > 0, axis=1) if vol.mask is not None else np.full(z, -1)
    )
    rows: list[dict] = []
    for i in np.flatnonzero(keep):
        if vol.mask is not None:
            lab = 1 if mask_px[i] >= min_lesion_px else 0
            name = classes[lab]
        elif unlabelled_class is not None:
            lab = list(classes).index(unlabelled_class) if unlabelled_class in classes else -1
            name = unlabelled_class
        else:
            lab, name = -1, UNLABELLED
        rows.append(
            {
                "label": lab,
                "label_name": name,
                "patient_id": vol.patient_id,
                "source": vol.sources[i],
                "source_format": vol.source_format,
                "slice_index": vol.slice_index[i],
                "frame": None if vol.frames is None else vol.frames[i],
                "series_uid": vol.series_uid,
                "sop_instance_uid": None if vol.sop_uids is None else vol.sop_uids[i],
                "modality": vol.modality,
                "rows": data.shape[2],
                "cols": data.shape[3],
                "spacing_row": None if vol.spacing is None else vol.spacing[0],
                "spacing_col": None if vol.spacing is None else vol.spacing[1],
                "slice_thickness": vol.thickness,
                "position": None if vol.positions is None else _fmt(vol.positions[i]),
                "orientation": _fmt(vol.orientation),
                "intensity_mode": rng.mode,
                "intensity_lo": rng.lo,
                "intensity_hi": rng.hi,
                "mask_source": vol.mask_source,
                "mask_px": None if vol.mask is None else int(mask_px[i]),
            }
        )
    if return_kept:
        return images[keep], rows, int(z - keep.sum()), np.flatnonzero(keep)
    return images[keep], rows, int(z - keep.sum())


def to_channels(img: np.ndarray, channels: int | None) -> np.ndarray:
    """Convert (N, C, H, W) to 1 or 3 channels (luminance / repetition); None keeps C."""
    c = img.shape[1]
    if channels is None or channels == c:
        return img
    if channels == 3 and c == 1:
        return np.repeat(img, 3, axis=1)
    if channels == 1 and c == 3:
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32)[None, :, None, None]
        return (img * w).sum(1, keepdims=True).astype(np.float32)
    raise ValueError(f"cannot convert {c} channels to {channels}")


def resize_batch(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize (N, C, H, W) float images to ``hw``: antialiased bilinear (area-like when shrinking)."""
    if tuple(img.shape[2:]) == tuple(hw):
        return img
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    out = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(-1.0, 1.0).numpy()


def resize_masks(masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize (N, H, W) label masks to ``hw`` by nearest neighbour on pixel centres (the geometry
    of :func:`resize_batch`'s bilinear, so a mask stays on its image's pixels); uint8 out."""
    if tuple(masks.shape[1:]) == tuple(hw):
        return masks.astype(np.uint8, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None]
    out = F.interpolate(t, size=hw, mode="nearest-exact")[:, 0]
    return out.round().to(torch.uint8).numpy()


def image_sha1(img: np.ndarray) -> str:
    """SHA-1 of a slice's float32 bytes: identical images share it."""
    return hashlib.sha1(np.ascontiguousarray(img, dtype=np.float32).tobytes()).hexdigest()


def _check_patients_apart(manifest: pd.DataFrame, info: dict, allow: bool, where: str) -> None:
    """Refuse (or, with ``allow``, flag in ``info``) patients whose slices a given split puts in two splits."""
    m = manifest[manifest["patient_id"].notna() & (manifest["patient_id"].astype(str).str.strip() != "")]
    per_patient = m.groupby(m["patient_id"].astype(str))["split"].agg(lambda s: sorted(set(s)))
    several = per_patient[per_patient.map(len) > 1]
    if several.empty:
        return
    first, splits = str(several.index[0]), ", ".join(several.iloc[0])
    more = f" (and {len(several) - 1} more patient(s))" if len(several) > 1 else ""
    if not allow:
        raise InputError(
            where,
            f"the given split puts patient {first!r} in {splits}{more}: a patient's slices must stay in one "
            "split, or the test split scores images of patients the model trained on; fix the split "
            "column, or set data.splits.allow_patient_overlap: true to accept it (flagged in every report)",
        )
    info["patients_in_several_splits"] = len(several)
    info["warnings"] = [
        *info.get("warnings", []),
        f"{len(several)} patient(s) have slices in more than one split (data.splits.allow_patient_overlap): "
        "test scores include patients seen in training",
    ]


def _channels_of(images: Sequence[np.ndarray], rows: list[dict], where: str) -> int:
    """1 or 3: the channels the images share. Among 1-channel files, a 3-channel file whose channels
    are equal is grey (1); colour files among grey ones are refused with the first one named
    (``data.channels`` decides)."""
    cs = {int(a.shape[1]) for a in images if len(a)}
    if len(cs) < 2:
        return 3 if 3 in cs else 1
    firsts = np.cumsum([0, *[len(a) for a in images]])[:-1]
    colour = [
        i
        for i, a in enumerate(images)
        if len(a)
        and a.shape[1] == 3
        and not (np.array_equal(a[:, 0], a[:, 1]) and np.array_equal(a[:, 0], a[:, 2]))
    ]
    grey = [i for i, a in enumerate(images) if len(a) and i not in set(colour)]
    if colour and grey:
        name = rows[int(firsts[colour[0]])].get("source") or f"image {colour[0]}"
        raise InputError(
            where,
            f"{len(colour)} of {len(colour) + len(grey)} images are colour (e.g. {name}) and the rest grey; "
            "set data.channels: 3 to keep colour (grey images repeated) or 1 to read every image as luminance",
        )
    return 3 if colour else 1


def _masks_of(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None, hw: tuple[int, int], info: dict
) -> np.ndarray | None:
    """(N, 1, H, W) uint8 masks at ``hw`` when every non-empty entry of ``images`` has one; else None
    (a partial set is named in ``info["warnings"]``: a slice without its mask is not "no lesion")."""
    if masks is None:
        return None
    entries = [(a, m) for a, m in zip(images, masks, strict=True) if len(a)]
    have = sum(m is not None for _, m in entries)
    if have == 0:
        return None
    if have < len(entries):
        info["warnings"] = [
            *info.get("warnings", []),
            f"{len(entries) - have} of {len(entries)} volumes or files have no mask: masks are not kept",
        ]
        return None
    for a, m in entries:
        assert m is not None
        if m.shape[0] != len(a):
            raise AssertionError(f"{m.shape[0]} masks for {len(a)} slices")
    out = np.concatenate([resize_masks(m, hw) for _, m in entries if m is not None])
    return out[:, None]


def _near_duplicates(images: np.ndarray, info: dict) -> list[str] | None:
    """Near-duplicate group keys of the slices (None, with a warning, for a set too large to search)."""
    if len(images) > NEAR_DUPLICATE_MAX_SLICES:
        info.setdefault("warnings", []).append(
            f"near-duplicate search skipped: {len(images):,} slices (more than {NEAR_DUPLICATE_MAX_SLICES:,});"
            " only identical images are kept in one split"
        )
        return None
    near = near_duplicate_groups(images)
    info["near_duplicate_images"] = sum(1 for k in near if k)
    info["near_duplicate_groups"] = len({k for k in near if k})
    return near


def build_sliceset(
    images: Sequence[np.ndarray],
    rows: list[dict],
    classes: Sequence[str],
    source_format: str,
    *,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    info: dict | None = None,
    where: str = "data",
    allow_patient_overlap: bool = False,
    masks: Sequence[np.ndarray | None] | None = None,
    near_duplicates: bool = False,
) -> SliceSet:
    """Assemble normalised slices from any reader into a :class:`SliceSet`.

    ``images`` is a list of (n_i, C, H, W) arrays (one per file or volume) matching ``rows``.
    Slices are resized to ``size`` and converted to ``channels``. Rows that already carry a
    ``split`` (official splits) keep it; otherwise splits are assigned by
    :func:`~medgan.data.splits.assign_splits`. A given split that puts one patient in two splits
    is refused unless ``allow_patient_overlap`` (then it is a warning, and ``info`` counts the
    patients under ``patients_in_several_splits``). ``masks``, one (n_i, H_i, W_i) lesion mask
    array (or None) per entry of ``images``, are resized by nearest neighbour with their slices
    and kept as ``SliceSet.masks`` when every entry has one (else none are kept, with a warning).
    ``near_duplicates``: near-duplicate images (:func:`~medgan.data.identity.near_duplicate_groups`)
    are found and, when splits are assigned here, kept in one split; ``info`` counts them
    (``near_duplicate_images``, ``near_duplicate_groups``; with given splits also
    ``cross_split_near_duplicates``, the groups that span splits).
    """
    if not rows:
        raise InputError(where, "no slices found")
    chans = channels if channels is not None else _channels_of(images, rows, where)
    shapes = {tuple(a.shape[2:]) for a in images if len(a)}
    if size is None and len(shapes) > 1:
        raise InputError(
            where, f"slices have different sizes {sorted(shapes)[:4]}; set data.size to resize them"
        )
    target = size if size is not None else next(iter(shapes))
    check_claim(where, (len(rows), chans, *target), what=f"{len(rows)} slices at {target[0]}x{target[1]}")
    out = np.empty((len(rows), chans, *target), dtype=np.float32)
    k = 0
    for a in images:
        if not len(a):
            continue
        b = resize_batch(to_channels(a.astype(np.float32, copy=False), chans), target)
        out[k : k + len(b)] = b
        k += len(b)
    if k != len(rows):
        raise AssertionError(f"{k} images for {len(rows)} manifest rows")
    info = dict(info or {})
    kept_masks = _masks_of(images, masks, target, info)
    for i, r in enumerate(rows):
        r["slice_id"] = i
        r["sha1"] = image_sha1(out[i])
    manifest = make_manifest(rows)
    has_split = manifest["split"].notna()
    near = _near_duplicates(out, info) if near_duplicates else None
    if not has_split.all():
        if has_split.any():
            raise InputError(where, "some rows have a split and others do not; give a split for all or none")
        pids = manifest["patient_id"].fillna("").astype(str).tolist()
        pids = [p if p else f"__slice{i}" for i, p in enumerate(pids)]
        manifest["split"] = pd.array(
            assign_splits(manifest["label"].tolist(), pids, manifest["sha1"].tolist(), fractions, seed, near),
            dtype="string",
        )
    elif near is not None:
        keyed = pd.DataFrame({"near": near, "split": manifest["split"]})
        keyed = keyed[keyed["near"] != ""]
        info["cross_split_near_duplicates"] = int((keyed.groupby("near")["split"].nunique() > 1).sum())
    if has_split.all():
        _check_patients_apart(manifest, info, allow_patient_overlap, where)
    per_hash = manifest.groupby("sha1")["split"].nunique()
    info["cross_split_duplicates"] = int((per_hash > 1).sum())
    return SliceSet(out, manifest, list(classes), source_format, info, kept_masks)
