"""Atomic writes: readers see the old file or the whole new one; failures leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medgan.errors import InputError
from medgan.io.atomic import atomic_dir, atomic_path, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_path_keeps_old_file_on_failure(tmp_path: Path) -> None:
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(2))
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        assert tmp.name.endswith(".npz")
        np.savez(tmp, a=np.ones(2))
        raise RuntimeError("killed")
    with np.load(p) as z:
        assert z["a"].sum() == 0
    assert [x.name for x in tmp_path.iterdir()] == ["x.npz"]


def test_atomic_dir_only_appears_complete(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "done.txt").write_text("x")
    assert [x.name for x in out.iterdir()] == ["done.txt"]
    with pytest.raises(InputError, match="not empty"), atomic_dir(out):
        pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "v2.txt").write_text("y")
    assert [x.name for x in out.iterdir()] == ["v2.txt"]
    assert [x.name for x in tmp_path.iterdir()] == ["out"]


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "f.txt", "x")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("y")
        assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    finally:
        os.umask(old)
