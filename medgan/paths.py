"""Where medgan looks for data and keeps caches."""

from __future__ import annotations

import os
import re
from pathlib import Path

from medgan.errors import InputError

DATA_DIR_ENV = "MEDGAN_DATA_DIR"
CACHE_DIR_ENV = "MEDGAN_CACHE_DIR"


def user_cache_dir() -> Path:
    """The per-user cache folder: ``$MEDGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/medgan``, else ``~/.cache/medgan``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "medgan"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the explicit argument, else ``$MEDGAN_DATA_DIR``, else the user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser().resolve()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser().resolve()
    return user_cache_dir() / "data"


def resolve_under(path: str | Path, data_dir: Path) -> Path:
    """Resolve ``path``: absolute paths stay, relative ones are taken under ``data_dir``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (data_dir / p)


def display_path(path: str | Path, data_dir: Path | None) -> str:
    """``path`` relative to ``data_dir`` when it lies inside it (stable manifests), else absolute."""
    p = Path(os.path.abspath(path))
    if data_dir is not None:
        try:
            return p.relative_to(Path(os.path.abspath(data_dir))).as_posix()
        except ValueError:
            pass
    return p.as_posix()


def inside(root: str | Path, rel: str | Path, where: str | Path, what: str = "path") -> Path:
    """``root / rel``, refused unless it stays inside ``root``.

    A manifest, labels CSV or metadata file may only point at files under its own root: a
    ``../`` that climbs out, or an absolute path elsewhere, raises a one-line
    :class:`~medgan.errors.InputError` naming ``where``. The check is lexical (``..`` collapsed,
    symbolic links not followed), so a link the user placed inside the root still works.
    """
    text = str(rel)
    if "\x00" in text:
        raise InputError(where, f"{what} {text[:100]!r} contains a NUL byte")
    root_abs = Path(os.path.normpath(os.path.abspath(root)))
    full = Path(os.path.normpath(root_abs / Path(rel)))  # an absolute rel replaces root_abs here
    if full != root_abs and root_abs not in full.parents:
        raise InputError(where, f"{what} {text[:100]!r} leads outside {root_abs}")
    return full


def slug(name: str) -> str:
    """A file-name-safe, lower-case form of a class or run name (``"Normal, benign"`` -> ``normal-benign``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "class"
