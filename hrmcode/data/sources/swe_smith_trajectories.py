"""SWE-smith agent trajectories: a Hugging Face dataset (default ``SWE-bench/SWE-smith-trajectories``,
``--split xml|tool|ticks``; the splits are the same runs in three action formats) or a local
JSONL/parquet (``--from``).

Rows carry ``messages`` (a list of ``{role, content}``, or that list as a JSON string) and
``instance_id``; dataset rows also ``resolved``, ``model``, ``traj_id`` and ``patch`` (the agent's
submission). The fine-tuning copies in SWE-smith's own test fixtures have only ``messages`` and
``instance_id``; both shapes are read and whatever is present is kept unchanged in ``metadata``.

Each task: id ``swe-smith-trajectories/<traj_id or instance_id>`` (when two rows share an
instance id and have no ``traj_id``, the later gets ``.<8 hex of its messages>``), kind
``repo-patch``, ``prompt`` = the ``<pr_description>`` of the first user message (else that whole
message), ``solution.patch`` = the agent's patch only when ``resolved`` is true; language from the
patch's files, else from the ``/testbed/...`` paths the messages mention.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from hrmcode.data.schema import Solution, Task, Tests
from hrmcode.data.sources._common import Fetched, FetchRequest, SourceSpec, language_of
from hrmcode.data.sources.swe_smith import open_rows
from hrmcode.diffs import PatchError, changed_files
from hrmcode.errors import InputError, UsageError

DEFAULT_DATASET = "SWE-bench/SWE-smith-trajectories"
SPLITS = ("xml", "tool", "ticks")
PR_DESCRIPTION = re.compile(r"<pr_description>\s*(.*?)\s*</pr_description>", re.S)
TESTBED_PATH = re.compile(r"/testbed/([\w./-]+\.\w+)")


def parse_messages(value: Any, where: str) -> list[dict]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(f"{where}: messages is a string but not JSON", "check the record") from None
    if not isinstance(value, list) or not value or not all(isinstance(m, dict) and "role" in m for m in value):
        raise InputError(f"{where}: messages must be a non-empty list of {{role, content}} objects", "check the record")
    return value


def _text(content: Any) -> str:
    """Message content as text (a string, or a list of ``{type: text, text}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _language(patch: str | None, messages: list[dict]) -> tuple[str, list[str]]:
    paths: list[str] = []
    if patch:
        with contextlib.suppress(PatchError):
            paths = changed_files(patch)
    counts = Counter(lang for lang in map(language_of, paths) if lang)
    if not counts:
        mentioned = (m for msg in messages for m in TESTBED_PATH.findall(_text(msg.get("content"))))
        counts = Counter(lang for lang in map(language_of, mentioned) if lang)
    if not counts:
        return "unknown", ["unknown"]
    return counts.most_common(1)[0][0], sorted(counts)


def to_task(record: dict, where: str, seen: set[str]) -> Task:
    if not isinstance(record.get("instance_id"), str) or "messages" not in record:
        raise InputError(f"{where}: not a SWE-smith trajectory: needs instance_id and messages", "check the file")
    messages = parse_messages(record["messages"], where)
    instance_id = record["instance_id"]
    ident = record.get("traj_id") or instance_id
    if ident in seen and not record.get("traj_id"):
        ident = f"{ident}.{hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:8]}"
    first_user = next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
    match = PR_DESCRIPTION.search(first_user)
    prompt = match.group(1) if match else first_user
    if not prompt.strip():
        raise InputError(f"{where}: the trajectory has no user message to take the task from", "check the record")
    patch = record.get("patch") if isinstance(record.get("patch"), str) else None
    language, languages = _language(patch, messages)
    metadata = {key: value for key, value in record.items() if key != "messages"}
    metadata.update({"messages": messages, "n_messages": len(messages)})
    return Task(
        id=f"swe-smith-trajectories/{ident}",
        source="swe-smith-trajectories",
        language=language,
        languages=languages,
        kind="repo-patch",
        title=instance_id,
        prompt=prompt,
        solution=Solution(patch=patch if record.get("resolved") is True and patch else None),
        tests=Tests(),
        metadata=metadata,
    )


def _convert(rows: Iterator[tuple[str, dict]], stats: dict) -> Iterator[Task]:
    seen: set[str] = set()
    for where, record in rows:
        task = to_task(record, where, seen)
        seen.add(task.id.split("/", 1)[1])
        resolved = task.metadata.get("resolved")
        key = "resolved" if resolved is True else "unresolved" if resolved is False else "resolved_unknown"
        stats[key] = stats.get(key, 0) + 1
        yield task


@contextlib.contextmanager
def _open(request: FetchRequest) -> Iterator[Fetched]:
    split = request.options["split"]
    if split not in SPLITS:
        raise UsageError(f"unknown trajectories split '{split}'", f"choose from {', '.join(SPLITS)}")
    yield from open_rows(request, DEFAULT_DATASET, split, _convert)


SPEC = SourceSpec(
    name="swe-smith-trajectories",
    summary="SWE-agent trajectories on SWE-smith tasks (HF SWE-bench/SWE-smith-trajectories or --from)",
    remote=f"hf:{DEFAULT_DATASET}",
    open=_open,
    options={"dataset": None, "split": "xml"},
)
