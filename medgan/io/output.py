"""The output folder of a writer (``medgan generate``, ``generate --translate``, ``augment``).

One object does what every writer into a user's folder needs: check that the folder can be
written (before any work), hold :class:`~medgan.io.atomic.FolderLock` for the run, and keep a
JSON *record* of what the folder holds. The same parameters again resume (finished files are
kept); different ones are refused unless ``overwrite``; a non-empty folder without a record is
refused (it is not medgan's).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from medgan import __version__
from medgan.errors import InputError
from medgan.io.atomic import FolderLock, atomic_write_text


def _existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (where a new folder's bytes would go)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def human_bytes(n: float) -> str:
    """``n`` bytes as a short size (``1.4 GB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def check_room(
    path: str | Path,
    n_files: int,
    n_bytes: int,
    what: str,
    advice: str = "ask for fewer images or write elsewhere",
) -> None:
    """Refuse, before any work, an output that cannot fit: ``n_bytes`` (a lower bound of what it
    will take) beyond the free space, or ``n_files`` beyond the free file slots (inodes), of the
    file system ``path`` is on."""
    where = _existing(Path(path))
    try:
        free = shutil.disk_usage(where).free
        st = os.statvfs(where)
        slots = st.f_favail if st.f_files else None  # some file systems report no inode limit
    except (OSError, AttributeError):
        return  # nothing to measure: the writes themselves will tell
    if n_bytes > free or (slots is not None and n_files > slots):
        room = f"{human_bytes(free)} free" + (f", {slots:,} more files" if slots is not None else "")
        raise InputError(
            path,
            f"{what} needs at least {human_bytes(n_bytes)} in {n_files:,} files; the disk holding "
            f"{where} has {room}; {advice}",
        )


class OutputFolder:
    """A writer's output folder: ``check_writable()``, then ``claim(params)`` (lock + record), ``release()``.

    ``record`` is the record's file name (e.g. ``generate.json``), ``what`` names the content in
    messages ("generation", "augmented dataset"), ``command`` the holder in the lock file.
    Usable as a context manager after :meth:`claim`.
    """

    def __init__(
        self, path: str | Path, *, record: str, what: str, command: str, overwrite: bool = False
    ) -> None:
        self.path, self.record_name, self.what = Path(path), record, what
        self.overwrite = overwrite
        self._lock = FolderLock(self.path, command)
        self._held = False

    @property
    def record_path(self) -> Path:
        """Where the record lives."""
        return self.path / self.record_name

    def check_writable(self) -> None:
        """Create the folder and prove it writable, or raise a one-line :class:`InputError`."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".medgan-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(
                self.path,
                f"output folder cannot be written ({exc.__class__.__name__}: {exc.strerror or exc})",
            ) from None

    def read_record(self) -> dict[str, Any] | None:
        """The folder's record, None when it has none (a corrupt one is a one-line error)."""
        if not self.record_path.is_file():
            return None
        try:
            rec = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(
                self.record_path, f"corrupt {self.what} record; remove it or pass --overwrite"
            ) from None
        if not isinstance(rec, dict):
            raise InputError(self.record_path, f"corrupt {self.what} record; remove it or pass --overwrite")
        return rec

    def _check_or_write(self, params: dict[str, Any]) -> dict[str, Any]:
        old = None if self.overwrite else self.read_record()
        if old is not None:
            diff = [k for k in params if old.get(k) != params[k]]
            if diff:
                raise InputError(
                    self.path,
                    f"holds a different {self.what} ({', '.join(diff)} differ); "
                    "choose another --out or pass --overwrite",
                )
            return old
        if not self.overwrite and not self.record_path.is_file() and self._has_files():
            raise InputError(
                self.path, f"output folder is not empty and holds no medgan {self.what}; choose another --out"
            )
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d%H%M%S")
        rec = {**params, "created_utc": now, "medgan_version": __version__}
        atomic_write_text(self.record_path, json.dumps(rec, indent=2))
        return rec

    def _has_files(self) -> bool:
        return self.path.is_dir() and any(not p.name.startswith(".") for p in self.path.iterdir())

    def claim(self, params: dict[str, Any]) -> dict[str, Any]:
        """Lock the folder for this run (cleaning what a killed run left), then check or create the
        record: returns it (with ``created_utc``). Refused while another process holds the folder."""
        self._lock.acquire()
        self._held = True
        try:
            return self._check_or_write(params)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Give the folder up (idempotent)."""
        if self._held:
            self._lock.release()
            self._held = False

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
