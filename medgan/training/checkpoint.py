"""Checkpoints: safetensors for tensors, JSON for everything else; never a pickle.

A checkpoint is a pair ``step-0000500.safetensors`` + ``step-0000500.json``. A run with checkpoint
selection also holds ``best.safetensors`` + ``best.json``: a copy of the checkpoint that scored best
on the validation split. A run folder resolves to ``best`` when there is one, else to the last
checkpoint; ``RUN@last`` and ``RUN@best`` name either explicitly. The JSON holds the
metadata (config, step, class names, intensity normalisation, medgan version, ...) and the
SHA-256 of the safetensors file; loading verifies the hash, so a tampered or truncated file is
refused. Both files are written atomically (tensors first, JSON last: a checkpoint without its
JSON is incomplete and ignored). Only the last ``keep_last`` checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file

from medgan import __version__
from medgan.config import upgrade_raw
from medgan.errors import InputError
from medgan.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from medgan.io.tensors import canonical_safetensors
from medgan.paths import require_regular_file

FORMAT = "medgan-checkpoint/1"
_STEP_RE = re.compile(r"^step-(\d+)\.safetensors$")
BEST = "best.safetensors"
WHICH = ("best", "last")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    folder: str | Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any], keep_last: int = 3
) -> Path:
    """Write ``step-NNNNNNN.safetensors`` + ``.json`` atomically into ``folder``; prune old ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.safetensors"
    blob = canonical_safetensors(tensors, metadata={"format": FORMAT, "step": str(step)})
    digest = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(path, blob)
    full = {**meta, "format": FORMAT, "step": step, "medgan_version": __version__, "sha256": digest}
    atomic_write_text(path.with_suffix(".json"), json.dumps(full, indent=2, sort_keys=True, default=str))
    for old in list_checkpoints(folder)[:-keep_last]:
        old.with_suffix(".json").unlink(missing_ok=True)
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in ``folder`` (those with their JSON), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.with_suffix(".json").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def save_best(path: str | Path) -> Path:
    """Copy the complete checkpoint ``path`` to ``best.safetensors`` + ``best.json`` beside it, atomically.

    Tensors first, JSON last (as :func:`save_checkpoint`): ``best.json`` names the step it came from.
    """
    src = Path(path)
    best = src.parent / BEST
    with atomic_path(best) as tmp:
        shutil.copyfile(src, tmp)
    atomic_write_text(best.with_suffix(".json"), src.with_suffix(".json").read_text(encoding="utf-8"))
    return best


def best_checkpoint(folder: str | Path) -> Path | None:
    """``folder/best.safetensors`` when it is complete (its JSON beside it), else None."""
    p = Path(folder) / BEST
    return p if p.is_file() and p.with_suffix(".json").is_file() else None


def checkpoint_step(path: str | Path) -> int:
    """The training step a checkpoint was written at (from its JSON)."""
    return int(read_checkpoint_meta(path)["step"])


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint's ``.safetensors`` path from the file itself, its JSON, a checkpoints folder or a run folder.

    A folder gives its validation-selected ``best`` checkpoint when it has one, else its last;
    ``FOLDER@best`` / ``FOLDER@last`` choose explicitly.
    """
    text = str(path)
    which = None
    head, sep, tail = text.rpartition("@")
    if sep and tail in WHICH and not Path(text).exists():
        text, which = head, tail
    p = Path(text)
    if not p.exists():
        raise InputError(p, "checkpoint not found")
    if p.is_dir():
        for folder in (p / "checkpoints", p):
            ckpts = list_checkpoints(folder)
            if not ckpts:
                continue
            best = best_checkpoint(folder)
            if which == "best" and best is None:
                raise InputError(p, "has no best checkpoint (train with train.select.every > 0); use @last")
            if which != "last" and best is not None:
                return best
            return ckpts[-1]
        raise InputError(p, "no complete checkpoint (step-*.safetensors with its .json) in this folder")
    if which is not None:
        raise InputError(path, "@best / @last follow a run or checkpoints folder, not a file")
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
        if not p.is_file():
            raise InputError(p, "checkpoint tensors missing beside the JSON")
    require_regular_file(p, hint="a checkpoint is a .safetensors file")
    return p


def finite_or_refuse(tensors: dict[str, torch.Tensor], where: str | Path, what: str) -> None:
    """One-line error when any tensor holds NaN or infinity (a diverged or damaged checkpoint)."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(
            where, f"{what} are not finite (NaN or infinity in {bad[0]}{' and more' if len(bad) > 1 else ''})"
        )


#: Version of a synthesizer checkpoint's metadata record (:class:`CheckpointMeta`). 1 (no
#: ``meta_version`` key): written before 2026-11-29, a cGAN's objective keys under ``config.train``;
#: 2: those keys under ``config.model``. Both load (version 1 through :func:`medgan.config.upgrade_raw`).
META_VERSION = 2


class IntensityMeta(BaseModel):
    """The raw interval the training slices were mapped from to [-1, 1] (median over slices)."""

    model_config = ConfigDict(extra="allow")

    mode: str | None = None
    lo: float | None = None
    hi: float | None = None
    varies: bool = False

    def interval(self) -> tuple[float, float] | None:
        """``(lo, hi)`` when both are known."""
        return None if self.lo is None or self.hi is None else (self.lo, self.hi)


class DataMeta(BaseModel):
    """What generation needs to know about the training data: intensity, geometry, modality."""

    model_config = ConfigDict(extra="allow")

    source_format: str | None = None
    n_train: int | None = None
    intensity: IntensityMeta = Field(default_factory=IntensityMeta)
    spacing: list[float | None] | None = None
    thickness: float | None = None
    modality: str | None = None


class RunMeta(BaseModel):
    """What a training run records about its data in every checkpoint (given to the fit loop)."""

    model_config = ConfigDict(extra="forbid")

    classes: list[str]
    shape: tuple[int, int, int]
    data: DataMeta = Field(default_factory=DataMeta)
    domains: dict[str, Any] | None = None  # a CycleGAN's domains A and B
    n_a: int | None = None
    n_b: int | None = None
    real_subset: dict[str, Any] | None = None  # a study synthesizer's real subset (fraction, seed)


class CheckpointMeta(RunMeta):
    """The JSON beside a synthesizer checkpoint, typed (read with :func:`checkpoint_meta`)."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    meta_version: int = 1
    step: int
    sha256: str
    medgan_version: str | None = None
    seed: int | None = None
    config: dict[str, Any]
    model: dict[str, Any]
    state_info: dict[str, Any] = Field(default_factory=dict)
    select: dict[str, Any] | None = None
    world_size: int | None = None

    @property
    def kind(self) -> str:
        """The synthesizer kind (``model.kind``)."""
        return str(self.model.get("kind", "cgan"))

    def run_config(self) -> dict[str, Any]:
        """The recorded run config in today's layout (a version-1 record upgraded), as a raw dict."""
        return upgrade_raw(self.config, strict=False)


def checkpoint_meta(path: str | Path) -> CheckpointMeta:
    """The typed metadata of a synthesizer checkpoint; a record that does not fit is a one-line error."""
    p = resolve_checkpoint(path)
    return _typed_meta(read_checkpoint_meta(p), p)


def _typed_meta(raw: dict[str, Any], p: Path) -> CheckpointMeta:
    """A checkpoint's JSON (as read) validated into :class:`CheckpointMeta`, or a one-line error."""
    if int(raw.get("meta_version", 1)) > META_VERSION:
        raise InputError(
            p,
            f"written by a newer medgan (metadata version {raw['meta_version']}; this one reads <= {META_VERSION})",
        )
    try:
        return CheckpointMeta.model_validate(raw)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        raise InputError(
            p.with_suffix(".json"), f"not a synthesizer checkpoint record: {where}: {e['msg']}"
        ) from None


def _refuse_pickle(path: Path) -> None:
    """Refuse a pickle / ``torch.save`` file (zip or raw pickle) before anything reads it."""
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or head[:4] == b"PK\x03\x04":
        raise InputError(
            path,
            "is a pickle / torch.save file; medgan loads only its own safetensors checkpoints and never unpickles",
        )


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (no tensors loaded, no hash check)."""
    p = resolve_checkpoint(path)
    _refuse_pickle(p)
    meta_path = p.with_suffix(".json")
    if meta_path.exists():
        require_regular_file(meta_path, hint="checkpoint metadata is a .json file")
    if not meta_path.is_file():
        raise InputError(p, "no JSON metadata beside it; not a medgan checkpoint")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            meta_path, f"checkpoint metadata is not valid JSON ({exc.__class__.__name__})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(meta_path, f"not a medgan checkpoint (expected format {FORMAT!r})")
    return meta


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load tensors + metadata, verifying the SHA-256. Pickles and foreign files are refused, never unpickled."""
    p = resolve_checkpoint(path)
    meta = read_checkpoint_meta(p)
    digest = sha256_file(p)
    if digest != meta.get("sha256"):
        raise InputError(
            p,
            f"SHA-256 mismatch (file {digest[:12]}..., metadata {str(meta.get('sha256'))[:12]}...): tampered or truncated",
        )
    try:
        tensors = load_file(str(p), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(p, f"not a readable safetensors file ({exc.__class__.__name__})") from None
    return tensors, meta


def load_model_checkpoint(
    path: str | Path, kind: str, what: str, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """:func:`load_checkpoint` of a synthesizer with its typed metadata, refusing another model kind
    (``what`` names the expected one)."""
    tensors, raw = load_checkpoint(path, device)
    meta = _typed_meta(raw, resolve_checkpoint(path))  # the JSON load_checkpoint read, not a second read
    if meta.kind != kind:
        raise InputError(path, f"is a {meta.kind!r} checkpoint, not a {what}")
    return tensors, meta


def state_dict_of(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a flat checkpoint under ``prefix.`` with the prefix removed (one network's state dict)."""
    head = prefix + "."
    return {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}


# ------------------------------------------------------------------ optimizer and RNG state <-> flat tensors


def flatten_optimizer(
    prefix: str, opt: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as flat tensors (``prefix.state.<i>.<name>``) plus JSON-able param groups."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.state.{idx}.{name}"] = t
    return tensors, {"param_groups": sd["param_groups"]}


def restore_optimizer(
    prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict
) -> None:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    head = f"{prefix}.state."
    for key, value in tensors.items():
        if key.startswith(head):
            idx, name = key[len(head) :].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
        for g in info["param_groups"]
    ]  # JSON turned tuples (betas) into lists
    opt.load_state_dict({"state": state, "param_groups": groups})


def flatten_training_state(
    nets: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Networks (``name.<param>``) and optimizers (``name.state.<i>.<x>``) as flat tensors + JSON info."""
    t: dict[str, torch.Tensor] = {}
    info: dict[str, Any] = {}
    for name, net in nets.items():
        t.update({f"{name}.{k}": v for k, v in net.state_dict().items()})
    for name, opt in optimizers.items():
        ot, info[name] = flatten_optimizer(name, opt)
        t.update(ot)
    return t, info


def restore_training_state(
    tensors: dict[str, torch.Tensor],
    info: dict[str, Any],
    nets: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
) -> None:
    """Inverse of :func:`flatten_training_state`."""
    for name, net in nets.items():
        net.load_state_dict(state_dict_of(tensors, name))
    for name, opt in optimizers.items():
        restore_optimizer(name, opt, tensors, info[name])
