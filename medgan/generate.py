"""``medgan generate``: checkpoint + seeds -> synthetic slices on disk + ``manifest.csv``.

Image ``k`` of class ``c`` comes from the per-image seed ``derive_seed(S, c, k)`` (``S`` =
``--seed``), so it can be rebuilt from (checkpoint, label, seed) alone, whatever ``n`` or the
class list. Files are written atomically; re-running the same command into the same folder
resumes (finished files are skipped, nothing is duplicated). A folder holding a *different*
generation is refused.

Under ``torchrun`` each rank generates a contiguous share of the plan's fixed batches (NPZ:
shards), so every image is computed in the same batch as in a single process, writes its files
and a shard manifest; rank 0 checks that the shard manifests cover the plan and writes
``manifest.csv``. The files are the same bytes as a single-process run's (docs/distributed.md).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydicom.uid import generate_uid

from medgan import __version__, distributed
from medgan.errors import InputError
from medgan.io.atomic import FolderLock, atomic_write_text
from medgan.progress import progress
from medgan.seeding import derive_seed
from medgan.synthesis import registry

FORMATS = ("png", "nifti", "npz", "dicom")
_EXT = {"png": ".png", "nifti": ".nii.gz", "dicom": ".dcm"}
NPZ_SHARD = 1024
RECORD = "generate.json"
MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class Item:
    """One planned synthetic image."""

    label: int
    label_name: str
    index: int
    seed: int
    path: str  # relative to the output folder


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "class"


def plan(
    classes: list[str], labels: list[int], n_per_class: int | Mapping[int, int], seed: int, fmt: str
) -> list[Item]:
    """Every image to generate, class-major, with its per-image seed and relative path.

    ``n_per_class`` is one count for every class in ``labels`` or a count per label index; image
    ``k`` of class ``c`` has the seed ``derive_seed(seed, c, k)`` either way.
    """
    items = []
    for lab in labels:
        n = n_per_class[lab] if isinstance(n_per_class, Mapping) else n_per_class
        for k in range(n):
            rel = "" if fmt == "npz" else f"images/{lab:02d}-{_slug(classes[lab])}-{k:06d}{_EXT[fmt]}"
            items.append(Item(lab, classes[lab], k, derive_seed(seed, lab, k), rel))
    if fmt == "npz":
        items = [
            Item(it.label, it.label_name, it.index, it.seed, f"shards/synthetic-{i // NPZ_SHARD:05d}.npz")
            for i, it in enumerate(items)
        ]
    return items


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".medgan-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(
            out, f"output folder cannot be written ({exc.__class__.__name__}: {exc.strerror or exc})"
        ) from None


def _record(out: Path, params: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Create or check ``generate.json``: the same parameters resume, different ones are refused."""
    path = out / RECORD
    if path.is_file() and not overwrite:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise InputError(path, "corrupt generation record; remove it or pass --overwrite") from None
        diff = [k for k in params if old.get(k) != params[k]]
        if diff:
            raise InputError(
                out,
                f"holds a different generation ({', '.join(diff)} differ); choose another --out or pass --overwrite",
            )
        return old
    if not path.is_file() and any(p for p in out.iterdir() if not p.name.startswith(".")) and not overwrite:
        raise InputError(
            out, "output folder is not empty and holds no medgan generation; choose another --out"
        )
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d%H%M%S")
    rec = {**params, "created_utc": now, "medgan_version": __version__}
    atomic_write_text(path, json.dumps(rec, indent=2))
    return rec


def counts_like(spec: str, data_dir: Path, n_total: int | None = None) -> dict[str, int]:
    """Per-class counts of a real split (``SOURCE[:split]``, default ``test``), by class name.

    With ``n_total``, that many slices split in the split's class proportions (largest remainder;
    every class present keeps at least one). Unlabelled slices are not counted.
    """
    from medgan.data.detect import source_from_spec
    from medgan.data.sources import load_source
    from medgan.metrics.evaluate import split_spec
    from medgan.metrics.selection import proportional_counts

    src, split = split_spec(spec)
    ss = load_source(source_from_spec(src, data_dir), data_dir)
    part = ss if split == "all" else ss.split(split)
    labels = part.manifest["label"].to_numpy().astype(np.int64)
    labels = labels[labels >= 0]
    if len(labels) == 0:
        raise InputError(spec, f"holds no labelled slices in split {split!r} to take class counts from")
    counts = np.bincount(labels, minlength=len(ss.classes)).tolist()
    if n_total is not None:
        present = sum(1 for c in counts if c > 0)
        if n_total < present:
            raise InputError("--n-total", f"must be at least {present} (one slice per class present)")
        counts = proportional_counts(labels, n_total, len(ss.classes))
    return {ss.classes[c]: int(k) for c, k in enumerate(counts) if k > 0}


def _resolve_counts(synth: Any, counts: Mapping[int | str, int]) -> dict[int, int]:
    """``{label index: count}`` from counts keyed by class name or index (zero counts dropped)."""
    out: dict[int, int] = {}
    for key, n in counts.items():
        c = synth.label_index(key)
        if c in out:
            raise InputError(f"class {key!r}", "given twice in the per-class counts")
        out[c] = int(n)
    if not any(out.values()):
        raise InputError("--n-per-class", "the per-class counts add up to 0")
    return {c: out[c] for c in sorted(out) if out[c] > 0}


def generate(
    checkpoint: str | Path,
    out: str | Path,
    n_per_class: int | Mapping[int | str, int],
    *,
    classes: list[str] | None = None,
    fmt: str = "png",
    seed: int = 0,
    batch_size: int = 256,
    bits: int = 8,
    device: str = "auto",
    overwrite: bool = False,
    precision: str = "fp32",
) -> pd.DataFrame:
    """Generate ``n_per_class`` images per class into ``out``; returns the manifest.

    ``n_per_class`` is one count for every class (or for ``classes``), or a mapping
    ``{class index or name: count}`` (e.g. from :func:`counts_like`: a real split's class mix);
    image ``k`` of class ``c`` has the seed ``derive_seed(seed, c, k)`` either way, so the
    images two generations share are the same. ``precision="bf16"`` runs the generator under
    bf16 autocast on CUDA (faster; images differ slightly from fp32 ones, so it is recorded and
    a resume must use the same setting).
    """
    from medgan.device import resolve_device

    per_class = isinstance(n_per_class, Mapping)
    if per_class:
        bad = {k: v for k, v in n_per_class.items() if int(v) < 0}
        if bad:
            raise InputError("--n-per-class", f"per-class counts must be >= 0 (got {bad})")
        if classes:
            raise InputError("--classes", "cannot be combined with per-class counts (they name the classes)")
    elif n_per_class <= 0:
        raise InputError("--n-per-class", f"must be at least 1 (got {n_per_class})")
    if fmt not in FORMATS:
        raise InputError("--format", f"must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if bits not in (8, 16):
        raise InputError("--bits", "must be 8 or 16")
    if batch_size <= 0:
        raise InputError("--batch-size", "must be at least 1")
    if precision not in ("fp32", "bf16"):
        raise InputError("--precision", f"must be fp32 or bf16 (got {precision!r})")
    synth = registry.load(checkpoint, distributed.local_device(resolve_device(device)), makes="samples")
    counts: int | dict[int, int]
    if per_class:
        counts = _resolve_counts(synth, n_per_class)  # type: ignore[arg-type]
        labels = list(counts)
        recorded: int | dict[str, int] = {synth.classes[c]: n for c, n in counts.items()}
    else:
        counts = recorded = int(n_per_class)  # type: ignore[arg-type]
        labels = list(range(len(synth.classes))) if not classes else [synth.label_index(c) for c in classes]
    out = Path(out)
    _check_writable(out)
    params = {
        "checkpoint_sha256": synth.sha256,
        "seed": seed,
        "n_per_class": recorded,
        "classes": [synth.classes[i] for i in labels],
        "format": fmt,
        "bits": bits if fmt == "png" else None,
        "batch_size": batch_size,
        **({"precision": precision} if precision != "fp32" else {}),
    }
    held: list[FolderLock] = []

    def claim() -> dict[str, Any]:
        """Lock the folder for this run (rank 0), clean what a killed run left, check the record."""
        lock = FolderLock(out, f"medgan generate {Path(checkpoint).name}").acquire()
        try:
            rec = _record(out, params, overwrite)
        except BaseException:
            lock.release()
            raise
        held.append(lock)
        return rec

    rec = distributed.on_main(claim)
    try:
        items = plan(synth.classes, labels, counts, seed, fmt)
        writer = OutputWriter(
            out, fmt, bits, synth.sha256, rec["created_utc"], seed, synth.meta.get("data", {}).get("modality")
        )
        geometry = _checkpoint_geometry(synth.meta)

        def write_one(it: Item, img: np.ndarray) -> None:
            writer.write(
                it.path,
                img,
                uid_key=(it.seed, it.label, it.index),
                instance_number=it.index + 1,
                series_number=it.label + 1,
                series_description=f"medgan synthetic {it.label_name}",
                derivation=f"medgan conditional GAN; checkpoint sha256 {synth.sha256}; seed {it.seed}; class {it.label_name}",
                **geometry,
            )

        if fmt == "npz":
            shards: dict[str, list[Item]] = {}
            for it in items:
                shards.setdefault(it.path, []).append(it)
            names = list(shards)
            mine = [names[i] for i in distributed.shard(len(names))]  # this rank's shards
            owned = [it for s in mine for it in shards[s]]
            todo_shards = [s for s in mine if not (out / s).is_file()]
            for shard in progress(
                todo_shards, "generating", minimum=0 if distributed.is_main() else sys.maxsize
            ):
                its = shards[shard]
                imgs = synth.generate([i.label for i in its], [i.seed for i in its], batch_size, precision)
                writer.write_shard(
                    shard,
                    images=imgs.numpy().astype(np.float32),
                    labels=np.array([i.label for i in its], dtype=np.int64),
                    seeds=np.array([i.seed for i in its], dtype=np.int64),
                    index=np.array([i.index for i in its], dtype=np.int64),
                )
        else:
            # batches are fixed slices of the whole plan, so a resumed run computes every image in the
            # same batch as an uninterrupted one (results are then bit-identical, not just close)
            batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
            batches = [batches[i] for i in distributed.shard(len(batches))]  # this rank's batches
            owned = [it for b in batches for it in b]
            batches = [b for b in batches if not all((out / it.path).is_file() for it in b)]
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                for batch in progress(
                    batches, "generating", minimum=1 if distributed.is_main() else sys.maxsize
                ):
                    imgs = synth.generate(
                        [i.label for i in batch], [i.seed for i in batch], batch_size, precision
                    ).numpy()
                    missing = [
                        (it, img)
                        for it, img in zip(batch, imgs, strict=True)
                        if not (out / it.path).is_file()
                    ]
                    list(pool.map(lambda pair: write_one(*pair), missing))
        manifest = pd.DataFrame(
            {
                "path": [it.path for it in items],
                "label": [it.label for it in items],
                "label_name": [it.label_name for it in items],
                "index": [it.index for it in items],
                "seed": [it.seed for it in items],
                "checkpoint_sha256": synth.sha256,
                "format": fmt,
                "source": "synthetic",
            }
        )
        if fmt == "npz":
            manifest["shard_row"] = [i % NPZ_SHARD for i in range(len(items))]
        _write_shard_manifest(out, owned)
        distributed.barrier()  # every rank's files and shard manifest are written
        distributed.on_main(_merge_shard_manifests, out, items, manifest)
        return manifest
    finally:
        for lock in held:
            lock.release()


_SHARD_MANIFEST = ".manifest-rank{rank:05d}-of-{world:05d}.csv"


def _write_shard_manifest(out: Path, owned: list[Item]) -> None:
    """This rank's share of the plan (path, seed), written once its files are."""
    name = _SHARD_MANIFEST.format(rank=distributed.rank(), world=distributed.world_size())
    rows = pd.DataFrame({"path": [it.path for it in owned], "seed": [it.seed for it in owned]})
    atomic_write_text(out / name, rows.to_csv(index=False))


def _merge_shard_manifests(out: Path, items: list[Item], manifest: pd.DataFrame) -> None:
    """Rank 0: check that the ranks' shard manifests cover the plan, in order, and its files exist; write ``manifest.csv``.

    The shard manifests (hidden files) are removed, so the folder holds the same files as a
    single-process run's.
    """
    world = distributed.world_size()
    parts = []
    for r in range(world):
        path = out / _SHARD_MANIFEST.format(rank=r, world=world)
        if not path.is_file():
            raise InputError(path, f"rank {r} left no shard manifest; rerun the same command to resume")
        parts.append(pd.read_csv(path, dtype=str, keep_default_na=False))
    got = pd.concat(parts, ignore_index=True)
    if got["path"].tolist() != [it.path for it in items] or got["seed"].tolist() != [
        str(it.seed) for it in items
    ]:
        raise InputError(out, "the ranks' shard manifests do not cover the plan; rerun the same command")
    missing = next((p for p in dict.fromkeys(got["path"]) if not (out / p).is_file()), None)
    if missing is not None:
        raise InputError(out / missing, "missing after generation; rerun the same command to resume")
    atomic_write_text(out / MANIFEST, manifest.to_csv(index=False))
    for stale in out.glob(".manifest-rank*.csv"):
        stale.unlink(missing_ok=True)


class OutputWriter:
    """Writes generated or translated slices in one format, marked synthetic, with geometry and raw units."""

    def __init__(
        self, out: Path, fmt: str, bits: int, sha256: str, created_utc: str, seed: int, modality: str | None
    ) -> None:
        self.out, self.fmt, self.bits, self.sha = out, fmt, bits, sha256
        self.created, self.modality = created_utc, modality or "OT"
        self.study_uid = generate_uid(entropy_srcs=[sha256, str(seed), "study"])

    def write(
        self,
        rel: str,
        img: np.ndarray,
        *,
        uid_key: Sequence[object],
        instance_number: int,
        series_number: int,
        series_description: str,
        derivation: str,
        spacing: tuple[float, float] | None = None,
        thickness: float | None = None,
        intensity: tuple[float, float] | None = None,
        source_images: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Write one image to ``out / rel`` (atomic)."""
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "png":
            from medgan.io.images import write_png

            write_png(path, img, bits=self.bits)
        elif self.fmt == "nifti":
            from medgan.io.nifti import write_nifti

            write_nifti(
                path,
                img,
                spacing=spacing,
                thickness=thickness,
                intensity=intensity,
                description=derivation[:79],
            )
        else:
            from medgan.io.dicom import SyntheticDicomMeta, write_dicom

            meta = SyntheticDicomMeta(
                study_uid=self.study_uid,
                series_uid=generate_uid(
                    entropy_srcs=[self.sha, self.study_uid, str(series_number), "series"]
                ),
                sop_uid=generate_uid(entropy_srcs=[self.sha, *map(str, uid_key), "sop"]),
                instance_number=instance_number,
                series_number=series_number,
                modality=self.modality,
                spacing=spacing,
                intensity=intensity,
                derivation=derivation[:1024],
                series_description=series_description[:64],
                content_datetime=self.created,
                source_images=source_images,
            )
            write_dicom(path, img, meta)

    def write_shard(self, rel: str, **arrays: np.ndarray) -> None:
        """Write one NPZ shard (deterministic bytes, atomic)."""
        from medgan.io.npz import write_npz

        (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_npz(self.out / rel, **arrays)


def _checkpoint_geometry(meta: dict[str, Any]) -> dict[str, Any]:
    data = meta.get("data", {})
    inten = data.get("intensity", {})
    sp = data.get("spacing") or [None, None]
    return {
        "intensity": (inten["lo"], inten["hi"])
        if inten.get("lo") is not None and inten.get("hi") is not None
        else None,
        "spacing": (float(sp[0]), float(sp[1])) if sp[0] and sp[1] else None,
        "thickness": data.get("thickness"),
    }
