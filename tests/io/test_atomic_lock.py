"""FolderLock: one writer per output folder; the refusal names the holder; no lock file after release."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medgan.errors import InputError
from medgan.io.atomic import LOCK_NAME, FolderLock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows: nothing is locked")


def test_second_holder_is_refused_with_the_first_holders_line(tmp_path: Path) -> None:
    with FolderLock(tmp_path, "medgan generate a.safetensors"):
        line = (tmp_path / LOCK_NAME).read_text()
        assert line.startswith("pid ") and line.endswith(": medgan generate a.safetensors")
        with pytest.raises(InputError) as exc:
            FolderLock(tmp_path, "medgan generate b.safetensors").acquire()
        assert str(exc.value) == (
            f"{tmp_path}: another medgan process is writing into this folder ({line}); "
            "wait for it to finish, or choose another --out"
        )
        code = f"from medgan.io.atomic import FolderLock\nFolderLock({str(tmp_path)!r}, 'x').acquire()"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert other.returncode != 0 and f"({line})" in other.stderr
        assert (tmp_path / LOCK_NAME).read_text() == line  # refused contenders leave the holder's line alone
    assert not (tmp_path / LOCK_NAME).exists()
    with FolderLock(tmp_path, "next run") as lock:  # released: the next writer goes ahead
        assert (tmp_path / LOCK_NAME).read_text().endswith(": next run")
    lock.release()  # a second release is a no-op
    assert list(tmp_path.iterdir()) == []


def test_acquire_removes_stale_temporaries(tmp_path: Path) -> None:
    stale = tmp_path / ".manifest.csv.q9w8e7r6.tmp"
    stale.write_text("half")
    keep = tmp_path / "notes.tmp"
    keep.write_text("mine")
    with FolderLock(tmp_path, "medgan augment x"):
        assert not stale.exists() and keep.exists()
