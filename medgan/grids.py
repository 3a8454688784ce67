"""Image grids (contact sheets) for previews: sample grids, closest-pair sheets.

A leaf module (it imports nothing from medgan).
"""

from __future__ import annotations

import numpy as np
from skimage.util import montage


def make_grid(images: np.ndarray, ncol: int, pad: int = 2) -> np.ndarray:
    """Tile (N, C, H, W) images into one (C, H', W') float32 image, ``ncol`` per row, padded with -1.

    ``pad`` pixels of -1 separate the tiles and frame the grid; cells past the last image are -1.
    Built on ``skimage.util.montage`` (the same pixels as the hand-written tiling it replaced).
    """
    n, c, _, _ = images.shape
    nrow = (n + ncol - 1) // ncol
    tiles = np.moveaxis(np.asarray(images, dtype=np.float32), 1, -1)  # (N, H, W, C)
    grid = montage(tiles, fill=[-1.0] * c, grid_shape=(nrow, ncol), padding_width=pad, channel_axis=-1)
    return np.ascontiguousarray(np.moveaxis(grid, -1, 0))
