"""Label volumes (masks) aligned to their image through geometry, never through voxel order alone.

Both grids are given by their 4x4 voxel -> world affines (the same world frame for both: RAS for
:mod:`medgan.io.nifti`, LPS for :mod:`medgan.io.dicom`). :func:`align_labels` returns the labels
in the image's voxel grid:

* the same grid up to an axis permutation / flip (every voxel centre within 1e-3 of a voxel of
  one of the image's): the labels are reordered, exactly, with no warning;
* any other grid that overlaps the image (other spacing, shift, crop, rotation): resampled by
  nearest neighbour through world coordinates, and a one-line warning names the mask;
* a grid that does not overlap the image, a singular or non-finite affine, negative or NaN
  labels: refused with a one-line :class:`~medgan.errors.InputError` naming the mask.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation
from scipy import ndimage

from medgan.errors import InputError
from medgan.io.contract import check_finite

__all__ = ["align_labels", "align_labels_to_slices"]

#: Largest distance, in voxels, between two voxel centres that count as the same.
TOLERANCE = 1e-3


def _spacing(affine: np.ndarray) -> str:
    """``2x2x5``: the voxel sizes (mm) along the grid's own axes."""
    return "x".join(f"{float(v):.4g}" for v in np.linalg.norm(affine[:3, :3], axis=0))


def _check_affine(affine: np.ndarray, mask: str | Path, what: str) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    bad = affine.shape != (4, 4) or not np.all(np.isfinite(affine))
    if not bad:
        lengths = np.linalg.norm(affine[:3, :3], axis=0)
        det = abs(float(np.linalg.det(affine[:3, :3])))
        bad = not np.all(lengths > 0) or det <= 1e-9 * float(np.prod(lengths))
    if bad:
        raise InputError(mask, f"the {what}'s affine (voxel sizes / orientation) is singular or not finite")
    return affine


def _check_labels(labels: np.ndarray, mask: str | Path) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError(mask, f"expected a 3-D label volume, got shape {labels.shape}")
    if labels.size == 0:
        raise InputError(mask, f"label volume has no voxels (shape {labels.shape})")
    if labels.dtype.kind not in "biuf":
        raise InputError(mask, f"label values of type {labels.dtype} are not supported")
    check_finite(labels, str(mask))
    low = labels.min()
    if low < 0:
        raise InputError(mask, f"mask labels must be >= 0, found {low:g}")
    return labels


def _grid_corners(shape: tuple[int, ...]) -> np.ndarray:
    """(3, 8) voxel indices of the corner voxel centres of a grid."""
    return np.array(list(itertools.product(*[(0, n - 1) for n in shape])), dtype=np.float64).T


def _signed_permutation(matrix: np.ndarray) -> bool:
    return bool(
        np.all(np.isin(matrix, (-1.0, 0.0, 1.0)))
        and np.all(np.abs(matrix).sum(axis=0) == 1)
        and np.all(np.abs(matrix).sum(axis=1) == 1)
    )


def _on_lattice(to_label: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The integer label indices of the image's corner voxels when the image grid lies on the
    label grid (axes permuted / flipped, same spacing, centres within :data:`TOLERANCE`), else None."""
    perm = np.rint(to_label[:3, :3])
    if not _signed_permutation(perm):
        return None
    corners = _grid_corners(shape)
    mapped = to_label[:3, :3] @ corners + to_label[:3, 3:4]
    exact = perm @ corners + np.rint(to_label[:3, 3:4])
    return exact if np.all(np.abs(mapped - exact) <= TOLERANCE) else None


def _reordered(labels: np.ndarray, to_label: np.ndarray) -> np.ndarray:
    """The labels' axes permuted and flipped onto the image's (the grids are the same box)."""
    perm = np.rint(to_label[:3, :3])
    ornt = np.array([[int(np.argmax(np.abs(row))), row[np.argmax(np.abs(row))]] for row in perm])
    return np.ascontiguousarray(apply_orientation(labels, ornt))


def _resampled(labels: np.ndarray, to_label: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """Nearest-neighbour labels at the image's voxel centres and the fraction of them inside the mask.

    scipy's ``grid-constant`` mode takes each label voxel as covering +-0.5 voxel around its
    centre (nibabel's ``resample_from_to`` uses ``constant``, which cuts the outer half voxels).
    Labels are >= 0, so -1 marks an image voxel outside the mask.
    """
    work_type = np.promote_types(labels.dtype, np.int8)
    if work_type.kind == "f" and work_type.itemsize < 4:
        work_type = np.dtype(np.float32)
    out = ndimage.affine_transform(
        labels.astype(work_type, copy=False),
        to_label[:3, :3],
        offset=to_label[:3, 3],
        output_shape=tuple(shape),
        order=0,
        mode="grid-constant",
        cval=-1,
    )
    outside = out < 0
    out[outside] = 0
    return out, 1.0 - float(np.count_nonzero(outside)) / max(out.size, 1)


def _no_overlap(
    mask: str | Path,
    image: str,
    label_affine: np.ndarray,
    label_shape: tuple[int, ...],
    image_affine: np.ndarray,
    image_shape: tuple[int, ...],
) -> InputError:
    centre = [(n - 1) / 2.0 for n in label_shape]
    a = label_affine[:3, :3] @ centre + label_affine[:3, 3]
    b = image_affine[:3, :3] @ [(n - 1) / 2.0 for n in image_shape] + image_affine[:3, 3]
    return InputError(
        mask,
        f"mask does not overlap the image {image} in world space "
        f"(its centre is {float(np.linalg.norm(a - b)):.1f} mm from the image's)",
    )


def _to_label_voxels(label_affine: np.ndarray, image_affine: np.ndarray, mask: str | Path) -> np.ndarray:
    """Image voxel index -> label voxel index (4x4)."""
    to_label = np.linalg.inv(label_affine) @ image_affine
    if not np.all(np.isfinite(to_label)):
        raise InputError(mask, "the mask's affine (voxel sizes / orientation) is singular or not finite")
    return to_label


def _sample(
    labels: np.ndarray, to_label: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, bool, bool, float]:
    """(labels on the image grid, on the label lattice, the very same box, fraction covered)."""
    corners = _on_lattice(to_label, shape)
    if corners is not None:
        lo, hi = corners.min(axis=1), corners.max(axis=1)
        if np.all(lo == 0) and np.all(hi == np.array(labels.shape) - 1):
            return _reordered(labels, to_label), True, True, 1.0
    mapped = to_label[:3, :3] @ _grid_corners(shape) + to_label[:3, 3:4]
    limit = np.array(labels.shape, dtype=np.float64)[:, None] - 0.5
    if np.any(mapped.max(axis=1) < -0.5) or np.any(mapped.min(axis=1) >= limit[:, 0]):
        return np.zeros(shape, dtype=labels.dtype), corners is not None, False, 0.0
    out, covered = _resampled(labels, to_label, shape)
    return out, corners is not None, False, covered


def _covers(covered: float) -> str:
    return "" if covered >= 1.0 else f"; it covers {min(covered * 100, 99.9):.1f}% of the image"


def align_labels(
    labels: np.ndarray,
    label_affine: np.ndarray,
    image_shape: tuple[int, int, int],
    image_affine: np.ndarray,
    *,
    mask: str | Path,
    image: str,
) -> tuple[np.ndarray, str | None]:
    """``labels`` (3-D, affine ``label_affine``) in the voxel grid of an image of ``image_shape``
    with ``image_affine``, and a one-line warning when they had to be resampled (module doc).

    ``mask`` (its path) and ``image`` (a name) are what messages name. Label values are kept
    (nearest neighbour); voxels of the image outside the mask are 0.
    """
    labels = _check_labels(labels, mask)
    label_affine = _check_affine(label_affine, mask, "mask")
    image_affine = _check_affine(image_affine, mask, "image")
    shape = tuple(int(n) for n in image_shape)
    to_label = _to_label_voxels(label_affine, image_affine, mask)
    out, lattice, same_box, covered = _sample(labels, to_label, shape)
    if same_box:
        return out, None
    if covered <= 0.0:
        raise _no_overlap(mask, image, label_affine, labels.shape, image_affine, shape)
    name = Path(mask).name
    if lattice:
        note = (
            f"mask {name}: its {'x'.join(map(str, labels.shape))} grid is the image's {_spacing(image_affine)} mm "
            f"grid shifted, cropped or extended; placed without interpolation{_covers(covered)}"
        )
    else:
        note = (
            f"mask {name}: resampled from {_spacing(label_affine)} mm to the image grid "
            f"{_spacing(image_affine)} mm (nearest neighbour){_moved(label_affine, image_affine)}"
            f"{_covers(covered)}"
        )
    return out, note


def _moved(label_affine: np.ndarray, image_affine: np.ndarray) -> str:
    """Why grids of the same voxel sizes needed resampling."""
    a, b = (np.sort(np.linalg.norm(x[:3, :3], axis=0)) for x in (label_affine, image_affine))
    return "; the grids are shifted or rotated against each other" if np.allclose(a, b, rtol=1e-3) else ""


def _slice_affine(
    origin: np.ndarray, row_step: np.ndarray, col_step: np.ndarray, label_affine: np.ndarray
) -> np.ndarray:
    """Affine of one slice in (slice, row, column) order; its through-plane step, which no voxel
    uses, is the mask's axis closest to the slice normal (so that it cannot spoil the lattice test)."""
    normal = np.cross(col_step, row_step)
    axes = label_affine[:3, :3]
    closeness = np.abs(normal @ axes) / np.linalg.norm(axes, axis=0)
    aff = np.eye(4)
    aff[:3, 0] = axes[:, int(np.argmax(closeness))]
    aff[:3, 1], aff[:3, 2], aff[:3, 3] = row_step, col_step, origin
    return aff


def align_labels_to_slices(
    labels: np.ndarray,
    label_affine: np.ndarray,
    positions: np.ndarray,
    row_step: np.ndarray,
    col_step: np.ndarray,
    shape: tuple[int, int],
    *,
    mask: str | Path,
    image: str,
) -> tuple[np.ndarray, str | None]:
    """:func:`align_labels` for a stack of (rows, columns) = ``shape`` slices whose first pixel
    centres are ``positions`` (Z, 3), rows ``row_step`` and columns ``col_step`` apart (world
    vectors): labels as (Z, rows, columns). Evenly spaced slices are one grid; otherwise (one
    slice, gaps, repeats) each slice is aligned on its own.
    """
    positions = np.asarray(positions, dtype=np.float64)
    row_step, col_step = np.asarray(row_step, float), np.asarray(col_step, float)
    z = len(positions)
    if z >= 2:
        step = (positions[-1] - positions[0]) / (z - 1)
        even = positions[0] + np.arange(z)[:, None] * step
        if np.linalg.norm(step) > 0 and np.all(
            np.linalg.norm(positions - even, axis=1) <= TOLERANCE * np.linalg.norm(step)
        ):
            aff = np.eye(4)
            aff[:3, 0], aff[:3, 1], aff[:3, 2], aff[:3, 3] = step, row_step, col_step, positions[0]
            return align_labels(labels, label_affine, (z, *shape), aff, mask=mask, image=image)
    labels = _check_labels(labels, mask)
    label_affine = _check_affine(label_affine, mask, "mask")
    out = np.zeros((z, *shape), dtype=np.promote_types(labels.dtype, np.int8))
    exact, covered = True, 0.0
    for k, origin in enumerate(positions):
        aff = _check_affine(_slice_affine(origin, row_step, col_step, label_affine), mask, "image")
        sampled, lattice, _, part = _sample(labels, _to_label_voxels(label_affine, aff, mask), (1, *shape))
        out[k] = sampled[0]
        exact, covered = exact and lattice and part >= 1.0, covered + part / z
    if covered <= 0.0:
        first = _slice_affine(positions[0], row_step, col_step, label_affine)
        raise _no_overlap(mask, image, label_affine, labels.shape, first, (z, *shape))
    if exact:
        return out, None
    why = "one slice" if z == 1 else "the slices are not evenly spaced"
    note = (
        f"mask {Path(mask).name}: resampled from {_spacing(label_affine)} mm onto the image's {z} "
        f"slice(s) of {_spacing(np.column_stack([row_step, col_step]))} mm one at a time "
        f"(nearest neighbour; {why}){_covers(covered)}"
    )
    return out, note
