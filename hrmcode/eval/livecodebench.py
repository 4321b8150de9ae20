"""LiveCodeBench code generation: stdin and functional problems, run for real in the sandbox.

Each sample runs in its own sandbox through ``drivers/lcb.py``: every test is a real subprocess
(stdin problems read a real pipe; functional problems go through a small harness that reads the
JSON arguments and compares the returned value in process), with a per-test timeout (6 s by
default, as lcb_runner) and LiveCodeBench's import prelude. Like lcb_runner, a sample stops at its
first failing test and is correct only when every test passes.

Comparators (``drivers/lcb_compare.py``): ``lcb-exact`` reproduces the official grading rules,
``tolerant`` accepts numbers within 1e-6. What this harness deliberately does NOT reproduce are
lcb_runner's false negatives from its mocked stdin (``for line in sys.stdin`` failing, a second
``sys.stdin.buffer.readline()`` replaying the first line): here those programs pass. Reported:
pass@1 and pass@5 (the latter only when every problem has at least 5 samples), the release and
the contest-date window of the tasks, the comparator and the timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from hrmcode.data.schema import Task
from hrmcode.eval.backends import Backend, Request, SamplesBackend
from hrmcode.eval.extract import last_code_block
from hrmcode.eval.metrics import mean_pass_at_k, percent
from hrmcode.eval.sandboxing import PYTHON, driver_files, health, parse_results

SYSTEM_PROMPT = (
    "You are an expert Python programmer. You will be given a question (problem specification) and will "
    "generate a correct Python program that matches the specification and passes all tests."
)
FUNCTIONAL_FORMAT = (
    "### Format: You will use the following starter code to write the solution to the problem and enclose "
    "your code within delimiters.\n```python\n{starter}\n```\n\n"
)
STDIN_FORMAT = (
    "### Format: Read the inputs from stdin solve the problem and write the answer to the expected output "
    "format (stdout) in the code. Enclose your code within delimiters as follows. Ensure that when the python "
    "program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.\n"
    "```python\n# YOUR CODE HERE\n```\n\n"
)
RESULT_NAMES = {1: "passed", -1: "global timeout", -2: "wrong answer", -3: "time limit exceeded",
                -4: "runtime error", -5: "test runner error"}


def starter_code(task: Task) -> str:
    starter = task.metadata.get("starter_code")
    if isinstance(starter, str):
        return starter
    return next(iter(task.files.values()), "") if task.files else ""


def contest_date(task: Task) -> str:
    return str(task.metadata.get("contest_date", ""))[:10]


def in_window(task: Task, since: str | None, until: str | None) -> bool:
    """``since``/``until`` are inclusive YYYY-MM-DD bounds on the contest date."""
    date = contest_date(task)
    return (since is None or (bool(date) and date >= since)) and (until is None or (bool(date) and date <= until))


def chat_messages(task: Task) -> list[dict[str, str]]:
    body = f"### Question:\n{task.prompt}\n\n"
    body += FUNCTIONAL_FORMAT.format(starter=starter_code(task)) if task.kind == "functional" else STDIN_FORMAT
    body += "### Answer: (use the provided format with backticks)\n\n"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": body}]


class LiveCodeBench:
    name = "livecodebench"

    def __init__(self, backend: Backend, sandbox: Any, *, n: int = 1, ks: Sequence[int] = (1, 5),
                 comparator: str = "lcb-exact", timeout_s: float = 6.0, memory_mb: int = 2048,
                 window: dict[str, Any] | None = None):
        self.backend = backend
        self.sandbox = sandbox
        self.n = n
        self.ks = tuple(ks)
        self.comparator = comparator
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.window = window or {}

    def _limits(self, tests: int) -> Any:
        from hrmcode.sandbox.base import Limits

        return Limits(timeout_s=tests * (self.timeout_s + 1.0) + 10.0, memory_mb=self.memory_mb)

    def grade(self, task: Task, code: str, worker: int) -> dict:
        """Run ``code`` against all of ``task``'s tests; LiveCodeBench result codes per test."""
        job = {
            "code": code, "kind": task.kind, "func_name": task.tests.entry_point,
            "tests": [{"input": c.input, "output": c.output} for c in task.tests.cases],
            "timeout": self.timeout_s, "comparator": self.comparator, "stop_on_fail": True,
        }
        command = [PYTHON, "-I", "lcb.py", "job.json"]
        files = driver_files("lcb.py", "lcb_compare.py")
        empty = {**job, "tests": [], "code": ""}
        health.ensure(self.sandbox, command, {**files, "job.json": json.dumps(empty)}, self._limits(0), worker)
        result = self.sandbox.run(command, {**files, "job.json": json.dumps(job)}, self._limits(len(job["tests"])),
                                  worker=worker)
        payload = parse_results(result.stdout)
        if not isinstance(payload, dict):
            return {"passed": False, "results": [-1], "error": {
                "code": -1, "message": "global timeout" if result.timed_out else f"the test driver was stopped (exit {result.exit_code})"}}
        results = payload["results"]
        passed = bool(results) and len(results) == len(job["tests"]) and all(r == 1 for r in results)
        return {"passed": passed, "results": results, "error": payload.get("error")}

    def evaluate(self, tasks: Sequence[Task], worker: int) -> list[dict]:
        records = []
        for task in tasks:
            n = self.backend.available(task) if isinstance(self.backend, SamplesBackend) else self.n
            started = time.monotonic()
            replies = self.backend.complete(Request(bench=self.name, task=task, n=n, messages=chat_messages(task))) if n else []
            model_s = time.monotonic() - started
            started = time.monotonic()
            samples = []
            for reply in replies:
                code = reply.text if reply.raw else last_code_block(reply.text)
                graded = self.grade(task, code, worker)
                samples.append({"code": code, **graded})
            records.append({
                "id": task.id, "question_id": task.metadata.get("question_id", task.id.split("/", 1)[1]),
                "kind": task.kind, "difficulty": task.metadata.get("difficulty"), "contest_date": contest_date(task),
                "n": len(samples), "correct": sum(s["passed"] for s in samples), "samples": samples,
                "model_s": round(model_s, 4), "test_s": round(time.monotonic() - started, 4),
                "prompt_tokens": sum(r.prompt_tokens for r in replies),
                "completion_tokens": sum(r.completion_tokens for r in replies),
            })
        return records

    def summarize(self, records: Sequence[dict], tasks: Sequence[Task]) -> dict:
        counts = [(r["n"], r["correct"]) for r in records]
        scores = mean_pass_at_k(counts, self.ks)
        by_difficulty: dict[str, list[tuple[int, int]]] = {}
        for record in records:
            by_difficulty.setdefault(str(record.get("difficulty") or "unknown"), []).append((record["n"], record["correct"]))
        dates = sorted(r["contest_date"] for r in records if r.get("contest_date"))
        solved = sum(1 for _, c in counts if c)
        return {
            "bench": self.name, "model": self.backend.describe(), "cases": len(tasks), "completed": len(records),
            "samples": sum(n for n, _ in counts), "ks": list(self.ks),
            **{k: round(v, 6) for k, v in scores.items()},
            "score": round(100.0 * scores.get("pass@1", 0.0), 2), "solved": solved, "solved_percent": percent(solved, len(tasks)),
            "comparator": self.comparator, "timeout_s": self.timeout_s,
            "release": self.window.get("release"), "since": self.window.get("since"), "until": self.window.get("until"),
            "contest_dates": [dates[0], dates[-1]] if dates else None,
            "difficulty": {d: {"cases": len(c), **{k: round(v, 6) for k, v in mean_pass_at_k(c, self.ks).items()}}
                           for d, c in sorted(by_difficulty.items())},
            "seconds": {"model": round(sum(r.get("model_s", 0) for r in records), 2),
                        "test": round(sum(r.get("test_s", 0) for r in records), 2)},
            "tokens": {"prompt": sum(r.get("prompt_tokens", 0) for r in records),
                       "completion": sum(r.get("completion_tokens", 0) for r in records)},
        }
