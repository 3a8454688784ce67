"""``medgan data prepare``: write prepared slices as NPZ shards plus ``manifest.csv``, atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from medgan import __version__
from medgan.config import RunConfig, dump_config
from medgan.data.inspect import summarize
from medgan.data.manifest import read_manifest, write_manifest
from medgan.data.slices import SliceSet
from medgan.errors import InputError
from medgan.io.atomic import atomic_dir
from medgan.io.npz import read_npz
from medgan.paths import inside

SHARD_SIZE = 8192
MANIFEST = "manifest.csv"
META = "prepared.json"


def write_prepared(
    ss: SliceSet, out: str | Path, cfg: RunConfig | None = None, overwrite: bool = False
) -> Path:
    """Write ``ss`` to ``out``: ``slices-00000.npz`` shards (key ``images``, float32 (N, C, H, W)),
    ``manifest.csv`` (with ``shard`` / ``shard_row`` columns), ``prepared.json`` and the resolved config.

    Everything is written into a temporary folder that is renamed to ``out`` only when complete.
    """
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        manifest = ss.manifest.copy()
        shards = []
        for k, start in enumerate(range(0, max(len(ss), 1), SHARD_SIZE)):
            name = f"slices-{k:05d}.npz"
            chunk = ss.images[start : start + SHARD_SIZE]
            np.savez(
                tmp / name, images=chunk, slice_id=manifest["slice_id"].to_numpy()[start : start + SHARD_SIZE]
            )
            shards.append({"file": name, "n": len(chunk)})
        manifest["shard"] = [f"slices-{i // SHARD_SIZE:05d}.npz" for i in range(len(ss))]
        manifest["shard_row"] = [i % SHARD_SIZE for i in range(len(ss))]
        write_manifest(manifest, tmp / MANIFEST)
        meta = {
            "medgan_version": __version__,
            "format": ss.source_format,
            "classes": list(ss.classes),
            "shape": list(ss.shape),
            "n_slices": len(ss),
            "shards": shards,
            "summary": summarize(ss),
            "info": ss.info,
        }
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        if cfg is not None:
            (tmp / "config.resolved.yaml").write_text(dump_config(cfg), encoding="utf-8")
    return out


def load_prepared(path: str | Path) -> SliceSet:
    """Read a folder written by :func:`write_prepared` back into a :class:`SliceSet`."""
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        raise InputError(path, f"not a prepared data folder (no {META})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(meta_path, f"corrupt JSON ({exc.msg})") from None
    manifest = read_manifest(path / MANIFEST)
    parts = []
    for shard in meta["shards"]:
        f = inside(path, shard["file"], meta_path, "shard file")
        arrays = read_npz(f)
        if "images" not in arrays:
            raise InputError(f, "shard has no 'images' array")
        parts.append(arrays["images"])
    images = np.concatenate(parts) if parts else np.zeros((0, *meta["shape"]), np.float32)
    if len(images) != len(manifest):
        raise InputError(path, f"{len(images)} slices in shards but {len(manifest)} manifest rows")
    manifest = manifest.drop(columns=[c for c in ("shard", "shard_row") if c in manifest.columns])
    return SliceSet(images, pd.DataFrame(manifest), meta["classes"], meta["format"], meta.get("info", {}))
