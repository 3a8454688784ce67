"""medgan's error types.

Every problem caused by the user's input (a file, a folder, a config key) is raised as a
:class:`MedganError` whose message is one line naming the file or key and the problem.
The CLI prints that line and exits with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

from pathlib import Path


class MedganError(Exception):
    """Base class for errors caused by user input. ``str(err)`` is a single line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(part.strip() for part in str(message).splitlines() if part.strip()))
        self._init_args: tuple = (message,)

    def __reduce__(self) -> tuple:
        """Pickle with the constructor's own arguments (errors cross process boundaries: Ray jobs)."""
        return (self.__class__, self._init_args)


def with_library_warnings(message: str, lines: list[str]) -> str:
    """``message`` with the first library warning (and how many more) appended, once.

    Warnings that pydicom, Pillow or torch raise while a command runs are never printed; a
    refusal carries the first of them in its one line (``... (library warning: X and 2 more)``).
    """
    distinct = list(dict.fromkeys(lines))
    if not distinct or "(library warning: " in message:
        return message
    more = f" and {len(distinct) - 1} more" if len(distinct) > 1 else ""
    return f"{message} (library warning: {distinct[0]}{more})"


class InputError(MedganError):
    """A data file or folder is missing, unreadable or inconsistent."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{path}: {problem}" if path is not None else problem)
        self._init_args = (path, problem)


class ConfigError(MedganError):
    """A config file, key or value is invalid."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        super().__init__(f"{where}: {problem}")
        self._init_args = (where, problem)
