"""Progress display for long loops: a rich progress bar on stderr, only for a terminal and many items."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Below this many items no bar is shown.
PROGRESS_MIN = 200


def progress(items: Sequence[T], description: str, minimum: int = PROGRESS_MIN) -> Iterator[T]:
    """Iterate ``items``, with a transient progress bar (ETA) on stderr when there are many and stderr is a TTY."""
    if len(items) <= minimum or not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    yield from track(items, description=description, console=Console(stderr=True), transient=True)
