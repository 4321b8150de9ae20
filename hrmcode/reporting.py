"""Progress and log reporting for library code, without importing the CLI.

Library functions call ``reporter().log(...)`` and ``with reporter().task(desc, total) as t:
t.advance()``. The default reporter is silent, so library users see nothing; the CLI installs
one that logs to stderr and draws progress bars on a terminal (``hrmcode/cli/_output.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Task:
    def advance(self, n: int = 1) -> None:
        pass

    def set_total(self, total: int | None) -> None:
        pass


class Reporter:
    """Silent reporter: the interface and the library default."""

    def log(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Task]:
        yield Task()


_current: Reporter = Reporter()


def reporter() -> Reporter:
    return _current


def set_reporter(new: Reporter) -> Reporter:
    """Install ``new``; return the previous one (so tests can restore it)."""
    global _current
    previous, _current = _current, new
    return previous
