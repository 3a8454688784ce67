"""Progress bars: shown on a terminal for long loops, never nested."""

from __future__ import annotations

import sys

import pytest

from medgan import progress as prog


def test_bars_do_not_nest(monkeypatch: pytest.MonkeyPatch) -> None:
    import rich.progress

    shown: list[str] = []

    def fake_track(items, description, **_):  # type: ignore[no-untyped-def]
        shown.append(description)
        yield from items

    monkeypatch.setattr(rich.progress, "track", fake_track)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    total = 0
    for _ in prog.progress(range(3), "outer", minimum=0):
        for j in prog.progress(range(5), "inner", minimum=0):  # inside a shown bar: none of its own
            total += j
    assert shown == ["outer"] and total == 30
    assert list(prog.progress(range(2), "again", minimum=0)) == [0, 1] and shown == ["outer", "again"]
    assert list(prog.progress(range(2), "short")) == [0, 1] and len(shown) == 2  # under the minimum
