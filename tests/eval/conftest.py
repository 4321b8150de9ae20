"""Fixtures for the eval tests: the sandbox (bubblewrap here; the explicit unsafe fallback where
bwrap is missing, since these tests run only the project's own benign programs) and task files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrmcode.artifacts import ArtifactWriter
from hrmcode.data.schema import Task, parse_task

FIXTURES = Path(__file__).parent / "fixtures"
# hostile/ holds attack programs the tests run in the sandbox, never tests (lcb_forge_next_test.py
# matches pytest's *_test.py pattern and would be imported, reading stdin, at collection).
collect_ignore = ["hostile"]


@pytest.fixture(scope="session")
def sandbox():
    from hrmcode.sandbox import get_sandbox

    return get_sandbox("local", unsafe_no_sandbox=True)


def load_fixture_tasks(name: str) -> list[Task]:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return [parse_task(json.loads(line)) for line in lines if line.strip()]


def write_tasks_artifact(path: Path, tasks: list[Task], params: dict | None = None) -> Path:
    with ArtifactWriter(path, "tasks", name=path.name, params=params or {}, update_latest=False) as writer:
        writer.write_jsonl("tasks.jsonl", tasks)
        writer.finish({"records": len(tasks)})
    return path
