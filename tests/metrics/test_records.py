"""``metrics.json`` is a typed, versioned record (EvaluationResult)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgan.errors import InputError
from medgan.metrics.records import EVALUATION_RECORD, EvaluationResult

MINIMAL = {
    "features": "pool",
    "real": "real:test",
    "synthetic": "synth",
    "n_real": 8,
    "n_synthetic": 8,
    "class_counts": {"real": {"a": 4, "b": 4}, "synthetic": {"a": 4, "b": 4}},
    "fid": 12.5,
    "fid_ci": [10.0, 15.0],
    "kid_mean": 0.1,
    "kid_std": 0.01,
    "kid_subset_size": 8,
    "precision": 0.5,
    "recall": None,
    "density": 0.9,
    "coverage": 0.75,
    "floor_fid": 5.0,
    "floor_n": 8,
}


def test_round_trip_keeps_extras_and_marks_the_layout(tmp_path: Path) -> None:
    r = EvaluationResult.model_validate(MINIMAL)
    assert r.fid_ratio == 2.5 and r.recall is None and r.model_extra == {"floor_n": 8}
    r.write(tmp_path / "metrics.json")
    raw = json.loads((tmp_path / "metrics.json").read_text())
    assert raw["record"] == EVALUATION_RECORD and raw["floor_n"] == 8 and "gates" not in raw
    assert EvaluationResult.read(tmp_path / "metrics.json") == r


def test_a_record_that_does_not_fit_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "metrics.json"
    bad.write_text(json.dumps({**MINIMAL, "n_real": "eight"}))
    with pytest.raises(InputError, match=r"metrics.json: n_real: Input should be a valid integer"):
        EvaluationResult.read(bad)
    bad.write_text(json.dumps({**MINIMAL, "record": "medgan-evaluation/9"}))
    with pytest.raises(InputError, match=r"not a medgan-evaluation/1 record"):
        EvaluationResult.read(bad)
    with pytest.raises(Exception, match="fid"):
        EvaluationResult.model_validate({k: v for k, v in MINIMAL.items() if k != "fid"})
