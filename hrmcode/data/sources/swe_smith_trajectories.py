"""SWE-smith agent trajectories: a Hugging Face dataset (default ``SWE-bench/SWE-smith-trajectories``,
``--split xml|tool|ticks``; the splits are the same runs in three action formats; streamed through
``datasets.load_dataset`` at ``--revision``, default the newest commit, which the manifest records)
or local files (``--from``): what ``datasets`` leaves on disk (a ``save_to_disk`` directory, an arrow
file, a local snapshot of the hub repository), JSONL, parquet, JSON, or SWE-agent's own ``.traj``
files (another directory is searched for ``*.jsonl``, ``*.jsonl.gz``, ``*.parquet``, ``*.arrow`` and
``*.traj``, so a SWE-agent run directory can be named).

A ``.traj`` (``{trajectory, history, info, replay_config, environment}``) is turned into a row the
way SWE-smith's ``train/traj_mgr/collect_trajs.py`` does (its ``xml`` style): the messages are the
last step's ``query`` (or its ``messages`` before SWE-agent 1.1; the step before when the last
one is an exit on cost or context window), else the ``history``; ``tool`` messages become
``user`` ones, an assistant message with tool calls is its thought plus the calls written as
``<function=NAME><parameter=K>V</parameter></function>`` (one without, from a thought-action agent,
keeps its whole reply, where the action already is), list contents are joined to text. The
system message is kept as recorded (SWE-smith swaps in its inference prompt). ``instance_id``
is the record's, else ``replay_config``'s ``problem_statement.id``, else the file's stem (SWE-smith
names a ``.traj`` after its instance); ``patch`` is ``info.submission``; ``model`` comes from
``replay_config``. ``resolved`` is unknown (SWE-smith takes it from a separate evaluation report).

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
from pathlib import Path
from typing import Any

from hrmcode.data.schema import Solution, Task, Tests
from hrmcode.data.sources._common import RECORD_FILE_PATTERNS, Fetched, FetchRequest, SourceSpec, language_of
from hrmcode.data.sources.swe_smith import open_rows
from hrmcode.diffs import PatchError, changed_files
from hrmcode.errors import InputError, UsageError

DEFAULT_DATASET = "SWE-bench/SWE-smith-trajectories"
# No commit of it is pinned here (none was known when this was written): a fetch reads the newest
# commit, resolved once so every row comes from it, and records it; --revision pins one.
DEFAULT_REVISION = None
SPLITS = ("xml", "tool", "ticks")
PR_DESCRIPTION = re.compile(r"<pr_description>\s*(.*?)\s*</pr_description>", re.S)
TESTBED_PATH = re.compile(r"/testbed/([\w./-]+\.\w+)")
FILE_PATTERNS = (*RECORD_FILE_PATTERNS, "*.traj")  # not *.json: a SWE-agent run directory has preds.json
# SWE-smith's get_messages: a last step that only records the exit carries no query of its own
EXIT_RESPONSES = ("Exit due to cost limit", "Exit due to context window")
XML_MULTILINE_PARAMETERS = ("old_str", "new_str", "file_text")  # SWE-smith's XML_STR_REPLACES


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


def is_swe_agent_traj(record: dict) -> bool:
    return ("messages" not in record and isinstance(record.get("trajectory"), list)
            and isinstance(record.get("info"), dict))


def _tool_call_text(call: Any, where: str) -> str:
    """One tool call as SWE-smith's ``tool_call_to_action`` writes it."""
    try:
        function = call["function"]
        arguments = function["arguments"]
        arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        lines = [f"<function={function['name']}>"]
        for key, value in arguments.items():
            lines.append(f"<parameter={key}>\n{value}\n</parameter>" if key in XML_MULTILINE_PARAMETERS
                         else f"<parameter={key}>{value}</parameter>")
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError):
        raise InputError(f"{where}: a tool call is not {{function: {{name, arguments}}}}",
                         "check the .traj file") from None
    return "\n".join([*lines, "</function>"])


def _traj_messages(traj: dict, where: str) -> list[dict]:
    steps = [step for step in traj["trajectory"] if isinstance(step, dict)]
    raw: Any = None
    if steps:
        last = steps[-1]
        if isinstance(last.get("messages"), list):
            raw = last["messages"][:-1]  # before SWE-agent 1.1: the last message is the submission
        elif last.get("response") in EXIT_RESPONSES and len(steps) > 1:
            raw = steps[-2].get("query")
        else:
            raw = last.get("query")
    if not raw:
        raw = traj.get("history")
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{where}: the .traj has no messages (no step query, no history)", "check the .traj file")
    messages = []
    for message in raw:
        if not isinstance(message, dict) or "role" not in message:
            raise InputError(f"{where}: a .traj message is not a {{role, content}} object", "check the .traj file")
        role = "user" if message["role"] == "tool" else message["role"]
        calls = (message.get("tool_calls") or []) if message["role"] == "assistant" else []
        if calls:  # SWE-smith's transform_traj_xml, exactly
            thought = message["thought"] if isinstance(message.get("thought"), str) else _text(message.get("content"))
            content = (thought + "\n\n" + "\n".join(_tool_call_text(call, where) for call in calls)).strip()
        elif message["role"] == "assistant":  # a thought-action agent: its reply holds the action already
            content = (_text(message.get("content")) or message.get("thought") or "").strip()
        else:
            content = _text(message.get("content"))
        messages.append({"role": role, "content": content})
    return messages


def traj_record(traj: dict, where: str) -> dict:
    """A SWE-agent ``.traj`` as a trajectories row (see the module docstring)."""
    replay: Any = traj.get("replay_config")
    if isinstance(replay, str):
        with contextlib.suppress(json.JSONDecodeError):
            replay = json.loads(replay)
    replay = replay if isinstance(replay, dict) else {}
    statement = replay.get("problem_statement") if isinstance(replay.get("problem_statement"), dict) else {}
    instance_id = traj.get("instance_id") or statement.get("id") or Path(where.rsplit(":", 1)[0]).stem
    info = traj["info"]
    record: dict[str, Any] = {"instance_id": instance_id, "messages": _traj_messages(traj, where),
                              "patch": info.get("submission") or "", "exit_status": info.get("exit_status"),
                              "traj_format": "swe-agent"}
    agent = replay.get("agent") if isinstance(replay.get("agent"), dict) else {}
    model = agent.get("model") if isinstance(agent.get("model"), dict) else {}
    if isinstance(model.get("name"), str):
        record["model"] = model["name"]
    return record


def to_task(record: dict, where: str, seen: set[str]) -> Task:
    if is_swe_agent_traj(record):
        record = traj_record(record, where)
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
    yield from open_rows(request, DEFAULT_DATASET, DEFAULT_REVISION, split, _convert, FILE_PATTERNS)


SPEC = SourceSpec(
    name="swe-smith-trajectories",
    summary="SWE-agent trajectories on SWE-smith tasks (HF SWE-bench/SWE-smith-trajectories or --from)",
    remote=f"hf:{DEFAULT_DATASET}",
    open=_open,
    options={"dataset": None, "revision": None, "split": "xml"},
)
