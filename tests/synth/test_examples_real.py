"""Examples built from real content: coord targets read from each task, tool examples that are what a
sandbox session printed (and only for fixes that pass the strict verdict), edit inputs that are a
bounded window of the file whose target still applies to the whole file."""

from __future__ import annotations

import json

import pytest

from hrmcode.agent.protocol import parse_action, system_prompt, task_prompt
from hrmcode.data.bugs import bug_patch, repo_tasks
from hrmcode.data.sources import fetch
from hrmcode.data.sources.swe_smith import to_task
from hrmcode.data.synthesize import synthesize
from hrmcode.data.synthesize.context import build_context
from hrmcode.data.synthesize.coord import coord_examples, runner_of
from hrmcode.data.synthesize.edit import WINDOW_CHARS, edit_examples
from hrmcode.data.synthesize.tool import RUN_OBSERVATION_CHARS, execute_reference, normalise, tool_examples
from hrmcode.data.turns import observation_text
from hrmcode.edits import apply_edits, parse_edits
from hrmcode.jsonl import read_jsonl
from hrmcode.sandbox.base import Limits

from tests._sandboxes import real_sandbox
from tests.synth.conftest import MINIPKG, TEXTSTATS, minipkg_source, swe_instance, write_jsonl

COMMAND = "python3 -m pytest -q tests -rA"
PROFILE = {"domain": "general", "tools": ["git", "docker", "python", "pytest"], "stage": 4}


def _minipkg_files() -> dict[str, str]:
    return {p.relative_to(MINIPKG).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(MINIPKG.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def repo_task(old: str, new: str, fixed: str | None = None, name: str = "t") -> dict:
    """A repository task on minipkg whose bug replaces ``old`` by ``new``; its "fix" turns the bugged
    file into ``fixed`` (default: the clean file)."""
    clean = minipkg_source()
    bugged = clean.replace(old, new)
    fixed = clean if fixed is None else fixed
    return {"id": f"swe-smith/local__minipkg.0123abcd.{name}", "source": "swe-smith", "language": "python",
            "kind": "repo-patch", "title": "minipkg", "prompt": "clamp gives wrong answers.",
            "files": {TEXTSTATS: bugged}, "editable": [TEXTSTATS],
            "solution": {"files": {}, "patch": bug_patch(TEXTSTATS, bugged, fixed)},
            "tests": {"command": COMMAND, "fail_to_pass": ["tests/test_textstats.py::test_clamp_low"],
                      "pass_to_pass": ["tests/test_textstats.py::test_mean"]},
            "metadata": {"instance_id": f"local__minipkg.0123abcd.{name}", "repo": "local__minipkg.0123abcd"}}


# -- coord -------------------------------------------------------------------------------------
def test_coord_targets_follow_the_task_and_never_invent_docker():
    first = build_context(repo_task("    if value < low:", "    if value >= low:"), PROFILE)
    second = build_context(repo_task("    total = 0\n", "    total = 1\n", name="m"), PROFILE)
    targets = [coord_examples(c)[0].target for c in (first, second)]
    assert targets[0] != targets[1]
    assert "S1 TOUCH minipkg/textstats.py::clamp" in targets[0].splitlines()
    assert "S1 TOUCH minipkg/textstats.py::mean" in targets[1].splitlines()
    assert "S2 EXPECT tests/test_textstats.py::test_clamp_low" in targets[0].splitlines()
    assert "S2 RUN python3 -m pytest -q tests -rA BY tool:pytest PRIORITY 2 AFTER S1" in targets[0].splitlines()
    assert all("docker" not in t and "AGENT env:" not in t for t in targets)  # analyze said docker; the task has none
    with_env = repo_task("    if value < low:", "    if value >= low:", name="e")
    with_env["metadata"]["environment"] = {"id": "0f1e2d3c", "kind": "python", "requirements": ["numpy==2.1.0"]}
    assert "AGENT env:python:0f1e2d3c" in coord_examples(build_context(with_env, PROFILE))[0].target.splitlines()
    with_env["metadata"]["environment"] = {"id": "0f1e2d3c", "kind": "python", "requirements": []}
    with_env["metadata"]["image_name"] = "swebench/swesmith.x86_64.local__minipkg.0123abcd"
    assert "AGENT env:" not in coord_examples(build_context(with_env, PROFILE))[0].target  # the plain sandbox
    del with_env["metadata"]["environment"]  # a repo:PATH task: SWE-smith's name for an image never built
    assert "AGENT env:" not in coord_examples(build_context(with_env, PROFILE, from_repository=True))[0].target
    hub = build_context(to_task(swe_instance("    if value < low:", "    if value >= low:") |
                                {"image_name": "swebench/swesmith.x86_64.acme__calc.1a2b3c4d"}, "x")
                        .model_dump(mode="json"), PROFILE)
    assert "AGENT env:swebench/swesmith.x86_64.acme__calc.1a2b3c4d" in coord_examples(hub)[0].target.splitlines()


@pytest.mark.parametrize("command, runner", [
    ("python3 -m pytest -q tests", "pytest"), ("pytest -rA", "pytest"), ("go test ./...", "go"),
    ("cd crate && cargo test --offline", "cargo"), ("CI=1 npx jest", "jest"), ("npm test", "npm"),
    ("uv run pytest", "pytest"), ("python -m unittest discover", "unittest"),
])
def test_the_runner_is_read_from_the_command(command, runner):
    assert runner_of(command) == runner


def test_tasks_nothing_distinguishes_keep_one_coord_example(tmp_path, workspace):
    # two bugs in clamp caught by the same tests: the same coord target; a bug in mean differs
    tasks = [to_task(swe_instance("    if value < low:", "    if value >= low:", "op_flip"), "x"),
             to_task(swe_instance("    if value < low:", "    if value <= low:", "op_change"), "x"),
             to_task(swe_instance("    total = 0\n", "    total = 1\n", "op_change_const"), "x")]
    path = write_jsonl(tmp_path / "t.jsonl", [t.model_dump(mode="json") for t in tasks])
    fetch("tasks", from_path=path, name="same")
    result = synthesize("same", levels=("plan", "coord"), out=tmp_path / "a")
    examples = list(read_jsonl(result.artifact.file("examples.jsonl")))
    coords = [e for e in examples if e["level"] == "coord"]
    assert len(coords) == 2 and len({e["target"] for e in coords}) == 2
    assert result.stats["coord_same_target"] == 1 and result.stats["by_level"] == {"coord": 2, "plan": 3}
    assert result.stats["examples"] == len(examples) == 5
    again = synthesize("same", levels=("plan", "coord"), out=tmp_path / "b", jobs=2)
    assert again.artifact.file("examples.jsonl").read_bytes() == result.artifact.file("examples.jsonl").read_bytes()
    alone = synthesize("same", levels=("coord",), out=tmp_path / "c")
    assert alone.stats["tasks_with_examples"] == 2 and alone.stats["tasks_without_examples"] == 1


# -- edit --------------------------------------------------------------------------------------
def _big_file(count: int = 1500) -> tuple[str, str]:
    functions = [f"def f{i}(x):  # helper {i} of a generated module\n    y = x * {i}\n    return y + {i}\n"
                 for i in range(count)]
    clean = "".join(functions)
    bugged = clean.replace("    return y + 750\n", "    return y - 750\n")
    return clean, bugged


def test_edit_input_is_a_bounded_window_whose_target_applies_to_the_whole_file():
    clean, bugged = _big_file()
    assert len(bugged) > 100_000
    task = repo_task("", "", name="big")
    task["files"] = {"big.py": bugged}
    task["solution"]["patch"] = bug_patch("big.py", bugged, clean)
    [draft] = edit_examples(build_context(task, {}))
    assert len(draft.text) < WINDOW_CHARS + 500 and "excerpt of big.py, lines " in draft.text
    head = next(line for line in draft.text.splitlines() if line.startswith("excerpt of big.py"))
    lo, hi = (int(n) for n in head.split("lines ")[1].split(" of ")[0].split("-"))
    assert head.endswith(f" of {bugged.count(chr(10))}:")
    window = "".join(bugged.splitlines(keepends=True)[lo - 1:hi])
    assert window in draft.text and "    return y - 750\n" in window
    assert draft.context["window"] == [[lo, hi]]
    edits = parse_edits(draft.target, "diff", ["big.py"])
    assert all(edit.before in window for edit in edits)  # every SEARCH text is in what the model was shown
    assert apply_edits({"big.py": bugged}, edits) == {"big.py": clean}  # and the blocks fix the whole file
    assert draft.context["files"] == {"big.py": bugged}


def test_a_change_no_bounded_window_holds_gives_no_edit_example():
    clean, _ = _big_file(300)
    rewritten = clean.replace("    y = x *", "    y = x **")  # every function changes
    task = repo_task("", "", name="all")
    task["files"] = {"big.py": clean}
    task["solution"]["patch"] = bug_patch("big.py", clean, rewritten)
    assert edit_examples(build_context(task, {})) == []


# -- tool --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox():
    return real_sandbox("local")


def test_reference_run_records_what_the_sandbox_printed(sandbox):
    task = repo_task("    if value < low:", "    if value >= low:")
    repository = _minipkg_files()
    record = execute_reference(task, repository, sandbox)
    assert record["kept"], record["reason"]
    messages = record["messages"]
    assert messages[0]["content"] == system_prompt() and messages[1]["content"] == task_prompt(task["prompt"])
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    kinds = [parse_action(r).kind for r in replies]  # the agent's own parser reads every reply
    assert kinds == ["bash", "bash", "bash", "edit", "bash", "submit"]
    assert parse_action(replies[0]).command == COMMAND and parse_action(replies[2]).command.startswith("nl -ba ")
    assert [s["exit_code"] for s in record["steps"]][0] != 0 and record["steps"][-1]["exit_code"] == 0
    # run the same commands once more in a fresh session: the recorded observations are what they print
    tree = {**repository, **task["files"]}
    with sandbox.session(tree, Limits(timeout_s=120), env={"PYTHONHASHSEED": "0"}) as session:
        for index in (0, 1, 2):
            result = session.exec(parse_action(replies[index]).command)
            shown = normalise(observation_text(result, RUN_OBSERVATION_CHARS), session.workdir)
            assert shown == messages[3 + 2 * index]["content"]
    assert "FAILED tests/test_textstats.py::test_clamp_low" in messages[3]["content"]
    assert "9 passed in 0.00s" in messages[11]["content"]
    assert "4:def clamp(value, low, high):" in messages[5]["content"]


@pytest.mark.parametrize("name, fixed", [
    # a "fix" that leaves a FAIL_TO_PASS test failing
    ("wrong", minipkg_source().replace("        return low\n", "        return low - 1\n")),
    # a "fix" that ends every test run with exit 0 before a test runs (forging a green suite)
    ("exit0", "import os\nos._exit(0)\n" + minipkg_source().replace("    if value < low:", "    if value >= low:")),
], ids=["wrong", "exit0"])
def test_a_fix_that_does_not_pass_gives_no_tool_example(sandbox, name, fixed):
    task = repo_task("    if value < low:", "    if value >= low:", fixed=fixed, name=name)
    record = execute_reference(task, _minipkg_files(), sandbox)
    assert not record["kept"] and record["reason"].startswith("the fixed tree fails the verdict")
    assert tool_examples(build_context(task, {}, record)) == []  # and no canonical sequence in its place
    assert tool_examples(build_context(task, {}))[0].rule == "tool/canonical-from-task"  # no repository: no run


@pytest.mark.integration
def test_repo_source_tool_examples_are_executed_runs(minirepo, tmp_path):
    made = repo_tasks(str(minirepo), test_cmd=COMMAND, max_bugs=2)
    result = synthesize(made.artifact.name, levels=("tool",), out=tmp_path / "a", jobs=2)
    runs = result.stats["tool_runs"]
    assert runs["tasks"] == made.stats["kept"] and runs["kept"] == runs["tasks"] and runs["executed"] == runs["tasks"]
    examples = list(read_jsonl(result.artifact.file("examples.jsonl")))
    assert len(examples) == runs["kept"]
    for example in examples:
        assert example["provenance"]["rule"] == "tool/executed-reference" and example["reward"] == 1.0
        assert example["messages"][-1]["role"] == "assistant" and "<returncode>" in example["messages"][3]["content"]
    log = tmp_path / "a" / "parts" / "tool-runs.jsonl"
    assert len(log.read_text().splitlines()) == runs["tasks"]
    # a rerun into a new directory executes again and writes the same bytes; a resumed one executes nothing
    again = synthesize(made.artifact.name, levels=("tool",), out=tmp_path / "b")
    assert again.artifact.file("examples.jsonl").read_bytes() == result.artifact.file("examples.jsonl").read_bytes()
    (tmp_path / "b" / "progress.jsonl").unlink()
    (tmp_path / "b" / "manifest.json").unlink()
    resumed = synthesize(made.artifact.name, levels=("tool",), out=tmp_path / "b")
    assert resumed.stats["tool_runs"]["executed"] == 0
    assert json.loads(json.dumps(resumed.stats["tool_runs"]))["kept"] == runs["kept"]


def test_normalise_puts_what_varies_between_runs_into_one_spelling():
    printed = ("E  assert '<toolz.funct...7febbdafefe0>' == 'Compose(<fun...febbea6ffd0>)'\n"
               "E  + <object object at 0x7fc2aa67efe0>\n9 passed in 1.23s\n--- PASS: TestX (0.01s)\n/tmp/tmpa1b2c3/x.py")
    assert normalise(printed) == ("E  assert '<toolz.funct...0>' == 'Compose(<fun...0>)'\nE  + <object object at 0x0>\n"
                                  "9 passed in 0.00s\n--- PASS: TestX (0.00s)\n/tmp/tmp/x.py")
    assert normalise("cd /tmp/hrm-run-1/work && ls", "/tmp/hrm-run-1/work") == "cd /work && ls"
