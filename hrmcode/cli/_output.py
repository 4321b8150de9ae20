"""The one output sink of the CLI.

Data (results, tables, JSON) goes to stdout; logs, warnings, errors and progress go to
stderr. Modes: ``human`` (rich tables), ``json`` (one JSON document on stdout, nothing else
there), ``quiet`` (data only, no logs). Progress is shown only in human mode when neither
``--no-progress`` nor ``HRMCODE_NO_PROGRESS`` is set: a bar when stderr is a terminal, else one
plain line every ``PROGRESS_EVERY_S`` seconds (``$HRMCODE_PROGRESS_EVERY``) while a task runs, so a
log file or CI console shows a long step is alive; a task shorter than that prints nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from hrmcode import reporting
from hrmcode.errors import UsageError

PROGRESS_EVERY_S = 5.0
PROGRESS_EVERY_ENV = "HRMCODE_PROGRESS_EVERY"


def progress_every_s() -> float:
    """Seconds between progress lines when stderr is not a terminal."""
    value = os.environ.get(PROGRESS_EVERY_ENV)
    if not value:
        return PROGRESS_EVERY_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise UsageError(f"${PROGRESS_EVERY_ENV}={value!r} is not a positive number of seconds",
                         f"unset it for the default of {PROGRESS_EVERY_S:g}")
    return seconds


class ProgressLines(reporting.Task):
    """A task's progress as one plain line every ``every`` seconds, from a thread of its own (so a
    line comes even while no item finishes)."""

    def __init__(self, emit: Callable[[str], None], description: str, total: int | None, every: float):
        self.emit, self.description, self.total, self.every = emit, description, total, every
        self.done = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-lines", daemon=True)

    def advance(self, n: int = 1) -> None:
        self.done += n  # read by the line thread; a stale count for one line is harmless

    def set_total(self, total: int | None) -> None:
        self.total = total

    def line(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        took = f"{elapsed // 60}m{elapsed % 60:02d}s"
        if not self.total:
            return f"{self.description}: {self.done} done, {took}"
        return f"{self.description}: {self.done}/{self.total} ({100 * self.done // self.total}%), {took}"

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.emit(self.line())

    def __enter__(self) -> "ProgressLines":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Output(reporting.Reporter):
    def __init__(self) -> None:
        self.mode = "human"
        self.progress_enabled = True
        self._configure_consoles()

    def _configure_consoles(self) -> None:
        # No `file=`: rich then looks up sys.stdout/sys.stderr at every write, so swapped streams
        # (test runners, redirections) are always the current ones, never a closed one.
        no_color = bool(os.environ.get("NO_COLOR"))
        self.stdout = Console(no_color=no_color, soft_wrap=True, highlight=False)
        self.stderr = Console(stderr=True, no_color=no_color, soft_wrap=True, highlight=False)

    def configure(self, *, json_mode: bool = False, quiet: bool = False, no_progress: bool = False) -> None:
        self.mode = "json" if json_mode else "quiet" if quiet else "human"
        self.progress_enabled = not no_progress and not os.environ.get("HRMCODE_NO_PROGRESS")
        self._configure_consoles()

    @property
    def json(self) -> bool:
        return self.mode == "json"

    # -- stderr ----------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.mode == "human":
            self.stderr.print(message, markup=False)

    def warn(self, message: str) -> None:
        if self.mode != "quiet":
            self.stderr.print(f"warning: {message}", markup=False, style="yellow")

    def error(self, message: str) -> None:
        self.stderr.print(f"error: {message}", markup=False, style="red")

    def hint(self, message: str) -> None:
        if self.mode == "human":
            self.stderr.print(message, markup=False, style="dim")

    # -- stdout ----------------------------------------------------------------------
    def data(self, text: str) -> None:
        """Plain data line(s) on stdout (not in json mode, where only ``result`` prints)."""
        if not self.json:
            self.stdout.print(text, markup=False)

    def result(self, payload: Any, render: Callable[[], None] | None = None) -> None:
        """The command's result: JSON in json mode, else ``render()`` (or a plain dump)."""
        if self.json:
            sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
            sys.stdout.flush()
        elif render is not None:
            render()
        else:
            self.stdout.print(json.dumps(payload, indent=2, ensure_ascii=False, default=str), markup=False)

    def table(self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.json:
            return
        table = Table(title=title, title_justify="left")
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
        self.stdout.print(table)

    # -- progress --------------------------------------------------------------------
    def _draw_progress(self) -> bool:
        return self.mode == "human" and self.progress_enabled and sys.stderr.isatty()

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[reporting.Task]:
        if not self._draw_progress():
            if self.mode == "human" and self.progress_enabled:
                with ProgressLines(lambda line: self.stderr.print(line, markup=False), description, total,
                                   progress_every_s()) as lines:
                    yield lines
            else:
                yield reporting.Task()
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.stderr, transient=True,
        ) as progress:
            task_id = progress.add_task(description, total=total)

            class _Bar(reporting.Task):
                def advance(self, n: int = 1) -> None:
                    progress.advance(task_id, n)

                def set_total(self, new_total: int | None) -> None:
                    progress.update(task_id, total=new_total)

            yield _Bar()


out = Output()
reporting.set_reporter(out)
