"""The polyglot hostile corpus: replies that try to forge a polyglot verdict, through the real
``Polyglot`` evaluator and sandbox, on real exercises from ../shared/polyglot-benchmark.

Each ``tests/eval/hostile/pg_*.reply`` is one attack: a header of ``# key: value`` lines
(``attack``: what it tries; ``exercise``: ``lang/slug``; optional ``aider-compat``: the verdict the
exit-status rule of Aider's harness gives, ``passed`` where the attack forges a pass there), then
the files of the reply, each after a ``=== path`` line. Every attack must score a failure in strict
mode, in the local sandbox and in docker where a Docker engine is up; the reference solutions of
the same exercises pass in the same setting (so a failure means the defence held), and attacks
marked ``aider-compat: passed`` do pass under Aider's rule (so each is a real forgery, not a typo).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from hrmcode.data.sources.polyglot import to_task
from hrmcode.eval.backends import Reply, Request
from hrmcode.eval.polyglot import Polyglot, writable_path
from tests._sandboxes import BACKENDS, read_attack, real_sandbox

CORPUS = Path(__file__).parent / "hostile"
ATTACKS = sorted(CORPUS.glob("pg_*.reply"))
LANGUAGES = {"python", "go", "rust", "java", "javascript", "cpp"}


def parse_attack(path: Path) -> dict:
    header, lines = read_attack(path)
    files: dict[str, str] = {}
    current = None
    for line in lines:
        match = re.fullmatch(r"=== (\S+)\n?", line)
        if match:
            current = match.group(1)
            files[current] = ""
        elif current is not None:
            files[current] += line
    return {**header, "files": files, "name": path.stem}


class ReplyBackend:
    """A model that sends one fixed reply (the attack's files) every turn."""

    name = "hostile"

    def __init__(self, files: dict[str, str] | None = None, reference: bool = False):
        self.files = files
        self.reference = reference

    def describe(self) -> dict:
        return {"name": self.name}

    def complete(self, request: Request) -> list[Reply]:
        if self.reference:
            return [request.answer_key.reference_answer(request)]
        return [Reply(text="", raw=True, files=dict(self.files))]


@pytest.fixture(scope="module", params=BACKENDS)
def polyglot_sandbox(request):
    return real_sandbox(request.param)


def _task(shared_dir: Path, exercise: str):
    language, slug = exercise.split("/")
    return to_task(language, slug, shared_dir / "polyglot-benchmark" / language / "exercises" / "practice" / slug)


def _grade(task, sandbox, mode: str, backend) -> dict:
    return Polyglot(backend, sandbox, tries=1, mode=mode).evaluate_one(task, worker=0)


def test_the_corpus_covers_every_language():
    attacks = [parse_attack(p) for p in ATTACKS]
    assert len(attacks) >= 20
    assert {a["exercise"].split("/")[0] for a in attacks} == LANGUAGES
    assert all(a.get("attack") and a["files"] for a in attacks)


def test_a_reply_writes_only_solution_files_and_new_java_classes():
    from hrmcode.data.schema import Solution, Task, Tests

    def task(language: str, files: dict, editable: Sequence[str], tests: dict) -> Task:
        return Task(id=f"polyglot/{language}/x", source="polyglot", kind="exercise", language=language, prompt="p",
                    files=files, editable=list(editable), tests=Tests(files=tests), solution=Solution(files={}))

    py = task("python", {"x.py": ""}, ["x.py"], {"x_test.py": ""})
    assert writable_path(py, "x.py") == "x.py"
    assert [writable_path(py, p) for p in ("conftest.py", "pytest.ini", "x_test.py", "y.py")] == [None] * 4
    java = task("java", {"src/main/java/X.java": "", "build.gradle": ""}, ["src/main/java/X.java"],
                {"src/test/java/XTest.java": ""})
    assert writable_path(java, "src/main/java/Frame.java") == "src/main/java/Frame.java"
    assert writable_path(java, "Frame.java") == "src/main/java/Frame.java"
    assert [writable_path(java, p) for p in ("build.gradle", "src/main/java/XTest.java", "src/test/java/Y.java",
                                             "src/main/java/a/B.java", "src/main/resources/junit-platform.properties")] == [None] * 5


@pytest.mark.shared
@pytest.mark.integration
@pytest.mark.parametrize("exercise", sorted({parse_attack(p)["exercise"] for p in ATTACKS}))
def test_the_references_of_the_attacked_exercises_pass(shared_dir, polyglot_sandbox, exercise):
    record = _grade(_task(shared_dir, exercise), polyglot_sandbox, "strict", ReplyBackend(reference=True))
    assert record["passed"], record["verdicts"]


@pytest.mark.shared
@pytest.mark.integration
@pytest.mark.parametrize("path", ATTACKS, ids=[p.stem for p in ATTACKS])
def test_every_attack_fails_in_strict_mode(shared_dir, polyglot_sandbox, path):
    attack = parse_attack(path)
    task = _task(shared_dir, attack["exercise"])
    record = _grade(task, polyglot_sandbox, "strict", ReplyBackend(attack["files"]))
    assert record["mode"] == "strict"
    assert not record["passed"], f"{attack['name']} forged a pass: {attack['attack']}"
    assert record["verdicts"] and record["verdicts"][0]["reason"], "a failure carries its reason"
    dropped = sorted(p for p in attack["files"] if writable_path(task, p) is None)
    assert record["ignored_edits"] == dropped  # what the reply may not write is listed, not taken


@pytest.mark.shared
@pytest.mark.integration
@pytest.mark.parametrize("path", [p for p in ATTACKS if parse_attack(p).get("aider-compat") == "passed"],
                         ids=lambda p: p.stem)
def test_the_forgeries_pass_under_aiders_exit_status_rule(shared_dir, path):
    attack = parse_attack(path)
    record = _grade(_task(shared_dir, attack["exercise"]), real_sandbox("local"), "aider-compat", ReplyBackend(attack["files"]))
    assert record["passed"], f"{attack['name']} is not a forgery under aider-compat: {record['last_test_output'][-500:]}"
