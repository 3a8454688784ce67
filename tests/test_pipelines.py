"""The recipes in pipelines/ run end to end."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_prepare_slices_recipe(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "out"
    argv = [
        "prepare_slices.py",
        str(REPO / "configs/nifti_lesions.yaml"),
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
        "--set",
        "data.size=32",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as ei:
        runpy.run_path(str(REPO / "pipelines/prepare_slices.py"), run_name="__main__")
    assert ei.value.code == 0
    assert (out / "manifest.csv").is_file()
    assert "wrote 69 slices" in capsys.readouterr().out
