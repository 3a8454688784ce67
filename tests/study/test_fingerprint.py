"""The cell cache's fingerprint: options added later leave existing caches valid at their defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgan.config import load_config
from medgan.study.plan import fingerprint

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # the caches behind docs/results.md's issue-26 tables (runs/studies/*/cells/<fingerprint>)
        ("configs/study_pneumoniamnist_lowdata.yaml", "26980b00b1a037b1"),
        ("configs/study_breastmnist_fractions.yaml", "abcec08711b1ea16"),
    ],
)
def test_the_shipped_low_data_studies_keep_their_cell_caches(config: str, expected: str) -> None:
    """A half-day study resumes from its cells only under the same fingerprint: a new option at its
    default (here ``data.splits.allow_patient_overlap``) must not change it."""
    cfg = load_config(REPO / config)
    assert fingerprint(cfg, None) == expected
    cfg.data.splits.allow_patient_overlap = True  # a leak between splits changes every result
    assert fingerprint(cfg, None) != expected
