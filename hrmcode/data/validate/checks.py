"""``validate``'s per-example checks: the schema and the level-specific completeness checks.

``checked_example`` returns a record as a validated ``Example`` dict or raises ``InputError``;
records in the canonical form ``synthesize`` writes are accepted without pydantic (the same
verdicts, see ``_is_canonical``). ``completeness`` returns each check's verdict by name (plan:
only FILE/TOUCH/TEST/RUN lines, at least one FILE, FILE lines equal to the context's files;
edit: the target parses as SEARCH/REPLACE blocks and applies to the files in
``input.context``; tool: at least one complete ``<function=...>`` call, or for a multi-turn
example (an agent trajectory) a reply holding a fenced bash block or SEARCH/REPLACE edits; coord: AGENT and S
lines, every AFTER names an earlier S; solve: the target parses as whole files). Nothing here
runs code: execution checks are ``execution.py``'s.
"""

from __future__ import annotations

from hrmcode.data.examples import LEVELS, parse_example
from hrmcode.edits import MalformedEdit, apply_edits, parse_edits


def _plan_checks(example: dict) -> dict[str, bool]:
    lines = example["target"].splitlines()
    files = [line[5:] for line in lines if line.startswith("FILE ")]
    expected = example["input"]["context"].get("files")
    checks = {
        "plan_lines_known": all(line.split(" ", 1)[0] in ("FILE", "TOUCH", "TEST", "RUN") for line in lines if line),
        "plan_has_file": bool(files),
    }
    if isinstance(expected, list):
        checks["plan_files_match"] = files == expected
    return checks


def _edit_checks(example: dict) -> dict[str, bool]:
    context = example["input"]["context"]
    files = context.get("files") or {}
    paths = context.get("paths") or sorted(files)
    try:
        edits = parse_edits(example["target"], "diff", paths)
    except (MalformedEdit, ValueError):
        return {"edit_parses": False, "edit_applies": False}
    try:
        apply_edits(files, edits)
        applies = bool(edits)
    except MalformedEdit:
        applies = False
    return {"edit_parses": bool(edits), "edit_applies": applies}


def _tool_checks(example: dict) -> dict[str, bool]:
    if example.get("messages") is not None:  # mini-swe-agent's protocol: a bash block or SEARCH/REPLACE edits
        return {"tool_reply_has_action": any(m["role"] == "assistant" and ("```bash" in m["content"] or
                                             "<<<<<<< SEARCH" in m["content"]) for m in example["messages"])}
    target = example["target"]
    return {"tool_has_call": "<function=" in target and "</function>" in target,
            "tool_calls_closed": target.count("<function=") == target.count("</function>")}


def _coord_checks(example: dict) -> dict[str, bool]:
    lines = example["target"].splitlines()
    ids: set[str] = set()
    ordered = True
    for line in lines:
        if line.startswith("S") and " " in line:
            sid = line.split(" ", 1)[0]
            if " AFTER " in line:
                ordered &= all(dep in ids for dep in line.rsplit(" AFTER ", 1)[1].split(","))
            ids.add(sid)
    return {"coord_has_agents": any(line.startswith("AGENT ") for line in lines), "coord_has_subtasks": bool(ids),
            "coord_dependencies_known": ordered}


def _solve_checks(example: dict) -> dict[str, bool]:
    paths = example["input"]["context"].get("paths") or []
    try:
        edits = parse_edits(example["target"], "whole", paths)
    except (MalformedEdit, ValueError):
        return {"solve_parses": False}
    return {"solve_parses": bool(edits)}


LEVEL_CHECKS = {"plan": _plan_checks, "edit": _edit_checks, "tool": _tool_checks, "coord": _coord_checks,
                "solve": _solve_checks}


def completeness(example: dict) -> dict[str, bool]:
    """Each check's verdict by name: the level's checks plus two every example must pass."""
    checks = {"input_text": bool(example["input"]["text"].strip()),
              "id_names_task": example["id"].startswith(example["task_id"])}
    checks.update(LEVEL_CHECKS[example["level"]](example))
    return checks


# The schema in the form ``synthesize`` writes it: a record of exactly these keys and types
# parses as an ``Example`` unchanged, so pydantic is only consulted for the others (which it
# then accepts, coerces or rejects with its message).
_EXAMPLE_KEYS = frozenset(("id", "task_id", "source", "level", "input", "target", "language", "stage", "split",
                           "provenance"))
_INPUT_KEYS = frozenset(("text", "context"))
_PROVENANCE_KEYS = frozenset(("inputs", "rule", "model_written"))
_SPLITS = ("train", "heldout")


def _is_canonical(record) -> bool:
    """True when ``record`` certainly validates as an ``Example`` and dumps back to itself."""
    if type(record) is not dict or record.keys() != _EXAMPLE_KEYS:
        return False
    given, provenance = record["input"], record["provenance"]
    stage = record["stage"]
    return (type(record["id"]) is str and type(record["task_id"]) is str and type(record["source"]) is str
            and type(record["language"]) is str and type(record["target"]) is str and bool(record["target"].strip())
            and record["level"] in LEVELS and record["split"] in _SPLITS and type(stage) is int and 1 <= stage <= 4
            and type(given) is dict and given.keys() == _INPUT_KEYS and type(given["text"]) is str
            and type(given["context"]) is dict
            and type(provenance) is dict and provenance.keys() == _PROVENANCE_KEYS
            and type(provenance["rule"]) is str and type(provenance["model_written"]) is bool
            and type(provenance["inputs"]) is list and all(type(i) is str for i in provenance["inputs"]))


def checked_example(record, where: str) -> dict:
    """The record as a validated ``Example`` dict (JSON mode); ``InputError`` when it is not one.
    Records already in canonical form skip pydantic (the same result, see ``_is_canonical``)."""
    if _is_canonical(record):
        return record
    return parse_example(record, where=where).model_dump(mode="json")
