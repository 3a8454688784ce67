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

import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydicom.uid import generate_uid

from medgan import distributed
from medgan.data.detect import source_from_spec
from medgan.data.sources import load_source
from medgan.device import resolve_device
from medgan.errors import InputError
from medgan.io.atomic import atomic_write_text
from medgan.io.dicom import SyntheticDicomMeta, write_dicom
from medgan.io.images import write_mask_png, write_png
from medgan.io.nifti import write_nifti, write_nifti_mask
from medgan.io.npz import write_npz
from medgan.io.output import OutputFolder, check_room
from medgan.metrics.evaluate import split_spec
from medgan.metrics.selection import proportional_counts
from medgan.paths import slug
from medgan.progress import progress
from medgan.seeding import derive_seed
from medgan.synthesis import registry
from medgan.training.checkpoint import CheckpointMeta

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
    mask_path: str = ""  # its mask's file (a kind that draws from masks; PNG / NIfTI / DICOM output)


#: The file a mask is written to beside an image of each format (DICOM images get PNG masks).
_MASK_EXT = {"png": ".png", "nifti": ".nii.gz", "dicom": ".png"}


def plan(
    classes: list[str],
    labels: list[int],
    n_per_class: int | Mapping[int, int],
    seed: int,
    fmt: str,
    masks: bool = False,
) -> list[Item]:
    """Every image to generate, class-major, with its per-image seed and relative path.

    ``n_per_class`` is one count for every class in ``labels`` or a count per label index; image
    ``k`` of class ``c`` has the seed ``derive_seed(seed, c, k)`` either way. With ``masks`` each
    image file has a mask file of the same name under ``masks/`` (NPZ: a ``masks`` array in the shard).
    """
    items = []
    for lab in labels:
        n = n_per_class[lab] if isinstance(n_per_class, Mapping) else n_per_class
        for k in range(n):
            stem = f"{lab:02d}-{slug(classes[lab])}-{k:06d}"
            rel = "" if fmt == "npz" else f"images/{stem}{_EXT[fmt]}"
            mask = f"masks/{stem}{_MASK_EXT[fmt]}" if masks and fmt != "npz" else ""
            items.append(Item(lab, classes[lab], k, derive_seed(seed, lab, k), rel, mask))
    if fmt == "npz":
        items = [
            Item(it.label, it.label_name, it.index, it.seed, f"shards/synthetic-{i // NPZ_SHARD:05d}.npz")
            for i, it in enumerate(items)
        ]
    return items


def counts_like(spec: str, data_dir: Path, n_total: int | None = None) -> dict[str, int]:
    """Per-class counts of a real split (``SOURCE[:split]``, default ``test``), by class name.

    With ``n_total``, that many slices split in the split's class proportions (largest remainder;
    every class present keeps at least one). Unlabelled slices are not counted.
    """

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
        raise InputError("n_per_class", "the per-class counts add up to 0")
    return {c: out[c] for c in sorted(out) if out[c] > 0}


def _check_options(
    n_per_class: int | Mapping[int | str, int],
    classes: list[str] | None,
    fmt: str,
    bits: int,
    batch_size: int,
    precision: str,
) -> None:
    """One-line errors for options out of range, named as the function's parameters."""
    if isinstance(n_per_class, Mapping):
        bad = {k: v for k, v in n_per_class.items() if int(v) < 0}
        if bad:
            raise InputError("n_per_class", f"per-class counts must be >= 0 (got {bad})")
        if classes:
            raise InputError("classes", "cannot be combined with per-class counts (they name the classes)")
    elif n_per_class <= 0:
        raise InputError("n_per_class", f"must be at least 1 (got {n_per_class})")
    checks = (
        ("format", fmt in FORMATS, f"must be one of {', '.join(FORMATS)} (got {fmt!r})"),
        ("bits", bits in (8, 16), "must be 8 or 16"),
        ("batch_size", batch_size > 0, "must be at least 1"),
        ("precision", precision in ("fp32", "bf16"), f"must be fp32 or bf16 (got {precision!r})"),
    )
    for key, ok, problem in checks:
        if not ok:
            raise InputError(key, problem)


def _request(
    synth: Any, n_per_class: int | Mapping[int | str, int], classes: list[str] | None
) -> tuple[int | dict[int, int], list[int], int | dict[str, int]]:
    """The counts to plan (one count, or per label), the labels, and the counts as recorded (by name)."""
    if isinstance(n_per_class, Mapping):
        counts = _resolve_counts(synth, n_per_class)
        return counts, list(counts), {synth.classes[c]: n for c, n in counts.items()}
    labels = list(range(len(synth.classes))) if not classes else [synth.label_index(c) for c in classes]
    return int(n_per_class), labels, int(n_per_class)


def _write_shards(
    writer: OutputWriter,
    out: Path,
    items: list[Item],
    synth: Any,
    batch_size: int,
    precision: str,
    pairs: bool = False,
) -> list[Item]:
    """NPZ: this rank's shards that are not written yet (with each image's mask when ``pairs``);
    returns the items this rank owns."""
    shards: dict[str, list[Item]] = {}
    for it in items:
        shards.setdefault(it.path, []).append(it)
    names = list(shards)
    mine = [names[i] for i in distributed.shard(len(names))]  # this rank's shards
    todo = [s for s in mine if not (out / s).is_file()]
    for shard in progress(todo, "generating", minimum=0 if distributed.is_main() else sys.maxsize):
        its = shards[shard]
        labels, seeds = [i.label for i in its], [i.seed for i in its]
        arrays: dict[str, np.ndarray] = {}
        if pairs:
            drawn = synth.generate_pairs(labels, seeds, batch_size, precision)
            imgs, arrays["masks"] = drawn.images, drawn.masks.numpy().astype(np.uint8)
        else:
            imgs = synth.generate(labels, seeds, batch_size, precision)
        writer.write_shard(
            shard,
            images=imgs.numpy().astype(np.float32),
            labels=np.array(labels, dtype=np.int64),
            seeds=np.array(seeds, dtype=np.int64),
            index=np.array([i.index for i in its], dtype=np.int64),
            **arrays,
        )
    return [it for s in mine for it in shards[s]]


def _write_images(
    writer: OutputWriter,
    out: Path,
    items: list[Item],
    synth: Any,
    batch_size: int,
    precision: str,
    pairs: bool = False,
) -> list[Item]:
    """PNG / NIfTI / DICOM: this rank's batches with a missing file (image, or its mask when
    ``pairs``); returns the items this rank owns.

    Batches are fixed slices of the whole plan, so a resumed run computes every image in the same
    batch as an uninterrupted one (results are then bit-identical, not just close).
    """
    geometry = _checkpoint_geometry(synth.meta)
    what = registry.get(synth.meta.kind).noun  # e.g. "conditional GAN"

    def write_one(it: Item, img: np.ndarray, mask: np.ndarray | None) -> None:
        if mask is not None:  # the mask first: an image file on disk means its pair is whole
            writer.write_mask(
                it.mask_path,
                mask,
                spacing=geometry["spacing"],
                thickness=geometry["thickness"],
                description=f"medgan lesion mask; seed {it.seed}; class {it.label_name}",
            )
        writer.write(
            it.path,
            img,
            uid_key=(it.seed, it.label, it.index),
            instance_number=it.index + 1,
            series_number=it.label + 1,
            series_description=f"medgan synthetic {it.label_name}",
            derivation=f"medgan {what}; checkpoint sha256 {synth.sha256}; seed {it.seed}; class {it.label_name}",
            **geometry,
        )

    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    batches = [batches[i] for i in distributed.shard(len(batches))]  # this rank's batches
    owned = [it for b in batches for it in b]

    def done(it: Item) -> bool:
        return (out / it.path).is_file() and (not it.mask_path or (out / it.mask_path).is_file())

    batches = [b for b in batches if not all(done(it) for it in b)]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for batch in progress(batches, "generating", minimum=1 if distributed.is_main() else sys.maxsize):
            labels, seeds = [i.label for i in batch], [i.seed for i in batch]
            if pairs:
                drawn = synth.generate_pairs(labels, seeds, batch_size, precision)
                imgs, masks = drawn.images.numpy(), list(drawn.masks.numpy())
            else:
                imgs, masks = (
                    synth.generate(labels, seeds, batch_size, precision).numpy(),
                    [None] * len(batch),
                )
            missing = [(it, img, m) for it, img, m in zip(batch, imgs, masks, strict=True) if not done(it)]
            list(pool.map(lambda row: write_one(*row), missing))
    return owned


def _manifest(items: list[Item], synth: Any, fmt: str, pairs: bool = False) -> pd.DataFrame:
    """One row per planned image: file, label, index, seed, checkpoint; NPZ rows name their shard row.

    With ``pairs`` also each image's mask file (NPZ: the shard's ``masks`` row), the mask it was
    drawn from, how that mask was moved, and its lesion pixels: all recomputed from the seeds
    (the masks are drawn without the network), so a resumed run's manifest is the same.
    """
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
    if pairs:
        sources: list[str] = []
        transforms: list[str] = []
        lesion: list[int] = []
        for s in range(0, len(items), 4096):
            chunk = items[s : s + 4096]
            masks, src, tr = synth.draw_masks([i.label for i in chunk], [i.seed for i in chunk])
            sources += src
            transforms += tr
            lesion += masks.flatten(1).sum(1).tolist()
        manifest["mask"] = [it.mask_path or it.path for it in items]
        manifest["mask_source"] = sources
        manifest["mask_transform"] = transforms
        manifest["lesion_px"] = lesion
    return manifest


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
    masks: str | Path | None = None,
) -> pd.DataFrame:
    """Generate ``n_per_class`` images per class into ``out``; returns the manifest.

    A checkpoint of a kind that draws slices where a mask says (``model.kind: spade``) writes
    each image's mask beside it (``masks/<same name>``: PNG 0/255 for PNG and DICOM output, a
    uint8 NIfTI label map for NIfTI, a ``masks`` array in NPZ shards), and its provenance in the
    manifest. ``masks``: a folder of mask images to draw from instead of the training masks.

    ``n_per_class`` is one count for every class (or for ``classes``), or a mapping
    ``{class index or name: count}`` (e.g. from :func:`counts_like`: a real split's class mix);
    image ``k`` of class ``c`` has the seed ``derive_seed(seed, c, k)`` either way, so the
    images two generations share are the same. ``precision="bf16"`` runs the network under
    bf16 autocast where that is native and faster (CUDA; for a diffusion model also a CPU with
    AVX512-BF16 or AMX), fp32 elsewhere; images differ slightly from fp32 ones, so it is
    recorded and a resume must use the same setting.
    """
    _check_options(n_per_class, classes, fmt, bits, batch_size, precision)
    device_ = distributed.local_device(resolve_device(device))
    pairs = registry.checkpoint_kind(checkpoint, makes="samples").pairs
    synth = (
        registry.load_pair_sampler(checkpoint, device_)
        if pairs or masks
        else registry.load_sampler(checkpoint, device_)
    )
    if masks is not None:
        synth.use_masks(masks)  # type: ignore[attr-defined]
    counts, labels, recorded = _request(synth, n_per_class, classes)
    n_total = sum(counts.values()) if isinstance(counts, dict) else counts * len(labels)
    files, size = output_size(n_total, tuple(synth.shape), fmt, bits)
    if pairs and fmt != "npz":
        files, size = (
            files + n_total,
            size + n_total * 70,
        )  # a mask file per image (compressed, at least its header)
    check_room(out, files, size, f"{n_total:,} {fmt} images")
    folder = OutputFolder(
        out,
        record=RECORD,
        what="generation",
        command=f"medgan generate {Path(checkpoint).name}",
        overwrite=overwrite,
    )
    folder.check_writable()
    params = {
        "checkpoint_sha256": synth.sha256,
        "seed": seed,
        "n_per_class": recorded,
        "classes": [synth.classes[i] for i in labels],
        "format": fmt,
        "bits": bits if fmt == "png" else None,
        "batch_size": batch_size,
        **({"precision": precision} if precision != "fp32" else {}),
        **({"masks_sha256": synth.masks_digest()} if masks is not None else {}),  # type: ignore[attr-defined]
    }
    rec = distributed.on_main(folder.claim, params)  # rank 0 locks and records; the others wait
    with folder:
        out = folder.path
        items = plan(synth.classes, labels, counts, seed, fmt, masks=pairs)
        writer = OutputWriter(
            out, fmt, bits, synth.sha256, rec["created_utc"], seed, synth.meta.data.modality
        )
        write = _write_shards if fmt == "npz" else _write_images
        owned = write(writer, out, items, synth, batch_size, precision, pairs)
        manifest = _manifest(items, synth, fmt, pairs)
        _write_shard_manifest(out, owned)
        distributed.barrier()  # every rank's files and shard manifest are written
        distributed.on_main(_merge_shard_manifests, out, items, manifest)
        return manifest


def output_size(n: int, shape: tuple[int, ...], fmt: str, bits: int = 8) -> tuple[int, int]:
    """(files, bytes) that ``n`` images of ``shape`` (C, H, W) take at least in ``fmt``: a lower
    bound (a compressed format is counted at 1/8 of its raw size, plus its header), so a request
    refused for it cannot fit."""
    raw = int(np.prod(shape))
    per_image = {
        "png": raw * bits // 8 // 8 + 70,
        "nifti": raw * 4 // 8 + 352,
        "dicom": raw * 2 + 600,
        "npz": raw * 4,
    }[fmt]
    files = -(-n // NPZ_SHARD) if fmt == "npz" else n
    return files + 2, n * (per_image + 40) + 1024  # + the manifest's row per image and the record


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
            write_png(path, img, bits=self.bits)
        elif self.fmt == "nifti":
            write_nifti(
                path,
                img,
                spacing=spacing,
                thickness=thickness,
                intensity=intensity,
                description=derivation[:79],
            )
        else:
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

    def write_mask(
        self,
        rel: str,
        mask: np.ndarray,
        *,
        spacing: tuple[float, float] | None = None,
        thickness: float | None = None,
        description: str = "",
    ) -> None:
        """Write one lesion mask (1, H, W) to ``out / rel`` (atomic): a uint8 NIfTI label map
        (1 = lesion) beside NIfTI images, else an 8-bit PNG (255 = lesion)."""
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "nifti":
            write_nifti_mask(path, mask, spacing=spacing, thickness=thickness, description=description[:79])
        else:
            write_mask_png(path, mask)

    def write_shard(self, rel: str, **arrays: np.ndarray) -> None:
        """Write one NPZ shard (deterministic bytes, atomic)."""
        (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_npz(self.out / rel, **arrays)


def _checkpoint_geometry(meta: CheckpointMeta) -> dict[str, Any]:
    """Intensity interval, pixel spacing and slice thickness of the training data, for the writers."""
    sp = meta.data.spacing or [None, None]
    return {
        "intensity": meta.data.intensity.interval(),
        "spacing": (float(sp[0]), float(sp[1])) if sp[0] and sp[1] else None,
        "thickness": meta.data.thickness,
    }
