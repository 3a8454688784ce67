"""Where medgan looks for data and keeps caches."""

from __future__ import annotations

import os
import re
import stat
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


def _within(path: str, root: str) -> bool:
    """Whether the absolute, normalised ``path`` is ``root`` or lies under it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def inside(root: str | Path, rel: str | Path, where: str | Path, what: str = "path") -> Path:
    """``root / rel``, refused unless the file it names really lies inside ``root``.

    A manifest, labels CSV or metadata file may only point at files under its own root. The
    rule is on real paths: symbolic links are followed (``os.path.realpath`` of both ``root`` and
    the target), and the real target must lie in the real root. A ``../`` that climbs out, an
    absolute path elsewhere, or a link (to a file, or through a linked folder) that leads
    outside raises a one-line :class:`~medgan.errors.InputError` naming ``where``; a link inside
    the root to another file inside it keeps working. The result is the real target, written
    under ``root`` as given (so paths shown relative to a data folder stay relative).
    """
    text = str(rel)
    if "\x00" in text:
        raise InputError(where, f"{what} {text[:100]!r} contains a NUL byte")
    root_abs = Path(os.path.normpath(os.path.abspath(root)))
    joined = os.path.join(root_abs, rel)  # an absolute rel replaces root_abs here
    real_root = os.path.realpath(root_abs)
    real = os.path.realpath(joined)
    if not _within(real, real_root):
        lexical = os.path.normpath(joined)
        via = "" if not _within(lexical, str(root_abs)) else f" (a symbolic link to {real[:200]})"
        raise InputError(where, f"{what} {text[:100]!r} leads outside {root_abs}{via}")
    return root_abs / os.path.relpath(real, real_root)


def require_regular_file(
    path: str | Path,
    where: str | Path | None = None,
    what: str = "",
    expected: str = "a file",
    hint: str = "",
) -> Path:
    """``path``, refused unless it is a regular file (symbolic links followed); checked before opening.

    A device, FIFO or socket blocks or never ends when read (a link to ``/dev/zero`` is an
    endless stream, a FIFO waits for a writer), so every reader calls this first. Raises a
    one-line :class:`~medgan.errors.InputError` naming ``where`` (default: ``path``), its
    problem prefixed by ``what`` (e.g. ``"row 3: path 'a.png'"``): not found, a folder
    (``expected`` says what was wanted), unreadable, or not a regular file (``hint`` appended).
    """
    p = Path(path)
    where = p if where is None else where
    lead = f"{what} " if what else ""
    try:
        mode = os.stat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(where, f"{what} not found" if what else "file not found") from None
    except OSError as exc:  # a link loop, a name too long, no permission on a folder above
        raise InputError(where, f"{lead}cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if stat.S_ISDIR(mode):
        raise InputError(where, f"{lead}is a folder, expected {expected}")
    if not stat.S_ISREG(mode):
        tail = f"; {hint}" if hint else ""
        raise InputError(where, f"{lead}is not a regular file (a device, FIFO or socket){tail}")
    return p


def slug(name: str) -> str:
    """A file-name-safe, lower-case form of a class or run name (``"Normal, benign"`` -> ``normal-benign``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "class"
