"""Shared fixtures: the real data directory (../shared/data or $MEDGAN_DATA_DIR) and tiny synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$MEDGAN_DATA_DIR`` if set, else ``../shared/data`` beside the repository."""
    env = os.environ.get("MEDGAN_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data directory; integration tests skip when it is absent."""
    d = shared_data_dir()
    if not (d / "README.md").is_file():
        pytest.skip(f"real data directory not found at {d} (set MEDGAN_DATA_DIR)")
    return d


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches and downloads never touch the user's home or the data directory during tests."""
    monkeypatch.setenv("MEDGAN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
