"""Regression corpus: every malformed file the fuzzers found (tests/io/corpus/<format>/) keeps its property.

Each file once crashed, hung or over-allocated in a reader (docs/reliability.md lists them); now
every reader of its format must load it or raise a one-line InputError naming it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.io.fuzzing import FORMATS, UNPICKLED, check_file

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(
    p for fmt in FORMATS for p in (CORPUS / fmt).glob("*") if p.is_file() and p.name != "README.md"
)


def test_corpus_is_small_and_covers_every_format() -> None:
    assert {p.parent.name for p in FILES} == set(FORMATS)
    for p in FILES:
        assert p.stat().st_size <= 8192, f"{p.name} is larger than a corpus file should be"


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_corpus_file_loads_or_raises_one_line_input_error(path: Path, tmp_path: Path) -> None:
    outcomes = check_file(path.parent.name, path, tmp_path)
    assert outcomes and not UNPICKLED
