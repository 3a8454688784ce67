"""Paths read from manifests, labels CSVs and metadata stay inside their root."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medgan.errors import InputError
from medgan.paths import inside


def test_inside_accepts_paths_under_the_root(tmp_path: Path) -> None:
    assert inside(tmp_path, "a/b.png", "m.csv") == tmp_path / "a" / "b.png"
    assert inside(tmp_path, "a/../b.png", "m.csv") == tmp_path / "b.png"
    assert inside(tmp_path, tmp_path / "c.png", "m.csv") == tmp_path / "c.png"  # absolute, inside


@pytest.mark.parametrize("rel", ["../x.png", "a/../../x.png", "/etc/passwd", "..", "a/\x00.png"])
def test_inside_refuses_escapes_with_one_line(tmp_path: Path, rel: str) -> None:
    with pytest.raises(InputError) as exc:
        inside(tmp_path / "root", rel, tmp_path / "root" / "manifest.csv")
    msg = str(exc.value)
    assert "manifest.csv" in msg and "\n" not in msg
    assert "leads outside" in msg or "NUL" in msg


def test_evaluate_refuses_a_manifest_pointing_outside_its_folder(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from medgan.generate import generate
    from medgan.metrics.evaluate import load_synthetic

    out = tmp_path / "gen"
    generate(tiny_checkpoint, out, 2, fmt="png", seed=1)
    imgs, labels, _ = load_synthetic(str(out), tmp_path, (1, 16, 16))
    assert len(imgs) == 4 and sorted(labels) == [0, 0, 1, 1]
    m = pd.read_csv(out / "manifest.csv")
    (tmp_path / "secret.png").write_bytes((out / m["path"][0]).read_bytes())  # a readable file outside
    m.loc[1, "path"] = "../secret.png"
    m.to_csv(out / "manifest.csv", index=False)
    with pytest.raises(InputError, match=r"manifest\.csv: path '\.\./secret\.png' leads outside"):
        load_synthetic(str(out), tmp_path, (1, 16, 16))


def test_prepared_folder_refuses_a_shard_outside_it(tiny_data_dir: Path, tmp_path: Path) -> None:
    from medgan.config import config_from_dict
    from medgan.data.prepare import load_prepared, write_prepared
    from medgan.data.sources import load_source
    from tests.conftest import tiny_config

    cfg = config_from_dict(tiny_config())
    out = write_prepared(load_source(cfg.data, tiny_data_dir), tmp_path / "prep", cfg)
    assert len(load_prepared(out)) > 0
    meta = json.loads((out / "prepared.json").read_text())
    meta["shards"][0]["file"] = str(tiny_data_dir / "medmnist" / "tinymnist.npz")  # absolute, elsewhere
    (out / "prepared.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"prepared\.json: shard file '/.*tinymnist\.npz' leads outside"):
        load_prepared(out)
