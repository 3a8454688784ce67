"""Atomic file and folder writes: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medgan.errors import InputError

#: ``errno`` values that mean the disk (or the user's quota) is full.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk is full: an ``OSError`` with ENOSPC / EDQUOT, or a library's
    own error carrying the same (safetensors' "StorageFull", torch's writer)."""
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL
    text = str(exc)
    return "No space left on device" in text or "StorageFull" in text or "Disk quota exceeded" in text


def _disk_full_at(exc: BaseException, path: Path) -> None:
    """Re-raise a disk-full error as an ``OSError(ENOSPC)`` naming ``path`` (the file meant to be
    written, not its temporary name, which is gone); any other error passes through unchanged."""
    if is_disk_full(exc):
        code = exc.errno if isinstance(exc, OSError) and exc.errno in DISK_FULL else errno.ENOSPC
        raise OSError(code, os.strerror(code), str(path)) from exc


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    ``mode``: the file's permissions (e.g. ``0o600`` for a secret); default, what the umask allows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _disk_full_at(exc, path)
        raise
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode() if mode is None else mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _disk_full_at(exc, path)
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
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _disk_full_at(exc, path)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it to ``path`` only when the block succeeds.

    On any error the temporary folder is removed, so ``path`` never holds half-written output.
    An existing empty folder at ``path`` is replaced; a non-empty one only with ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, "output path exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(path, "output folder exists and is not empty (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(path)
    # the creator's pid in the name: a later run removes the folder once that process is gone
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".partial", dir=path.parent))
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
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _disk_full_at(exc, path)
        raise


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned(path: str | Path) -> list[Path]:
    """Remove the temporary folders (``.<name>.<pid>.XXXXXXXX.partial``) that killed writers of
    ``path`` left beside it: those whose process is gone (the pid is in the name). Returns them."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[A-Za-z0-9_]{{8}}\.partial$")
    removed = []
    if not path.parent.is_dir():
        return removed
    for p in path.parent.iterdir():
        m = pattern.match(p.name)
        if m and p.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


#: Temporary names left behind by the writers above when a process is killed mid-write.
_STALE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp(\..+)?|partial)$")

LOCK_NAME = ".medgan.lock"

#: ``flock`` errors that mean "this filesystem cannot lock"; refused like a held lock, as before.
_NO_FLOCK = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOLCK})


class FolderLock:
    """An exclusive, advisory lock on an output folder (``<folder>/.medgan.lock``, ``flock``).

    Held by one writer process (``medgan generate``, ``translate``, ``augment``) for its whole
    run; a second one is refused with a one-line :class:`~medgan.errors.InputError` naming the
    folder and the holder's pid and command. The kernel drops the lock when its holder dies
    (even by SIGKILL), so a killed run never leaves a stale lock behind. Once acquired, the
    temporaries a killed writer left (``.<name>.XXXXXXXX.tmp*``) are removed: nobody else can be
    writing them. On systems without ``fcntl`` (Windows) nothing is locked.

    The ``flock`` itself is :class:`filelock.UnixFileLock` (3.30+: a contender that loses never
    truncates the holder's file, so the holder's line survives for the error message).
    """

    def __init__(self, folder: str | Path, command: str) -> None:
        self.folder, self.command = Path(folder), command
        self._lock: Any = None

    def _write_holder(self, fd: int) -> None:
        """``on_acquired`` hook: record "pid N: command" in the lock file we now hold."""
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {self.command}".encode(), 0)

    def _holder(self, path: Path) -> str | None:
        """The holder's line from the lock file, ``""`` when empty, None when there is no lock file."""
        try:
            return path.read_text(encoding="utf-8", errors="replace").strip()[:200]
        except FileNotFoundError:
            return None

    def acquire(self) -> FolderLock:
        """Take the lock (refusing if another process holds it) and clean stale temporaries."""
        if importlib.util.find_spec("fcntl") is None:  # pragma: no cover - Windows
            return self
        import filelock

        path = self.folder / LOCK_NAME
        self.folder.mkdir(parents=True, exist_ok=True)
        holder: str | None = None
        for _ in range(100):  # retried only while holders release between our open() and flock()
            lock = filelock.UnixFileLock(
                path, timeout=0, fallback_to_soft=False, on_acquired=self._write_holder
            )
            try:
                lock.acquire()
            except OSError as err:  # filelock.Timeout is an OSError too
                if not isinstance(err, filelock.Timeout) and err.errno not in _NO_FLOCK:
                    raise
                holder = self._holder(path)
                if holder is None:  # the holder released (and removed the file) meanwhile: try again
                    continue
                break
            self._lock = lock
            self.clean_stale()
            return self
        raise InputError(
            self.folder,
            f"another medgan process is writing into this folder ({holder or 'another process'}); "
            "wait for it to finish, or choose another --out",
        )

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
        if self._lock is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.folder / LOCK_NAME)
        self._lock.release()  # unlocking the descriptor releases the flock
        self._lock = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
