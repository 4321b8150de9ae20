"""``tasks``: a local JSONL file already in hrmcode's ``Task`` schema (``--from FILE``).

Every line is validated; the first bad line stops the fetch with ``file:line`` and the field at
fault. Records are re-serialised in canonical form (schema field order, defaults filled in).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from hrmcode.data.schema import Task, parse_task
from hrmcode.data.sources._common import Fetched, FetchRequest, SourceSpec, iter_jsonl_lines, require_path
from hrmcode.errors import InputError


@contextlib.contextmanager
def _open(request: FetchRequest) -> Iterator[Fetched]:
    path = require_path(request.from_paths[0], "file")
    if path.is_dir():
        raise InputError(f"--from {path} is a directory", "the tasks source reads one JSONL file")

    def records() -> Iterator[Task]:
        for lineno, record in iter_jsonl_lines(path):
            yield parse_task(record, where=f"{path}:{lineno}")

    yield Fetched(records=records(), origin=str(path))


SPEC = SourceSpec(
    name="tasks",
    summary="a local JSONL of records already in hrmcode's task schema",
    remote=None,
    open=_open,
    needs_from=True,
)
