"""``medgan data prepare``: write prepared slices as NPZ shards plus ``manifest.csv``, atomically.

No patient identifier leaves the input by default: the manifest's ``patient_id`` is a
pseudonymous key (:func:`patient_key`: HMAC-SHA256 of the ID under a random salt kept in
``patient_key.salt``, mode 0600, beside the data), and the input's ``series_uid`` /
``sop_instance_uid`` are blank. Patient-level grouping is unchanged (one key per patient).
``keep_source_ids=True`` keeps the raw IDs and UIDs instead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan import __version__
from medgan.config import RunConfig, dump_config
from medgan.data.inspect import summarize
from medgan.data.manifest import read_manifest, write_manifest
from medgan.data.slices import SliceSet
from medgan.errors import InputError
from medgan.io.atomic import atomic_dir, atomic_write_bytes
from medgan.io.npz import read_npz
from medgan.paths import inside, require_regular_file

SHARD_SIZE = 8192
MANIFEST = "manifest.csv"
META = "prepared.json"
#: The salt of the pseudonymous patient keys, written beside the prepared data (mode 0600).
SALT_FILE = "patient_key.salt"
SALT_BYTES = 32
#: A salt file longer than this is not one medgan wrote (refused rather than read whole).
_SALT_MAX_BYTES = 4096
#: Manifest columns that copy identifiers of the input files; blank unless the IDs are kept.
SOURCE_UID_COLUMNS = ("series_uid", "sop_instance_uid")


def patient_key(salt: bytes, patient_id: str) -> str:
    """The pseudonymous key of ``patient_id``: ``p-`` and the first 16 hex digits of HMAC-SHA256(salt, ID).

    The same salt and ID always give the same key, different IDs different keys (a collision
    needs about 2**32 patients); without the salt the key cannot be traced back to the ID.
    """
    return "p-" + hmac.new(salt, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def read_salt(path: str | Path) -> bytes:
    """The salt in ``path`` (a file written by :func:`write_prepared` or ``--salt-file``)."""
    p = require_regular_file(path, expected="a salt file")
    try:
        with open(p, "rb") as fh:
            salt = fh.read(_SALT_MAX_BYTES + 1)
    except OSError as exc:
        raise InputError(p, f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if not 16 <= len(salt) <= _SALT_MAX_BYTES:
        raise InputError(p, f"not a salt file ({len(salt):,} bytes; medgan writes {SALT_BYTES} random bytes)")
    return salt


def write_salt(path: str | Path, salt: bytes) -> Path:
    """Write ``salt`` to ``path`` readable by its owner only (0600), atomically."""
    return atomic_write_bytes(path, salt, mode=0o600)


def _salt_for(out: Path, salt_file: str | Path | None, overwrite: bool) -> tuple[bytes, bool]:
    """The salt of this prepare and whether it is new: ``salt_file``'s when it exists, else the
    one already in ``out`` when it is overwritten (the same keys again), else a new random one."""
    if salt_file is not None and os.path.lexists(salt_file):
        return read_salt(salt_file), False
    kept = out / SALT_FILE
    if salt_file is None and overwrite and os.path.lexists(kept):
        return read_salt(kept), False
    return secrets.token_bytes(SALT_BYTES), True


def pseudonymise(manifest: pd.DataFrame, salt: bytes) -> pd.DataFrame:
    """A copy of ``manifest`` with each ``patient_id`` replaced by its :func:`patient_key` and the
    input UIDs (:data:`SOURCE_UID_COLUMNS`) blank; a missing patient ID stays missing."""
    out = manifest.copy()
    keys = {pid: patient_key(salt, pid) for pid in out["patient_id"].dropna().astype(str).unique()}
    out["patient_id"] = pd.array(
        [keys[str(p)] if not pd.isna(p) else pd.NA for p in out["patient_id"]], dtype="string"
    )
    for col in SOURCE_UID_COLUMNS:
        out[col] = pd.array([pd.NA] * len(out), dtype="string")
    return out


#: A DICOM UID: four or more dot-separated numbers (e.g. a series UID a reader warning quotes).
_UID_RE = re.compile(r"(?<![\w.])[0-9]+(?:\.[0-9]+){3,}(?!\w|\.[0-9])")


def identifier_scrubber(manifest: pd.DataFrame, salt: bytes | None) -> Callable[[str], str]:
    """A function that rewrites text (reader warnings) without the manifest's identifiers: each
    patient ID becomes its :func:`patient_key` (``[patient]`` without a salt), each DICOM UID
    ``[uid]``. Purely numeric IDs of fewer than 4 digits are left alone (they cannot be told from
    counts and sizes)."""
    ids = [p for p in manifest["patient_id"].dropna().astype(str).unique() if p.strip()]
    ids = [p for p in ids if len(p) >= 4 or not p.isdigit()]
    keys = {p: patient_key(salt, p) if salt is not None else "[patient]" for p in ids}
    alternation = "|".join(re.escape(p) for p in sorted(keys, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternation})(?!\w|\.\w)") if keys else None

    def scrub(text: str) -> str:
        if pattern is not None:
            text = pattern.sub(lambda m: keys[m.group(0)], text)
        return _UID_RE.sub("[uid]", text)

    return scrub


def without_identifiers(value: Any, manifest: pd.DataFrame) -> Any:
    """``value`` (JSON-like) with the manifest's patient IDs as ``[patient]`` and DICOM UIDs as ``[uid]``.

    What every output but ``prepare --keep-source-ids`` passes its data summaries and reader
    warnings through (``medgan run``'s ``data_summary.json`` and report, the study's report).
    """
    return _scrubbed(value, identifier_scrubber(manifest, None))


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with ``scrub`` applied to every string in it."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v, scrub) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v, scrub) for v in value]
    return value


def write_prepared(
    ss: SliceSet,
    out: str | Path,
    cfg: RunConfig | None = None,
    overwrite: bool = False,
    *,
    salt_file: str | Path | None = None,
    keep_source_ids: bool = False,
) -> Path:
    """Write ``ss`` to ``out``: ``slices-00000.npz`` shards (key ``images``, float32 (N, C, H, W)),
    ``manifest.csv`` (with ``shard`` / ``shard_row`` columns), ``prepared.json`` and the resolved config.

    Everything is written into a temporary folder that is renamed to ``out`` only when complete.
    The manifest carries pseudonymous patient keys (:func:`pseudonymise`) under a salt that is
    written to ``out/patient_key.salt`` (0600): ``salt_file``'s when given (created there when
    missing, so later prepares reuse it), else the salt already in ``out`` when it is
    overwritten, else a new random one. ``keep_source_ids`` keeps the raw patient IDs and input
    UIDs instead (the output then holds patient identifiers) and writes no salt.
    """
    out = Path(out)
    salt, new_salt = (None, False) if keep_source_ids else _salt_for(out, salt_file, overwrite)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        manifest = ss.manifest.copy() if salt is None else pseudonymise(ss.manifest, salt)
        if salt is not None:
            write_salt(tmp / SALT_FILE, salt)
        shards = []
        for k, start in enumerate(range(0, max(len(ss), 1), SHARD_SIZE)):
            name = f"slices-{k:05d}.npz"
            chunk = ss.images[start : start + SHARD_SIZE]
            extra = {} if ss.masks is None else {"masks": ss.masks[start : start + SHARD_SIZE]}
            np.savez(
                tmp / name,
                images=chunk,
                slice_id=manifest["slice_id"].to_numpy()[start : start + SHARD_SIZE],
                **extra,
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
            "patient_ids": "source" if salt is None else f"HMAC-SHA256 keys, salt in {SALT_FILE}",
        }
        if salt is not None:  # reader warnings may quote a series UID or a patient ID
            scrub = identifier_scrubber(ss.manifest, salt)
            meta["summary"], meta["info"] = _scrubbed(meta["summary"], scrub), _scrubbed(meta["info"], scrub)
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        if cfg is not None:
            (tmp / "config.resolved.yaml").write_text(dump_config(cfg), encoding="utf-8")
        if salt is not None and new_salt and salt_file is not None:
            _new_salt_file(salt_file, salt)
    return out


def _new_salt_file(salt_file: str | Path, salt: bytes) -> None:
    """Create ``--salt-file`` (later prepares of the same patients reuse it); one line when it cannot be."""
    try:
        write_salt(salt_file, salt)
    except OSError as exc:
        raise InputError(
            salt_file, f"cannot write the salt file ({exc.strerror or exc.__class__.__name__})"
        ) from None


def _read_meta(path: Path) -> dict:
    """``prepared.json`` of the folder ``path``, checked for the keys :func:`load_prepared` reads."""
    meta_path = path / META
    if not os.path.lexists(meta_path):
        raise InputError(path, f"not a prepared data folder (no {META})")
    require_regular_file(meta_path, expected=f"a {META} file")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(meta_path, f"corrupt JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(meta_path, f"cannot be read ({exc.__class__.__name__})") from None
    ok = (
        isinstance(meta, dict)
        and isinstance(meta.get("shards"), list)
        and all(isinstance(s, dict) and isinstance(s.get("file"), str) for s in meta["shards"])
        and isinstance(meta.get("classes"), list)
        and isinstance(meta.get("shape"), list)
        and len(meta["shape"]) == 3
        and all(isinstance(d, int) and d > 0 for d in meta["shape"])
        and isinstance(meta.get("format"), str)
    )
    if not ok:
        raise InputError(
            meta_path, "not a prepared.json written by medgan (needs shards, classes, shape, format)"
        )
    return meta


def load_prepared(path: str | Path) -> SliceSet:
    """Read a folder written by :func:`write_prepared` back into a :class:`SliceSet`."""
    path = Path(path)
    meta = _read_meta(path)
    meta_path = path / META
    manifest = read_manifest(path / MANIFEST)
    parts, mask_parts = [], []
    for shard in meta["shards"]:
        f = inside(path, shard["file"], meta_path, "shard file")
        arrays = read_npz(f)
        if "images" not in arrays:
            raise InputError(f, "shard has no 'images' array")
        if arrays["images"].ndim != 4 or list(arrays["images"].shape[1:]) != meta["shape"]:
            shown = tuple(arrays["images"].shape)
            raise InputError(
                f, f"shard images have shape {shown}; {META} says (N, {', '.join(map(str, meta['shape']))})"
            )
        parts.append(arrays["images"])
        if "masks" in arrays:
            m = arrays["masks"]
            if m.shape != (len(arrays["images"]), 1, *meta["shape"][1:]):
                raise InputError(
                    f, f"shard masks have shape {tuple(m.shape)}; its images {tuple(arrays['images'].shape)}"
                )
            mask_parts.append(m.astype(np.uint8))
    if mask_parts and len(mask_parts) != len(parts):
        raise InputError(path, "some shards have masks and others do not")
    images = np.concatenate(parts) if parts else np.zeros((0, *meta["shape"]), np.float32)
    masks = np.concatenate(mask_parts) if mask_parts else None
    if len(images) != len(manifest):
        raise InputError(path, f"{len(images)} slices in shards but {len(manifest)} manifest rows")
    manifest = manifest.drop(columns=[c for c in ("shard", "shard_row") if c in manifest.columns])
    return SliceSet(
        images, pd.DataFrame(manifest), meta["classes"], meta["format"], meta.get("info", {}), masks
    )
