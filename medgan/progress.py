"""Progress display for long loops: a rich progress bar on stderr, only for a terminal and many items.

Bars do not nest: a loop inside a loop that already shows one (a diffusion model sampling inside
``medgan generate``'s batches) runs without its own, so the terminal shows one bar at a time.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Below this many items no bar is shown.
PROGRESS_MIN = 200
_active = 0  # bars being shown now (the outermost one only)


def progress(items: Sequence[T], description: str, minimum: int = PROGRESS_MIN) -> Iterator[T]:
    """Iterate ``items``, with a transient progress bar (ETA) on stderr when there are many and stderr is a TTY."""
    global _active
    if len(items) <= minimum or not sys.stderr.isatty() or _active:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    _active += 1
    try:
        yield from track(items, description=description, console=Console(stderr=True), transient=True)
    finally:
        _active -= 1
