"""Image grids (medgan.grids.make_grid)."""

from __future__ import annotations

import numpy as np

from medgan.grids import make_grid


def _reference(images: np.ndarray, ncol: int, pad: int = 2) -> np.ndarray:
    """The hand-written tiling make_grid replaced: the pixels must stay these."""
    n, c, h, w = images.shape
    nrow = (n + ncol - 1) // ncol
    grid = np.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), -1.0, dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def test_make_grid_matches_the_reference_tiling() -> None:
    rng = np.random.default_rng(0)
    for n, c, h, w, ncol, pad in [
        (6, 1, 5, 7, 3, 2),
        (7, 3, 4, 4, 3, 2),
        (1, 1, 3, 3, 5, 2),
        (5, 2, 3, 6, 2, 0),
    ]:
        for dtype in (np.float32, np.float64):
            images = (rng.random((n, c, h, w)) * 2 - 1).astype(dtype)
            got = make_grid(images, ncol, pad)
            want = _reference(images, ncol, pad)
            assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
            np.testing.assert_array_equal(got, want)


def test_make_grid_of_no_images_is_an_empty_frame() -> None:
    grid = make_grid(np.zeros((0, 1, 4, 4), np.float32), 3)
    assert grid.shape == (1, 2, 3 * 6 + 2) and (grid == -1).all()
