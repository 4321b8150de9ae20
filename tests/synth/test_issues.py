"""Problem statements for bug tasks (``hrmcode.data.bugs.issues``): SWE-smith's templates from the
failing tests and their failure, an LM's text through ``--llm`` (a fake OpenAI-compatible server
these tests start), and the hostile check: no task prompt made from ``examples/demo-repo`` holds its
instance id, a bug strategy name or a line of its fix."""

from __future__ import annotations

from collections import Counter

import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hrmcode.data.bugs import repo_tasks
from hrmcode.data.bugs.issues import (MAX_OUTPUT_CHARS, MAX_OUTPUT_LINES, STRATEGY_NAMES, VARIANTS, Evidence, Secrets,
                                      evidence, failure_excerpt, find_leak, problem_statement, secrets,
                                      template_statement)
from hrmcode.data.bugs.lm import LM_MODIFY_SYSTEM, ChatClient, apply_rewrite, lm_modify_bugs
from hrmcode.data.sources.swe_smith import to_task
from hrmcode.diffs import content_diffs
from hrmcode.errors import SourceUnavailable, UsageError
from hrmcode.jsonl import read_jsonl
from tests._sandboxes import real_sandbox
from tests.synth.conftest import commit_tree, swe_instance

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-repo"
TEST_CMD = "python3 -m pytest -q tests"
EVIDENCE = Evidence(fail_to_pass=["tests/test_a.py::test_one", "tests/test_a.py::TestB::test_two[x y]"],
                    files=["pkg/a.py"], functions=["clamp"],
                    test_source="def test_one():\n    assert clamp(5, 0, 3) == 3",
                    test_output="E       assert 5 == 3")


class FakeLM:
    """An OpenAI-compatible ``/v1/chat/completions`` on loopback answering ``answer(messages)``."""

    def __init__(self, answer, status: int = 200, body: dict | None = None):
        self.answer, self.status, self.body, self.requests = answer, status, body, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                if fake.status != 200:
                    data = json.dumps(fake.body or {}).encode()
                    self.send_response(fake.status)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                text = fake.answer(body["messages"])
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def fix_lines(task: dict, tree: dict[str, str]) -> list[str]:
    """The lines the task's fix adds that the bugged tree does not hold anywhere (this test's own
    reading of the fix, independent of ``issues.secrets``)."""
    present = {line.strip() for text in tree.values() for line in text.splitlines()}
    return [text.strip() for diff in content_diffs(task["solution"]["patch"]) for hunk in diff.hunks
            for tag, text in hunk.lines if tag == "+" and re.search(r"\w", text) and text.strip() not in present]


def bugged_tree(artifact: Path, task: dict) -> dict[str, str]:
    head = {r["path"]: r["text"] for r in read_jsonl(artifact / "repository.jsonl")}
    return {**head, **task["files"]}


def demo_repo(root: Path) -> Path:
    repo = root / "demo"
    shutil.copytree(DEMO, repo)
    return commit_tree(repo, "demo")


# -- evidence and templates -------------------------------------------------------------------------

def test_failure_excerpt_is_the_failing_tests_section_bounded(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "def test_ok():\n    assert True\n\n\n"
        "def test_bad():\n    print('noise\\n' * 500)\n    assert [1, 2] == [1, 3]\n\n\n"
        "class TestK:\n    def test_m(self):\n        assert 'a' == 'b'\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "test_x.py"],
                          cwd=tmp_path, capture_output=True, text=True)
    bad = failure_excerpt(done.stdout, "test_x.py::test_bad")
    assert "E       assert [1, 2] == [1, 3]" in bad and "assert 'a' == 'b'" not in bad
    assert len(bad.splitlines()) <= MAX_OUTPUT_LINES and len(bad) <= MAX_OUTPUT_CHARS
    method = failure_excerpt(done.stdout, "test_x.py::TestK::test_m")
    assert "assert 'a' == 'b'" in method and "[1, 2]" not in method
    # no failures section (--tb=no): the summary line
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "--tb=no", "-p", "no:cacheprovider",
                           "test_x.py"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert failure_excerpt(done.stdout, "test_x.py::TestK::test_m").startswith("FAILED test_x.py::TestK::test_m")
    assert failure_excerpt("", "test_x.py::test_bad") == ""


def test_evidence_reads_the_test_source_and_the_functions():
    files = {"tests/test_a.py": "import x\n\nclass TestB:\n    def test_two(self):\n        assert x.f() == 1\n",
             "pkg/a.py": "def f():\n    return 2\n"}
    patch = "--- a/pkg/a.py\n+++ b/pkg/a.py\n@@ -1,2 +1,2 @@ def f():\n def f():\n-    return 1\n+    return 2\n"
    found = evidence(files, patch, ["tests/test_a.py::TestB::test_two[p]"], "")
    assert found.test_source == "    def test_two(self):\n        assert x.f() == 1"
    assert found.files == ["pkg/a.py"] and found.functions == ["f"]
    assert secrets("o__r.abc.func_pm_op_change__1", patch, files).fix_lines == ("return 1",)


def test_templates_are_deterministic_varied_and_name_nothing():
    drawn = {}
    for n in range(300):
        variant, text = template_statement(EVIDENCE, f"key-{n}")
        assert template_statement(EVIDENCE, f"key-{n}") == (variant, text)
        assert not any(name in text for name in STRATEGY_NAMES)
        drawn[variant] = text
    assert set(drawn) == {v[0] for v in VARIANTS}
    assert "E       assert 5 == 3" in drawn["from_tests"] and "def test_one" in drawn["from_tests"]
    # a variant needs its evidence: without a failure output no test-output variant is drawn
    bare = Evidence(fail_to_pass=["t.py::test_x"], files=["a.py"], functions=[])
    assert {template_statement(bare, f"k{n}")[0] for n in range(100)} == {"basic", "files", "tests_f2p", "files_test"}


def test_find_leak_names_what_leaked():
    secret = Secrets("local__demo.1234abcd.func_pm_op_flip__deadbeef", ("func_pm_op_flip", *STRATEGY_NAMES),
                     ("if value < low:",))
    assert find_leak("see local__demo.1234abcd.func_pm_op_flip__deadbeef", secret) == "the instance id"
    assert find_leak("an OP_FLIP bug", secret) == "the strategy name 'op_flip'"
    assert find_leak("    >   if value < low:\n", secret).startswith("a line of the fix")
    assert find_leak("clamp(-1, 0, 3) returns 3 instead of 0", secret) is None


def test_leaking_evidence_lines_are_dropped_and_recorded():
    secret = Secrets("x.y.func_pm_remove_assign__1", STRATEGY_NAMES, ("total = 0",))
    leaky = Evidence(fail_to_pass=["t.py::test_sum"], files=["a.py"], functions=["add"],
                     test_source="def test_sum():\n    pass",
                     test_output="E   hint: total = 0 was expected\nE   NameError: total")
    for n in range(40):
        statement = problem_statement(leaky, secret, f"k{n}")
        assert find_leak(statement.text, secret) is None
        if statement.leak:
            assert statement.leak.startswith("template: a line of the fix") and "NameError: total" in statement.text


def test_an_lm_statement_is_used_unless_it_leaks():
    secret = Secrets("x.y.func_pm_op_flip__1", STRATEGY_NAMES, ("if value < low:",))

    class Said:
        def __init__(self, text):
            self.text, self.asked = text, []

        def chat(self, messages):
            self.asked.append(messages)
            return self.text

    clean = Said("Calling clamp(-1, 0, 3) gives 3, but I expected the lower bound 0.")
    statement = problem_statement(EVIDENCE, secret, "k", clean)
    assert (statement.text, statement.source, statement.leak) == (clean.text, "lm", None)
    assert "E       assert 5 == 3" in clean.asked[0][1]["content"]  # the LM is given the failure
    for text, why in (("Fix: change it back to `if value < low:`", "LM: a line of the fix"),
                      ("This looks like an op_flip mutation", "LM: the strategy name"),
                      ("   ", "LM: the LM wrote nothing"),
                      ("clamp is broken.", "LM: the LM wrote 3 words"),
                      ("unkslp msgunkslp msg>>>>lp 85lpalp 0x1f 3.5e2 ___ ### msgunks()", "LM: the LM's text is mostly"),
                      # a random model's fluent-looking noise names nothing of this bug
                      ("The result of the computation is different from what the documentation says.",
                       "LM: the LM's text names none")):
        statement = problem_statement(EVIDENCE, secret, "k", Said(text))
        assert statement.source.startswith("template:") and statement.leak.startswith(why), statement.leak
        assert statement.text == template_statement(EVIDENCE, "k")[1]


def test_chat_client_talks_to_an_openai_compatible_server():
    with FakeLM(lambda messages: "It breaks: " + messages[-1]["content"][:5]) as server:
        client = ChatClient(f"openai:{server.url}", "fake-model", seed=3)
        assert client.chat([{"role": "user", "content": "hello world"}]) == "It breaks: hello"
        assert server.requests[0]["model"] == "fake-model" and server.requests[0]["seed"] == 3
    with FakeLM(lambda m: "", status=503) as server:
        with pytest.raises(SourceUnavailable, match="failed after 2 tries"):
            ChatClient(f"openai:{server.url}", "m", retries=1).chat([{"role": "user", "content": "x"}])
        assert len(server.requests) == 2
    with pytest.raises(UsageError, match="openai:BASE_URL"):
        ChatClient("http://127.0.0.1:1/v1", "m")
    with pytest.raises(UsageError, match="--llm-model"):
        ChatClient("openai:http://127.0.0.1:1/v1", None)


def test_a_prompt_too_long_for_the_model_falls_back_and_the_run_goes_on():
    said = "the prompt has 1142 tokens, the model's context is 512"  # hrmcode serve's words
    with FakeLM(lambda messages: "", status=400, body={"error": {"message": said, "code": "invalid_prompt"}}) as server:
        client = ChatClient(f"openai:{server.url}", "tiny", retries=0)
        statement = problem_statement(EVIDENCE, Secrets("x.y.func_pm_op_flip__1"), "k", client)
        assert statement.source.startswith("template:") and said in statement.leak
        refused = Counter()
        assert lm_modify_bugs({"a.py": "import os\n\n\n" + FUNCTION}, ["a.py"], client, 1, 0, refused) == []
        assert refused == {"prompt_too_long": 1}  # counted, not silent
        assert len(server.requests) == 2  # one each, no retry: a longer wait does not make it fit


def test_a_hub_row_without_a_statement_gets_one_without_its_id():
    record = swe_instance("    if value < low:", "    if value >= low:")
    task = to_task(record, "row 1")
    assert task.metadata["prompt_source"] == "fail_to_pass"
    assert record["instance_id"] not in task.prompt and "op_flip" not in task.prompt
    assert "if value < low:" not in task.prompt
    assert to_task(record, "row 1").prompt == task.prompt  # seeded by the instance


# -- the hostile check over real tasks ---------------------------------------------------------------

@pytest.mark.integration
def test_no_demo_task_prompt_gives_away_its_id_strategy_or_fix(tmp_path):
    repo = demo_repo(tmp_path)
    result = repo_tasks(str(repo), test_cmd=TEST_CMD, max_bugs=12, out=tmp_path / "tasks",
                        sandbox=real_sandbox("local"))
    artifact = result.artifact.path
    tasks = list(read_jsonl(artifact / "tasks.jsonl"))
    instances = {i["instance_id"]: i for i in read_jsonl(artifact / "instances.jsonl")}
    assert len(tasks) >= 5
    for task in tasks:
        instance_id = task["metadata"]["instance_id"]
        prompt = task["prompt"]
        assert prompt.strip() and prompt == instances[instance_id]["problem_statement"]
        assert instance_id not in prompt and instance_id.rsplit("__", 1)[1] not in prompt
        assert not [name for name in STRATEGY_NAMES if name in prompt.lower()], prompt
        leaked = [line for line in fix_lines(task, bugged_tree(artifact, task)) if line in prompt]
        assert not leaked, (instance_id, leaked, prompt)
    counts = result.stats["problem_statements"]["by_source"]
    assert sum(counts.values()) == len(tasks) and all(k.startswith("template:") for k in counts)
    # the failure each kept bug's validation run printed is kept, and the test-output variant shows it
    verdicts = [json.loads(line) for line in (tmp_path / "tasks.bug-verdicts.jsonl").read_text().splitlines()]
    kept = [v for v in verdicts if v.get("verdict") == "kept"]
    assert len(kept) == len(tasks) and all(v["failure"].strip() for v in kept)
    shown = [t["prompt"] for t in tasks if "**Test Output**" in t["prompt"]]
    assert counts.get("template:from_tests") == len(shown) >= 1
    assert all(re.search(r"^E +\S", p, re.M) or "Error" in p for p in shown)
    # the same repository, seed and options: the same statements (the failures come from the verdict log)
    again = repo_tasks(str(repo), test_cmd=TEST_CMD, max_bugs=12, out=tmp_path / "tasks", sandbox=real_sandbox("local"))
    assert [t["prompt"] for t in read_jsonl(again.artifact.path / "tasks.jsonl")] == [t["prompt"] for t in tasks]


@pytest.mark.integration
def test_llm_writes_statements_from_the_cli_and_leaks_fall_back(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    repo = demo_repo(tmp_path)

    bug_writer = ScriptedLM()

    def answer(messages):
        if messages[0]["content"] == LM_MODIFY_SYSTEM:
            return bug_writer.chat(messages)
        user = messages[-1]["content"]
        patch = user.split("<patch>", 1)[1].split("</patch>", 1)[0]
        removed = [line[1:].strip() for line in patch.splitlines()
                   if line.startswith("-") and not line.startswith("---")]
        if "rle.py" in patch and removed:  # a careless LM: it writes the fix into the issue
            return f"Decoding is broken. The code should read `{removed[0]}` instead."
        path = patch.split("+++ b/", 1)[1].split("\n", 1)[0]
        return f"Something in {path} returns wrong results since the last release."

    with FakeLM(answer) as server:
        done = cli("--json", "synthesize", "--source", f"repo:{repo}", "--test-cmd", TEST_CMD, "--max-bugs", "12",
                   "--levels", "plan", "--llm", f"openai:{server.url}", "--llm-model", "fake-issues",
                   "--lm-bugs", "2", "--bug-timeout", "10")
    assert done.exit_code == 0, done.stderr
    assert server.requests and all(r["model"] == "fake-issues" for r in server.requests)
    bugs = json.loads(done.stdout)["bugs"]
    assert bug_writer.bug_requests == 2 and bugs["by_type_tried"].get("lm_modify", 0) >= 1
    stats = bugs["problem_statements"]
    tasks_dir = next((tmp_path / "workspace" / "fetch" / "repo-demo").glob("*/tasks.jsonl")).parent
    tasks = list(read_jsonl(tasks_dir / "tasks.jsonl"))
    refused = {r["instance_id"]: r["reason"] for r in stats["refused"]}
    assert stats["by_source"].get("lm", 0) >= 1 and refused
    for task in tasks:
        instance_id = task["metadata"]["instance_id"]
        rle = "toolkit/rle.py" in task["files"]
        assert (instance_id in refused) == rle
        if rle:
            assert refused[instance_id].startswith("LM: a line of the fix")
            assert "Decoding is broken" not in task["prompt"]
        else:
            path = next(iter(task["files"]))
            assert task["prompt"] == f"Something in {path} returns wrong results since the last release."
        assert not [line for line in fix_lines(task, bugged_tree(tasks_dir, task)) if line in task["prompt"]]
    # what the examples show the model (header, title, problem) names neither the instance nor its strategy
    examples_dir = next((tmp_path / "workspace" / "synthesize").glob("*/*/examples.jsonl")).parent
    examples = list(read_jsonl(examples_dir / "examples.jsonl"))
    ids = [t["metadata"]["instance_id"] for t in tasks]
    assert examples
    for example in examples:
        shown = json.dumps(example["input"]).lower()
        assert not [i for i in ids if i.lower() in shown] and not [n for n in STRATEGY_NAMES if n in shown], shown[:300]


def test_llm_options_are_refused_where_they_do_not_apply(cli, tmp_path):
    done = cli("synthesize", "--source", "swe-smith", "--llm", "openai:http://127.0.0.1:1/v1")
    assert done.exit_code == 2 and "--llm" in done.stderr
    done = cli("synthesize", "--source", f"repo:{tmp_path}", "--test-cmd", "pytest", "--llm-model", "m")
    assert done.exit_code == 2 and "--llm-model needs --llm" in done.stderr
    done = cli("synthesize", "--source", f"repo:{tmp_path}", "--test-cmd", "pytest", "--lm-bugs", "3")
    assert done.exit_code == 2 and "--lm-bugs needs --llm" in done.stderr
    done = cli("synthesize", "--source", f"repo:{tmp_path}", "--test-cmd", "pytest", "--llm", "ftp://x")
    assert done.exit_code == 2 and "openai:BASE_URL" in done.stderr


# -- LM-written bugs (lm_modify) ----------------------------------------------------------------------

FUNCTION = ("def clamp(value, low, high):\n    if value < low:\n        return low\n"
            "    if value > high:\n        return high\n    return value\n")


def _reply(code: str) -> str:
    return f"Explanation:\nsubtle.\n\nBugged Code:\n```python\n{code}```\n"


def test_an_lm_rewrite_is_kept_only_as_the_same_function_without_new_comments():
    text = "import os\n\n\n" + FUNCTION + "\n\nX = 1\n"
    node = next(n for n in __import__("ast").parse(text).body if getattr(n, "name", "") == "clamp")
    bugged = apply_rewrite(text, node, _reply(FUNCTION.replace("value < low", "value <= low")))
    assert bugged == text.replace("value < low", "value <= low")
    refused = {
        "a comment points at the bug": FUNCTION.replace("value < low:", "value <= low:  # bug here"),
        "renamed": FUNCTION.replace("def clamp", "def clamp2"),
        "another signature": FUNCTION.replace("high):", "high=0):"),
        "no change": FUNCTION,
        "not Python": "def clamp(value, low, high):\n    if value <\n",
    }
    for why, code in refused.items():
        assert apply_rewrite(text, node, _reply(code)) is None, why
    assert apply_rewrite(text, node, "no code at all") is None
    assert apply_rewrite(text, node, _reply(FUNCTION) + _reply(FUNCTION)) is None  # two blocks: which one?


class ScriptedLM:
    """An in-process LM: an lm_modify request gets its function back with the first comparison
    flipped; an issue request gets a plain sentence."""

    FLIPS = ((" < ", " <= "), (" > ", " >= "), (" == ", " != "), (" + 1", " + 2"), ("not ", ""))

    def __init__(self):
        self.bug_requests = 0

    def chat(self, messages):
        if messages[0]["content"] != LM_MODIFY_SYSTEM:
            return "Some results look wrong since the last update."
        self.bug_requests += 1
        source = messages[-1]["content"].split("<INPUT>\n", 1)[1].split("\n</INPUT>", 1)[0]
        for old, new in self.FLIPS:
            if old in source:
                return _reply(source.replace(old, new, 1) + "\n")
        return "I cannot."


@pytest.mark.integration
def test_lm_written_bugs_are_validated_like_procedural_ones_and_marked(tmp_path):
    repo = demo_repo(tmp_path)
    lm = ScriptedLM()
    # timeout_s: an LM's `<=` in a while loop never ends
    result = repo_tasks(str(repo), test_cmd=TEST_CMD, max_bugs=8, timeout_s=10, out=tmp_path / "tasks",
                        sandbox=real_sandbox("local"), llm=lm, lm_bugs=5)
    assert lm.bug_requests == 5
    assert result.stats["by_type_tried"].get("lm_modify", 0) >= 3
    kept = result.stats["by_type_kept"].get("lm_modify", 0)
    assert kept >= 1
    instances = list(read_jsonl(result.artifact.path / "instances.jsonl"))
    written = [i for i in instances if i.get("model_written")]
    assert len(written) == kept and all(".lm_modify__" in i["instance_id"] for i in written)
    assert all(".func_pm_" in i["instance_id"] and "model_written" not in i for i in instances if i not in written)
    for instance in written:  # validated as any bug: some tests break, others keep passing
        assert instance["FAIL_TO_PASS"] and instance["PASS_TO_PASS"]
        statement = instance["problem_statement"]
        assert "lm_modify" not in statement and instance["instance_id"] not in statement
    tasks = {t["metadata"]["instance_id"]: t for t in read_jsonl(result.artifact.path / "tasks.jsonl")}
    assert all(tasks[i["instance_id"]]["metadata"]["model_written"] is True for i in written)
