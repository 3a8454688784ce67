"""NIfTI (and NRRD / MetaImage) volumes with optional label volumes, sliced into display-oriented 2-D slices.

Volumes are reoriented to the closest canonical RAS orientation, cut along the requested
anatomical axis, and each slice is laid out as a radiologist views it (DICOM LPS convention:
axial rows run anterior -> posterior and columns right -> left of the patient). The manifest
keeps the slice's index along the *file's own* voxel axis, so ``slice_index`` matches what a
viewer shows for the original file, and the slice geometry in patient (LPS) coordinates.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import OrientationError, apply_orientation, inv_ornt_aff, io_orientation

from medgan.errors import InputError
from medgan.intensity import denormalize
from medgan.io.atomic import atomic_write_bytes
from medgan.io.contract import Volume, as_chw, check_finite
from medgan.io.limits import check_claim
from medgan.io.masks import align_labels
from medgan.paths import require_regular_file

_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
_ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _stem(path: Path) -> str:
    name = path.name
    for suf in (".nii.gz", ".nii", *_ITK_SUFFIXES, ".gz"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def read_array(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Read a volume as ``(array in voxel order, 4x4 RAS affine, stored dtype name)``; see :func:`_read_array`.

    Only integer, boolean and real floating-point voxels are accepted (not RGB or complex).
    """
    arr, aff, dtype_name = _read_array(path)
    if arr.dtype.kind not in "biuf":
        raise InputError(path, f"voxel type {dtype_name} is not supported (expected integer or real numbers)")
    return arr, aff, dtype_name


def _read_array(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Read a volume as ``(array in voxel order, 4x4 RAS affine, stored dtype name)``.

    NIfTI goes through nibabel (scaling applied); NRRD / MHA / MHD through SimpleITK, whose
    LPS geometry is converted to a RAS affine in (x, y, z) voxel order.
    """
    path = Path(path)
    require_regular_file(path, expected="a NIfTI / NRRD file")  # also a device, FIFO or socket: never opened
    lower = path.name.lower()
    if lower.endswith(_ITK_SUFFIXES):
        img = read_itk(path)
        if img.GetNumberOfComponentsPerPixel() > 1:
            raise InputError(path, "vector-valued volumes are not supported")
        arr = sitk_array(img, path)  # (z, y, x)
        arr = np.transpose(arr, tuple(range(arr.ndim))[::-1])  # (x, y, z[, t])
        d = img.GetDimension()
        direction, spacing, origin = np.eye(3), np.ones(3), np.zeros(3)  # a 2-D image lies in z = 0
        k = min(d, 3)
        direction[:k, :k] = np.array(img.GetDirection()).reshape(d, d)[:k, :k]
        spacing[:k] = np.array(img.GetSpacing())[:k]
        origin[:k] = np.array(img.GetOrigin())[:k]
        aff = np.eye(4)
        aff[:3, :3] = _RAS_TO_LPS @ direction @ np.diag(spacing)
        aff[:3, 3] = _RAS_TO_LPS @ origin
        return arr, aff, arr.dtype.name
    try:
        img = nib.load(str(path))  # reads the header only
        _check_nifti_claim(path, img)
        arr = np.asanyarray(img.dataobj)
        affine = None if getattr(img, "affine", None) is None else np.asarray(img.affine, dtype=float)
        dtype_name = img.get_data_dtype().name
    except InputError:
        raise
    except Exception as exc:  # nibabel, gzip, zlib and numpy raise many types for broken files
        raise InputError(path, f"not a readable NIfTI file ({_short(exc)})") from None
    if affine is None:
        raise InputError(path, "image has no affine / orientation")
    return np.asarray(arr), affine, dtype_name


def _short(exc: BaseException) -> str:
    """``ClassName: first line of the message`` (at most 120 characters of it)."""
    text = str(exc).strip()
    first = " ".join(text.splitlines()[0].split())[:120] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _check_nifti_claim(path: Path, img: object) -> None:
    """Refuse a header whose ``dim`` x datatype needs more than the file holds or the voxel limit."""
    header = img.header  # type: ignore[attr-defined]
    shape = header.get_data_shape()
    itemsize = header.get_data_dtype().itemsize
    image_file = getattr(img, "file_map", {}).get("image")  # the .img of an .hdr/.img pair
    data_path = Path(image_file.filename) if image_file is not None and image_file.filename else path
    size = data_path.stat().st_size
    if data_path.name.lower().endswith(".gz"):
        check_claim(path, shape, what="the NIfTI header", itemsize=itemsize, compressed=size)
        return
    try:
        offset = int(header.get_data_offset())
    except (TypeError, ValueError, OverflowError):
        offset = 0
    check_claim(path, shape, what="the NIfTI header", itemsize=itemsize, available=size - max(offset, 0))


def read_itk(path: Path) -> object:
    """A NRRD / MetaImage / NIfTI file read with SimpleITK, its header checked before the pixels are read."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        dims = [int(d) for d in reader.GetSize()][::-1]
        components = int(reader.GetNumberOfComponents())
        check_claim(path, [*dims, components], what="the image header")
        return reader.Execute()
    except RuntimeError as exc:  # SimpleITK's errors are long multi-line texts; keep the last line
        text = str(exc).strip()
        last = " ".join(text.splitlines()[-1].split())[:120] if text else "unreadable"
        raise InputError(path, f"not a readable volume ({last})") from None


def sitk_array(img: object, path: Path) -> np.ndarray:
    """``sitk.GetArrayFromImage`` with a one-line error for pixel types numpy has no dtype for."""
    import SimpleITK as sitk

    try:
        return sitk.GetArrayFromImage(img)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(path, f"unsupported pixel type ({_short(exc)})") from None


def _to_3d(arr: np.ndarray, path: Path, volume_index: int | None) -> np.ndarray:
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim == 4:
        n = arr.shape[3]
        if volume_index is None:
            raise InputError(
                path, f"is 4-D with {n} volumes; choose one with data.source.volume_index (0..{n - 1})"
            )
        if volume_index >= n:
            raise InputError(path, f"volume_index {volume_index} is out of range (the file has {n} volumes)")
        arr = arr[..., volume_index]
    elif volume_index not in (None, 0):
        raise InputError(path, f"volume_index {volume_index} given but the image is 3-D")
    if arr.ndim != 3:
        raise InputError(path, f"expected a 3-D volume, got shape {arr.shape}")
    return arr


def _slices(canon: np.ndarray, axis: int) -> np.ndarray:
    """(Z, H, W) display slices from a canonical RAS array cut along ``axis``."""
    moved = np.moveaxis(canon, axis, 0)  # (Z, u, v): u, v the remaining axes in RAS order
    return np.ascontiguousarray(np.transpose(moved, (0, 2, 1))[:, ::-1, ::-1])


def _canonical(arr: np.ndarray, aff: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(orientation, array in the closest canonical RAS orientation, its affine); one-line error
    for an affine that gives no orientation (non-finite, or a zero voxel axis)."""
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise InputError(path, "the affine (voxel sizes / orientation) has NaN or infinite values")
    try:
        ornt = io_orientation(aff)
        if np.isnan(ornt).any():
            raise ValueError("a voxel axis has zero length")
        return ornt, apply_orientation(arr, ornt), aff @ inv_ornt_aff(ornt, arr.shape)
    except (ValueError, OrientationError, np.linalg.LinAlgError) as exc:
        raise InputError(path, f"cannot determine the orientation from the affine ({_short(exc)})") from None


def read_case(
    image: str | Path,
    mask: str | Path | None = None,
    *,
    patient_id: str | None = None,
    axis: str = "axial",
    volume_index: int | None = None,
) -> Volume:
    """Read one image (and its optional mask) into a :class:`Volume` of display-oriented slices.

    ``axis`` is ``axial``, ``coronal`` or ``sagittal``; ``volume_index`` picks one volume of a
    4-D file (the mask's too when it is 4-D); ``patient_id`` defaults to the file's stem.
    The mask is placed on the image through both affines (:func:`~medgan.io.masks.align_labels`:
    reordered when it is the same grid, else resampled by nearest neighbour with a line in
    ``Volume.warnings``; refused when it does not overlap the image or has negative labels).
    """
    img_path = Path(image)
    arr, aff, dtype_name = read_array(img_path)
    arr = _to_3d(arr, img_path, volume_index)
    if arr.size == 0:
        raise InputError(img_path, f"volume has no voxels (shape {arr.shape})")
    check_finite(np.asarray(arr), str(img_path))
    ornt, canon, caff = _canonical(arr, aff, img_path)
    a = _AXES[axis]
    data = _slices(canon, a).astype(np.float32)[:, None]

    mask_slices, warnings = None, []
    if mask is not None:
        mpath = Path(mask)
        marr, maff, _ = read_array(mpath)
        marr = _to_3d(marr, mpath, volume_index if marr.ndim == 4 else None)
        # the mask goes onto the image's voxel grid through both affines, not by voxel order
        labels, note = align_labels(marr, maff, arr.shape, aff, mask=mpath, image=img_path.name)
        warnings += [note] if note else []
        mask_slices = _slices(apply_orientation(labels, ornt), a) > 0

    # index along the file's own voxel axis for every canonical slice
    n = canon.shape[a]
    orig_axis = int(np.flatnonzero(ornt[:, 0] == a)[0])
    flipped = ornt[orig_axis, 1] < 0
    slice_index = [n - 1 - k if flipped else k for k in range(n)]

    u, v = (x for x in range(3) if x != a)  # columns follow u (reversed), rows follow v (reversed)
    col_vec, row_vec = caff[:3, u], caff[:3, v]
    nu, nv = canon.shape[u], canon.shape[v]
    positions = np.empty((n, 3))
    for k in range(n):
        idx = np.zeros(4)
        idx[u], idx[v], idx[a], idx[3] = nu - 1, nv - 1, k, 1.0
        positions[k] = _RAS_TO_LPS @ (caff @ idx)[:3]
    row_dir = _RAS_TO_LPS @ (-col_vec / np.linalg.norm(col_vec))  # direction along a row (columns increase)
    col_dir = _RAS_TO_LPS @ (-row_vec / np.linalg.norm(row_vec))  # direction down a column (rows increase)
    return Volume(
        data=data,
        source_format="nifti",
        sources=[str(img_path)] * n,
        slice_index=slice_index,
        patient_id=patient_id or _stem(img_path),
        mask=None if mask_slices is None else mask_slices.astype(np.uint8),
        mask_source=None if mask is None else str(mask),
        positions=positions,
        orientation=np.concatenate([row_dir, col_dir]),
        spacing=(float(np.linalg.norm(row_vec)), float(np.linalg.norm(col_vec))),
        thickness=float(np.linalg.norm(caff[:3, a])),
        modality=None,
        raw_dtype=dtype_name,
        warnings=warnings,
    )


# ----------------------------------------------------------------------------------------------
# Writing one generated slice
# ----------------------------------------------------------------------------------------------


def _positive(value: float, what: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number, got {value}")
    return value


def write_nifti(
    path: Path,
    image: np.ndarray,
    *,
    spacing: tuple[float, float] | None = None,
    thickness: float | None = None,
    intensity: tuple[float, float] | None = None,
    description: str = "",
) -> Path:
    """Write one generated grey slice (1, H, W) in [-1, 1] as a NIfTI-1 volume (W, H, 1); returns ``path``.

    Voxels are float32: ``denormalize(x, lo, hi)`` with ``intensity=(lo, hi)``, else the
    [-1, 1] values. ``spacing`` is (row, column) in mm and ``thickness`` the slice thickness
    (default 1 mm each). The affine is RAS, laid out so that :func:`read_case` gives back the
    same slice in the same orientation (rows anterior -> posterior, columns right -> left).
    Colour images (C = 3) raise ValueError; use PNG or DICOM for them. ``descrip`` holds
    ``description`` (at most 79 bytes), qform / sform codes are 2 (aligned); nothing else
    identifying is written. ``.nii.gz`` is gzipped with a zero timestamp and no file name, so
    the same input gives the same bytes; ``.nii`` is written uncompressed. The write is atomic.
    """
    path = Path(path)
    lower = path.name.lower()
    if not lower.endswith((".nii.gz", ".nii")):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii.gz or .nii")
    arr = as_chw(image)
    if arr.shape[0] != 1:
        raise ValueError(f"NIfTI output takes grey images (1, H, W); got {arr.shape[0]} channels")
    values = np.asarray(arr[0], dtype=np.float64)
    if intensity is not None:
        lo, hi = (float(v) for v in intensity)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"intensity must be (lo, hi) with lo < hi, got {intensity}")
        values = denormalize(values, lo, hi)
    return _write_slice(path, values.astype(np.float32), np.float32, spacing, thickness, description)


def write_nifti_mask(
    path: Path,
    mask: np.ndarray,
    *,
    spacing: tuple[float, float] | None = None,
    thickness: float | None = None,
    description: str = "",
) -> Path:
    """Write a lesion mask (1, H, W) or (H, W) as a uint8 NIfTI-1 label map (1 = lesion, 0 = not),
    with the same affine and voxel order as :func:`write_nifti` gives its image, so MONAI's
    ``LoadImaged`` returns image and mask on the same grid. Atomic, deterministic bytes."""
    path = Path(path)
    if not path.name.lower().endswith((".nii.gz", ".nii")):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii.gz or .nii")
    m = np.asarray(mask)
    m = m[0] if m.ndim == 3 else m
    if m.ndim != 2:
        raise ValueError(f"a mask is (1, H, W) or (H, W); got {np.asarray(mask).shape}")
    return _write_slice(path, (m > 0).astype(np.uint8), np.uint8, spacing, thickness, description)


def _write_slice(
    path: Path,
    values: np.ndarray,
    dtype: type,
    spacing: tuple[float, float] | None,
    thickness: float | None,
    description: str,
) -> Path:
    """One (H, W) slice as a NIfTI-1 volume (W, H, 1) of ``dtype`` in medgan's display affine."""
    lower = path.name.lower()
    row_sp, col_sp = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    row_sp, col_sp = _positive(row_sp, "row spacing"), _positive(col_sp, "column spacing")
    dz = 1.0 if thickness is None else _positive(thickness, "thickness")

    # Voxel order is MONAI's for a 2-D image: x runs along the columns, y along the rows, so
    # LoadImage gives the same (W, H) array as it does for the PNG of this slice. The affine
    # says where they point (columns right -> left, rows anterior -> posterior, as displayed),
    # so read_case and viewers show the slice as drawn.
    vol = np.ascontiguousarray(values.T[:, :, None].astype(dtype))
    affine = np.diag([-col_sp, -row_sp, dz, 1.0])  # x: towards the patient's left, y: posterior, z: S
    img = nib.Nifti1Image(vol, affine)
    hdr = img.header
    hdr.set_data_dtype(dtype)
    hdr.set_xyzt_units("mm")
    img.set_qform(affine, code=2)
    img.set_sform(affine, code=2)
    hdr["descrip"] = description.encode("utf-8")[:79].decode("utf-8", "ignore").encode("utf-8")
    hdr["aux_file"] = b""
    hdr["db_name"] = b""
    data = img.to_bytes()
    if lower.endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
            gz.write(data)
        data = buf.getvalue()
    return atomic_write_bytes(path, data)
