"""Atomic file and folder writes: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text to ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` when the block succeeds.

    For writers that insist on opening the file themselves (``np.savez``, nibabel, pydicom).
    The temporary name keeps the real suffix so format detection by extension still works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it to ``path`` only when the block succeeds.

    On any error the temporary folder is removed, so ``path`` never holds half-written output.
    An existing empty folder at ``path`` is replaced; a non-empty one only with ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        from medgan.errors import InputError

        raise InputError(path, "output path exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        from medgan.errors import InputError

        raise InputError(path, "output folder exists and is not empty (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, _umask_mode() | 0o111)  # mkdtemp creates 0700
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: Temporary names left behind by the writers above when a process is killed mid-write.
_STALE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp(\..+)?|partial)$")

LOCK_NAME = ".medgan.lock"


class FolderLock:
    """An exclusive, advisory lock on an output folder (``<folder>/.medgan.lock``, ``flock``).

    Held by one writer process (``medgan generate``, ``translate``, ``augment``) for its whole
    run; a second one is refused with a one-line :class:`~medgan.errors.InputError` naming the
    folder and the holder's pid and command. The kernel drops the lock when its holder dies
    (even by SIGKILL), so a killed run never leaves a stale lock behind. Once acquired, the
    temporaries a killed writer left (``.<name>.XXXXXXXX.tmp*``) are removed: nobody else can be
    writing them. On systems without ``fcntl`` (Windows) nothing is locked.
    """

    def __init__(self, folder: str | Path, command: str) -> None:
        self.folder, self.command = Path(folder), command
        self._fh: Any = None

    def acquire(self) -> FolderLock:
        """Take the lock (refusing if another process holds it) and clean stale temporaries."""
        from medgan.errors import InputError

        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        path = self.folder / LOCK_NAME
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open until release()
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip()[:200] or "another process"
                fh.close()
                raise InputError(
                    self.folder,
                    f"another medgan process is writing into this folder ({holder}); "
                    "wait for it to finish, or choose another --out",
                ) from None
            try:  # the file we locked may have been unlinked by a holder that just released it
                same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            fh.close()
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}: {self.command}")
        fh.flush()
        self._fh = fh
        self.clean_stale()
        return self

    def clean_stale(self) -> list[Path]:
        """Remove temporaries left by killed writers under the folder; returns what was removed."""
        removed = []
        for p in sorted(self.folder.rglob(".*")):
            if _STALE.match(p.name):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
        return removed

    def release(self) -> None:
        """Drop the lock and remove the lock file (a no-op when not held)."""
        if self._fh is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.folder / LOCK_NAME)
        self._fh.close()  # closing the descriptor releases the flock
        self._fh = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
