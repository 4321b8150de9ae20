"""LiveCodeBench code generation: stdin and functional problems, graded across a process boundary.

The samples of a batch of problems share one sandbox launch, where ``drivers/lcb.py`` is the
trusted side: it holds the tests, starts a pre-imported fork server, and forks one candidate
process per stdin test (the program runs as ``__main__`` with the test input on a real pipe; its
stdout comes back on a pipe) or per functional sample (the program is IMPORTED as a module, so an
``if __name__ == "__main__":`` block that reads stdin stays quiet, as in lcb_runner; each test
calls a fresh ``Solution()`` and the returned value comes back as plain data). Outputs are compared
in the trusted process; per-test timeout 6 s by default, as lcb_runner, and LiveCodeBench's import
prelude. Like lcb_runner, a sample stops at its first failing test and is correct only when every
test passes.

Comparators (``drivers/lcb_compare.py``): ``lcb-exact`` reproduces the official grading rules,
``tolerant`` accepts numbers within 1e-6 (numbers only: a tuple nested in a list is not a list
under either). Modes: ``parity`` (default) grades as lcb_runner does; ``strict`` also requires the
returned value's JSON type to match the expected one (``True`` is not ``1``) and refuses returned
subclasses of builtin types that override comparison or conversion. What this harness deliberately
does NOT reproduce are lcb_runner's false negatives (its mocked stdin: ``for line in sys.stdin``
failing, a second ``sys.stdin.buffer.readline()`` replaying the first line; one ``Solution``
shared by all tests): here those programs pass.

What a verdict guarantees: the expected outputs, other tests, other samples and the run's nonce
are never in a candidate's process; a candidate can only send bytes (stdin problems) or data
(functional), so printing a verdict line, exiting early, patching builtins or returning a lying
object cannot make a test pass (tests/eval/hostile). Not guaranteed: a candidate shares the
driver's uid in the sandbox; signals to the driver are refused by a seccomp filter on x86_64 only,
so elsewhere it can SIGKILL/SIGSTOP the driver, which loses the batch's verdicts (then re-run one
sample per sandbox, charging only the attacker) or costs the sandbox's time limit.

Reported: pass@1 and pass@5 (the latter only when every problem has at least 5 samples), the
samples per problem, the release (or the file the tasks came from) and the contest-date window,
the comparator, the mode and the timeout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from hrmcode.data.schema import Task
from hrmcode.errors import InputError
from hrmcode.eval.backends import Backend, PromptTooLong, Reply, Request, SamplesBackend, segments_field
from hrmcode.eval.extract import last_code_block
from hrmcode.eval.metrics import mean_pass_at_k, percent
from hrmcode.sandbox.driving import run_driver
from hrmcode.sandbox.base import Limits, Sandbox

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
MODES = ("parity", "strict")


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


def window_of(fetch_params: dict[str, Any], since: str | None, until: str | None) -> dict[str, Any]:
    """The release and date window to report for tasks fetched with ``fetch_params``: a ``--from``
    file has no release (the fetch step's default tag says nothing about it), so the file is named."""
    from_paths = fetch_params.get("from") or []
    return {
        "release": None if from_paths else fetch_params.get("release"),
        "from": (from_paths[0] if len(from_paths) == 1 else from_paths) if from_paths else None,
        "since": since or fetch_params.get("since"), "until": until or fetch_params.get("until"),
    }


def chat_messages(task: Task) -> list[dict[str, str]]:
    body = f"### Question:\n{task.prompt}\n\n"
    body += FUNCTIONAL_FORMAT.format(starter=starter_code(task)) if task.kind == "functional" else STDIN_FORMAT
    body += "### Answer: (use the provided format with backticks)\n\n"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": body}]


class LiveCodeBench:
    name = "livecodebench"

    def __init__(self, backend: Backend, sandbox: Sandbox, *, n: int = 1, ks: Sequence[int] = (1, 5),
                 comparator: str = "lcb-exact", timeout_s: float = 6.0, memory_mb: int = 2048,
                 window: dict[str, Any] | None = None, mode: str = "parity"):
        self.backend = backend
        self.mode = mode
        self.sandbox = sandbox
        self.n = n
        self.ks = tuple(ks)
        self.comparator = comparator
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.window = window or {}

    def reference_answer(self, request: Request) -> Reply:
        """The task's reference program (``--model oracle``)."""
        task = request.task
        code = next(iter(task.solution.files.values()), None) if task.solution.files else None
        if code is None:
            raise InputError(f"{task.id} has no reference solution", "--model oracle needs tasks with solution.files")
        return Reply(text=code, raw=True)

    def stub_answer(self, request: Request) -> Reply:
        """An empty program (``--model stub``)."""
        return Reply(text="", raw=True)

    def _limits(self, tests: int) -> Limits:
        return Limits(timeout_s=tests * (self.timeout_s + 1.0) + 10.0, memory_mb=self.memory_mb,
                      output_bytes=16 << 20)

    def _job(self, samples: list[tuple[Task, str]]) -> dict:
        problems = {task.id: {"kind": task.kind, "func_name": task.tests.entry_point,
                              "tests": [{"input": c.input, "output": c.output} for c in task.tests.cases]}
                    for task, _ in samples}
        return {"strict": self.mode == "strict", "comparator": self.comparator, "timeout": self.timeout_s,
                "problems": problems, "samples": [{"problem": task.id, "code": code} for task, code in samples]}

    def grade_samples(self, samples: list[tuple[Task, str]], worker: int) -> list[dict]:
        """Grade (task, code) pairs in one sandbox; LiveCodeBench result codes per test. When a
        program stopped the driver, the batch is graded again one sample per sandbox."""
        if not samples:
            return []
        tests = sum(len(task.tests.cases) for task, _ in samples)
        payload, result = run_driver(self.sandbox, "lcb.py", self._job(samples), self._limits(tests), worker)
        graded = payload.get("samples") if isinstance(payload, dict) else None
        if isinstance(graded, list) and len(graded) == len(samples):
            hardened = bool(payload.get("hardened"))
            return [self._verdict(task, entry, hardened) for (task, _), entry in zip(samples, graded)]
        if len(samples) > 1:
            return [g for sample in samples for g in self.grade_samples([sample], worker)]
        message = "global timeout" if result.timed_out else f"the test driver was stopped (exit {result.exit_code})"
        return [{"passed": False, "results": [-1], "error": {"code": -1, "message": message}, "hardened": True}]

    @staticmethod
    def _verdict(task: Task, entry: Any, hardened: bool) -> dict:
        results = entry.get("results") if isinstance(entry, dict) else None
        if not isinstance(results, list):
            return {"passed": False, "results": [-5], "error": {"code": -5, "message": "malformed driver output"},
                    "hardened": hardened}
        passed = len(results) == len(task.tests.cases) > 0 and all(r == 1 for r in results)
        return {"passed": passed, "results": results, "error": entry.get("error"), "hardened": hardened}

    def grade(self, task: Task, code: str, worker: int) -> dict:
        """Run ``code`` against all of ``task``'s tests in a sandbox of its own."""
        return self.grade_samples([(task, code)], worker)[0]

    def evaluate(self, tasks: Sequence[Task], worker: int) -> list[dict]:
        answered = []
        unasked: dict[str, tuple[int, str]] = {}  # task id -> (samples, why the model could not be asked)
        for task in tasks:
            n = self.backend.available(task) if isinstance(self.backend, SamplesBackend) else self.n
            started = time.monotonic()
            request = Request(bench=self.name, task=task, n=n, messages=chat_messages(task), answer_key=self)
            try:
                replies = self.backend.complete(request) if n else []
            except PromptTooLong as exc:
                replies, unasked[task.id] = [], (n, exc.message)
            answered.append((task, replies, time.monotonic() - started))
        samples = [(task, reply.text if reply.raw else last_code_block(reply.text))
                   for task, replies, _ in answered for reply in replies]
        started = time.monotonic()
        graded = iter(self.grade_samples(samples, worker))
        test_s = (time.monotonic() - started) / max(1, len(tasks))
        codes = iter(code for _, code in samples)
        records = []
        for task, replies, model_s in answered:
            task_samples = [{"code": next(codes), **next(graded)} for _ in replies]
            if task.id in unasked:  # the case fails with the reason, one failed sample per sample; the run goes on
                n, reason = unasked[task.id]
                task_samples = [{"code": "", "passed": False, "results": [], "error": {"message": reason},
                                 "hardened": True} for _ in range(n)]
            records.append({
                "id": task.id, "question_id": task.metadata.get("question_id", task.id.split("/", 1)[1]),
                "kind": task.kind, "difficulty": task.metadata.get("difficulty"), "contest_date": contest_date(task),
                "n": len(task_samples), "correct": sum(s["passed"] for s in task_samples), "samples": task_samples,
                "model_s": round(model_s, 4), "test_s": round(test_s, 4),
                "prompt_tokens": sum(r.prompt_tokens for r in replies),
                "completion_tokens": sum(r.completion_tokens for r in replies),
                **segments_field(replies),
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
            "samples_per_task": sorted({n for n, _ in counts}),
            "comparator": self.comparator, "mode": self.mode, "timeout_s": self.timeout_s,
            "drivers_hardened": all(s.get("hardened", False) for r in records for s in r["samples"]),
            "release": self.window.get("release"), "tasks_from": self.window.get("from"),
            "since": self.window.get("since"), "until": self.window.get("until"),
            "contest_dates": [dates[0], dates[-1]] if dates else None,
            "difficulty": {d: {"cases": len(c), **{k: round(v, 6) for k, v in mean_pass_at_k(c, self.ks).items()}}
                           for d, c in sorted(by_difficulty.items())},
            "seconds": {"model": round(sum(r.get("model_s", 0) for r in records), 2),
                        "test": round(sum(r.get("test_s", 0) for r in records), 2)},
            "tokens": {"prompt": sum(r.get("prompt_tokens", 0) for r in records),
                       "completion": sum(r.get("completion_tokens", 0) for r in records)},
        }
