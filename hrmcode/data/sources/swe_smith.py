"""SWE-smith task instances: a Hugging Face dataset (default ``SWE-bench/SWE-smith`` at the pinned
revision ``DEFAULT_REVISION``, ``--revision`` to move it; ``--split train``; streamed through
``datasets.load_dataset`` so ``--limit`` stops early) or local files (``--from``): what
``datasets`` leaves on disk (a ``save_to_disk`` directory, an arrow file, a local snapshot of the
hub repository), JSONL, parquet, one instance as (pretty-printed) JSON as SWE-smith's tests ship
it, or the JSON array SWE-smith's ``harness.gather`` writes (``logs/task_insts/<run_id>.json``);
another directory is searched for ``*.jsonl``, ``*.jsonl.gz``, ``*.parquet``, ``*.arrow`` and ``*.json``.

Both published schemas are read: the first release's 9 fields (with ``base_commit`` and
``created_at``) and the later 7 (``instance_id, patch, FAIL_TO_PASS, PASS_TO_PASS, image_name, repo,
problem_statement``). ``FAIL_TO_PASS``/``PASS_TO_PASS`` may be lists or JSON strings.

Each task: kind ``repo-patch``; ``solution.patch`` = the gold fix = the REVERSE of the dataset's
bug-introducing ``patch`` (which stays in ``metadata.patch``); ``tests.fail_to_pass`` /
``pass_to_pass``; ``language`` from the changed files' extensions (most changed files; ties by
first seen; ``unknown`` when no code file is touched); ``prompt`` = ``problem_statement``, or, when
that is empty (most rows of the first release), an issue text built from the failing test names and
the patch's files and functions by SWE-smith's templates, never naming the instance id or its bug
type (``metadata.prompt_source`` says which). ``files`` is empty: the repository lives in the
instance's Docker image (``metadata.image_name``) at branch ``instance_id`` of ``metadata.repo``.
A record whose patch cannot be reversed (binary diff) is skipped and counted in the stats.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from hrmcode.data.bugs.issues import evidence, problem_statement, secrets
from hrmcode.data.schema import Solution, Task, Tests
from hrmcode.data.sources._common import (
    Fetched,
    FetchRequest,
    HubDataset,
    SourceSpec,
    RECORD_FILE_PATTERNS,
    language_of,
    local_rows,
)
from hrmcode.diffs import PatchError, changed_files, reverse_patch
from hrmcode.errors import InputError, UsageError
from hrmcode.reporting import reporter

DEFAULT_DATASET = "SWE-bench/SWE-smith"
# The commit of DEFAULT_DATASET a fetch reads unless --revision says otherwise (the first release's 9-field rows).
DEFAULT_REVISION = "699b53400d3855206a0fbf3ff4beaf1a52f4f232"
FILE_PATTERNS = (*RECORD_FILE_PATTERNS, "*.json")  # what a --from directory is searched for
REQUIRED = ("instance_id", "repo", "patch", "FAIL_TO_PASS", "PASS_TO_PASS")
SCHEMA_9 = ("instance_id", "repo", "patch", "FAIL_TO_PASS", "PASS_TO_PASS", "created_at", "image_name",
            "base_commit", "problem_statement")
# SWE-smith profile defaults (swesmith/profiles): informational test commands per language.
TEST_COMMANDS = {
    "python": "pytest --disable-warnings --color=no --tb=no --verbose",
    "go": "go test -v ./...",
    "rust": "cargo test --verbose",
}


def test_list(value: Any, field: str, where: str) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise InputError(f"{where}: {field} is neither a list nor a JSON list", "check the record") from None
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: {field} must be a list of test names", "check the record")
    return list(value)


def primary_language(paths: list[str]) -> tuple[str, list[str]]:
    counts = Counter(lang for lang in (language_of(p) for p in paths) if lang)
    if not counts:
        return "unknown", ["unknown"]
    ordered = [lang for lang, _ in counts.most_common()]
    return ordered[0], sorted(counts)


def fallback_prompt(instance_id: str, fail_to_pass: list[str], patch: str) -> str:
    """An issue text from the failing tests and the patch's files and functions (SWE-smith's templates,
    ``data/bugs/issues.py``), drawn by the instance id; it never holds the id, a strategy name or the fix."""
    found = evidence({}, patch, fail_to_pass)
    return problem_statement(found, secrets(instance_id, patch, {}), instance_id).text


def to_task(record: dict, where: str) -> Task:
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected an object", "each record must be one SWE-smith instance")
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise InputError(
            f"{where}: not a SWE-smith instance: missing {', '.join(missing)}",
            "expected fields " + ", ".join(SCHEMA_9) + " (base_commit/created_at optional)",
        )
    instance_id, patch = record["instance_id"], record["patch"]
    if not isinstance(instance_id, str) or not instance_id or not isinstance(patch, str) or not patch.strip():
        raise InputError(f"{where}: instance_id and patch must be non-empty strings", "check the record")
    fail_to_pass = test_list(record["FAIL_TO_PASS"], "FAIL_TO_PASS", where)
    pass_to_pass = test_list(record["PASS_TO_PASS"], "PASS_TO_PASS", where)
    paths = changed_files(patch)
    fix = reverse_patch(patch)  # PatchError -> skipped by the caller
    language, languages = primary_language(paths)
    statement = record.get("problem_statement") or ""
    prompt_source = "problem_statement" if statement.strip() else "fail_to_pass"
    metadata = {key: value for key, value in record.items()}
    metadata.update({
        # a key present as None is a 7-field row read through a schema that has the column (a datasets split)
        "schema": "9-field" if record.get("base_commit") is not None or record.get("created_at") is not None
        else "7-field",
        "prompt_source": prompt_source,
        "changed_files": paths,
    })
    return Task(
        id=f"swe-smith/{instance_id}",
        source="swe-smith",
        language=language,
        languages=languages,
        kind="repo-patch",
        title=instance_id.rsplit(".", 1)[0],  # the repository: the id's last part names the bug's strategy
        prompt=statement if prompt_source == "problem_statement" else fallback_prompt(instance_id, fail_to_pass, patch),
        solution=Solution(patch=fix),
        tests=Tests(fail_to_pass=fail_to_pass, pass_to_pass=pass_to_pass, command=TEST_COMMANDS.get(language)),
        metadata=metadata,
    )


def _convert(rows: Iterator[tuple[str, dict]], stats: dict) -> Iterator[Task]:
    for where, record in rows:
        try:
            task = to_task(record, where)
        except PatchError as exc:
            stats["skipped_irreversible_patch"] = stats.get("skipped_irreversible_patch", 0) + 1
            reporter().warn(f"{where}: skipped, its patch cannot be reversed ({exc})")
            continue
        stats["prompt_from_tests"] = stats.get("prompt_from_tests", 0) + (task.metadata["prompt_source"] != "problem_statement")
        yield task


def hub_split_files(files: list[str], split: str) -> list[str]:
    """The parquet/JSONL files of ``split`` in a hub dataset listing (``data/<split>-*.parquet`` etc.)."""
    chosen = []
    for name in files:
        if not name.endswith((".parquet", ".jsonl", ".jsonl.gz")):
            continue
        parts = name.split("/")
        base = parts[-1]
        if split in parts[:-1] or base.startswith((f"{split}-", f"{split}.", f"{split}_")):
            chosen.append(name)
    return sorted(chosen)


def open_rows(
    request: FetchRequest, default_dataset: str, default_revision: str | None, split: str,
    convert: Callable[[Iterator, dict], Iterator], patterns: tuple[str, ...] = FILE_PATTERNS,
) -> Iterator[Fetched]:
    """Rows from ``--from`` when given (see ``local_rows``), else from the Hugging Face dataset at
    ``--revision`` (default: ``default_revision`` for the default dataset, the newest commit for
    another), through ``convert``."""
    stats: dict[str, Any] = {}
    if request.from_paths:
        rows = local_rows(request.from_paths[0], patterns, split)
        yield Fetched(records=convert(rows, stats), origin=request.from_paths[0], stats=stats)
        return
    dataset = request.options["dataset"] or default_dataset
    revision = request.options.get("revision") or (default_revision if dataset == default_dataset else None)
    hub = HubDataset(dataset, revision)
    if hub.files and not hub_split_files(hub.files, split):
        raise UsageError(f"dataset {dataset} has no files for split '{split}'", "check --split")
    stats.update({"dataset": dataset, "split": split})
    yield Fetched(records=convert(hub.rows(split=split), stats), origin=f"hf:{dataset}", revision=hub.revision,
                  stats=stats)


@contextlib.contextmanager
def _open(request: FetchRequest) -> Iterator[Fetched]:
    yield from open_rows(request, DEFAULT_DATASET, DEFAULT_REVISION, request.options["split"], _convert)


SPEC = SourceSpec(
    name="swe-smith",
    summary="SWE-smith bug-fix task instances (HF SWE-bench/SWE-smith or --from JSONL/parquet/JSON/a datasets folder)",
    remote=f"hf:{DEFAULT_DATASET}@{DEFAULT_REVISION}",
    open=_open,
    options={"dataset": None, "revision": None, "split": "train"},
)
