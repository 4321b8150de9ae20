"""LiveCodeBench code generation: the ``test*.jsonl`` files of ``livecodebench/code_generation_lite``
at the pinned revision ``DEFAULT_REVISION`` (``--revision`` to move it), streamed through
``datasets``' JSON loader (the repository's loading script is not run: ``datasets`` no longer runs
scripts), or a local copy (``--from``): a ``test*.jsonl`` file or a folder holding them (a local
snapshot of the repository), a ``save_to_disk`` directory of the dataset as ``datasets`` loaded
it (its one split, or ``test``), or a parquet, arrow or JSON file. Release files apply to the
hub and to a folder of ``test*.jsonl``; a single file or saved dataset is read whole (the window
still applies).

``--release vN`` is cumulative as in LiveCodeBench: v1 = test.jsonl, v2 = + test2.jsonl, ...,
v6 = + test6.jsonl; ``latest`` = all six. ``--since/--until YYYY-MM-DD`` keep problems whose
``contest_date`` falls in the window, both ends inclusive. Release and window go in the manifest.

Tests: ``public_test_cases`` is JSON; ``private_test_cases`` is plain JSON or
base64 -> zlib -> pickle -> JSON. The pickle is read with a restricted unpickler that builds no
object other than ``str`` (no globals are ever looked up), so a hostile pickle is refused with an
``InputError`` instead of running; ``pickle.loads`` is never called.

Each task: id ``livecodebench/<question_id>``, language python, kind ``functional`` when the
problem has starter code or ``metadata.func_name`` (LeetCode), else ``stdin``; ``tests.cases``
(public first, ``public`` false for private ones), ``tests.entry_point`` = func_name (from the
metadata, else the starter code's first method); starter code in ``files["solution.py"]``.
Records without test fields (e.g. lcb_runner result files) are kept with no cases and counted
in the stats as ``without_tests``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import io
import json
import pickle
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hrmcode.data.schema import Task, TestCase, Tests
from hrmcode.data.sources._common import (
    Fetched,
    FetchRequest,
    HubDataset,
    SourceSpec,
    iter_records,
    require_path,
)
from hrmcode.datasets_io import is_saved_dataset, saved_rows, saved_splits
from hrmcode.errors import InputError, UsageError
from hrmcode.reporting import reporter

DEFAULT_DATASET = "livecodebench/code_generation_lite"
# The commit of DEFAULT_DATASET a fetch reads unless --revision says otherwise (it holds test.jsonl .. test6.jsonl).
DEFAULT_REVISION = "0fe84c3912ea0c4d4a78037083943e8f0c4dd505"
RELEASE_FILES = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")
REQUIRED = ("question_title", "question_content", "platform", "question_id", "contest_date")
METHOD = re.compile(r"^\s*def\s+(\w+)\s*\(\s*self", re.M)


def release_files(release: str) -> tuple[str, ...]:
    """The cumulative file list of ``v1``..``v6`` / ``release_vN`` / ``latest``."""
    tag = release.lower().removeprefix("release_")
    if tag == "latest":
        return RELEASE_FILES
    match = re.fullmatch(r"v([1-6])", tag)
    if not match:
        raise UsageError(f"unknown livecodebench release '{release}'", "choose v1..v6 or latest")
    return RELEASE_FILES[: int(match.group(1))]


def parse_day(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a date", "use YYYY-MM-DD") from None


class _StrOnlyUnpickler(pickle.Unpickler):
    """Refuses every global lookup, so nothing but built-in values (str, list, ...) can be built."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}")


def decode_private(text: str, where: str) -> tuple[list[dict], bool]:
    """Private test cases and whether they were encoded: plain JSON, else base64 -> zlib ->
    restricted pickle of a str -> JSON."""
    if not text:
        return [], False
    try:
        return _case_list(json.loads(text), "private_test_cases", where), False
    except json.JSONDecodeError:
        try:
            packed = zlib.decompress(base64.b64decode(text, validate=False))
        except (binascii.Error, zlib.error, ValueError) as exc:
            raise InputError(f"{where}: private_test_cases is neither JSON nor base64+zlib ({exc})", "check the record") from None
        try:
            unpickled = _StrOnlyUnpickler(io.BytesIO(packed)).load()
        except Exception as exc:  # noqa: BLE001 - any failure of untrusted data is the same refusal
            raise InputError(
                f"{where}: refused the pickled private_test_cases ({' '.join(str(exc).split())[:120]})",
                "only a pickled str is accepted",
            ) from None
        if not isinstance(unpickled, str):
            raise InputError(
                f"{where}: refused the pickled private_test_cases: it holds a {type(unpickled).__name__}, not a str",
                "only a pickled str is accepted",
            )
        try:
            value = json.loads(unpickled)
        except json.JSONDecodeError:
            raise InputError(f"{where}: the decoded private_test_cases are not JSON", "check the record") from None
    return _case_list(value, "private_test_cases", where), True


def _case_list(value: Any, field: str, where: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(c, dict) and "input" in c and "output" in c for c in value):
        raise InputError(f"{where}: {field} must be a list of {{input, output}} objects", "check the record")
    return value


def _json_field(record: dict, field: str, where: str, default: Any) -> Any:
    value = record.get(field, default)
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else default
        except json.JSONDecodeError:
            raise InputError(f"{where}: {field} is not valid JSON", "check the record") from None
    return value


def check_required(record: dict, where: str) -> None:
    missing = [key for key in REQUIRED if not isinstance(record.get(key), str)]
    if missing:
        raise InputError(f"{where}: not a LiveCodeBench problem: missing {', '.join(missing)}", "check the file")


def to_task(record: dict, where: str) -> Task:
    check_required(record, where)
    public = _case_list(_json_field(record, "public_test_cases", where, []), "public_test_cases", where)
    private, encoded = decode_private(record.get("private_test_cases") or "", where)
    lcb_meta = _json_field(record, "metadata", where, {})
    # lcb_runner result files reuse "metadata" for a list of per-generation results: not problem metadata.
    func_name = lcb_meta.get("func_name") if isinstance(lcb_meta, dict) else None
    starter = record.get("starter_code") or ""
    if not func_name and starter.strip():
        method = METHOD.search(starter)
        func_name = method.group(1) if method else None
    kind = "functional" if func_name or starter.strip() else "stdin"
    cases = [TestCase(input=str(c["input"]), output=str(c["output"]), public=True) for c in public]
    cases += [TestCase(input=str(c["input"]), output=str(c["output"]), public=False) for c in private]
    metadata = {key: value for key, value in record.items() if key != "private_test_cases"}
    metadata.update({
        "func_name": func_name,
        "starter_code": starter,
        "has_tests": bool(cases),
        "private_tests_encoded": encoded,
    })
    return Task(
        id=f"livecodebench/{record['question_id']}",
        source="livecodebench",
        language="python",
        kind=kind,
        title=record["question_title"],
        prompt=record["question_content"],
        files={"solution.py": starter} if starter.strip() else {},
        editable=["solution.py"] if starter.strip() else [],
        tests=Tests(cases=cases, entry_point=func_name),
        metadata=metadata,
    )


def _contest_day(record: dict, where: str) -> dt.date:
    try:
        return dt.datetime.fromisoformat(record["contest_date"]).date()
    except (ValueError, TypeError):
        raise InputError(f"{where}: contest_date {record.get('contest_date')!r} is not an ISO date", "check the record") from None


def _local_files(from_path: str, names: tuple[str, ...]) -> list[Path]:
    path = require_path(from_path)
    if path.is_file():
        return [path]
    present = [path / name for name in names if (path / name).is_file()]
    if not present:
        raise InputError(f"--from {path}: none of {', '.join(names)} is there", "point --from at a test*.jsonl file or its folder")
    absent = [name for name in names if not (path / name).is_file()]
    if absent:
        reporter().warn(f"{path}: {', '.join(absent)} not found; reading {len(present)} of {len(names)} release files")
    return present


@contextlib.contextmanager
def _open(request: FetchRequest) -> Iterator[Fetched]:
    release = request.options["release"]
    names = release_files(release)
    since = parse_day(request.options["since"], "--since")
    until = parse_day(request.options["until"], "--until")
    if since and until and since > until:
        raise UsageError(f"--since {since} is after --until {until}", "swap them")
    stats: dict[str, Any] = {
        "release": release, "since": str(since) if since else None, "until": str(until) if until else None,
        "outside_window": 0, "without_tests": 0,
    }
    revision = None
    rows: Iterator[tuple[str, dict]]
    if request.from_paths:
        origin = request.from_paths[0]
        path = require_path(origin)
        if is_saved_dataset(path):
            splits = saved_splits(path)
            if len(splits) > 1 and "test" not in splits:
                raise UsageError(f"{origin} holds the splits {', '.join(splits)} and no 'test' split to read",
                                 "save the problems as one Dataset, or as the 'test' split of a DatasetDict")
            split = "test" if len(splits) > 1 else None
            rows, stats["release"], stats["files"] = saved_rows(path, split), "saved dataset", [origin]
        else:
            files = _local_files(origin, names)
            rows = (row for file in files for row in iter_records(file))
            stats["files"] = [str(p) for p in files]
            if path.is_file():
                stats["release"] = "file"
    else:
        dataset = request.options["dataset"] or DEFAULT_DATASET
        wanted = request.options.get("revision") or (DEFAULT_REVISION if dataset == DEFAULT_DATASET else None)
        hub = HubDataset(dataset, wanted)
        missing = [n for n in names if n not in hub.files]
        if missing:
            raise UsageError(f"dataset {dataset} has no {', '.join(missing)}", "check --release and --dataset")
        rows = hub.rows(files=names)
        origin, revision = f"hf:{dataset}", hub.revision
        stats["dataset"] = dataset
        stats["files"] = [f"{dataset}/{n}" for n in names]

    def records() -> Iterator[Task]:
        for where, record in rows:
            if isinstance(record.get("contest_date"), dt.date):  # Arrow parsed the ISO string as a timestamp
                record = {**record, "contest_date": record["contest_date"].isoformat()}
            check_required(record, where)
            day = _contest_day(record, where)
            if (since and day < since) or (until and day > until):
                stats["outside_window"] += 1
                continue
            task = to_task(record, where)
            stats["without_tests"] += not task.tests.cases
            yield task

    yield Fetched(records=records(), origin=origin, revision=revision, stats=stats)


SPEC = SourceSpec(
    name="livecodebench",
    summary="LiveCodeBench code generation problems (HF livecodebench/code_generation_lite or --from)",
    remote=f"hf:{DEFAULT_DATASET}@{DEFAULT_REVISION}",
    open=_open,
    options={"dataset": None, "revision": None, "release": "latest", "since": None, "until": None},
)
