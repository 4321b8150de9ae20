"""Small Python function tasks with assert-based tests, written by a seeded generator: the tasks
``hrmcode train --stage rl`` learns from (never an evaluated benchmark).

Each task is a one-line function of a family (``add_3``: return x plus 3; ``is_div_4``: whether
x is divisible by 4; ``repeat_2``: s repeated 2 times ...) with one constant 2..9, in
HumanEval's shape so every consumer of function tasks takes it as is: kind ``function``, the stub
(the signature: its name is the specification, a docstring would only lengthen what a tiny model
must copy) as ``prompt`` and ``solution.py``, ``tests.files["test.py"]`` a
``check(candidate)`` of three asserts on seeded inputs, ``tests.entry_point`` the function, the
reference in ``solution.files``. ``metadata`` holds the family, the constant and the ``split``
(``train`` or ``heldout``): synthesize's seeded split of the task id, so ``hrmcode synthesize
--seed S --heldout-fraction F`` of these tasks holds out exactly the tasks ``function_tasks(S, F)``
marks held out, and a model fine-tuned on its training examples never saw a held-out task.

Guarantees: the same ``seed`` gives the same tasks in the same order; every reference passes its
asserts (checked here, in this process, on the generator's own code) and the stub fails them.
Not guaranteed: anything about difficulty beyond "one line of body".
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hrmcode.data.schema import Solution, Task, Tests
from hrmcode.data.synthesize.pipeline import split_of
from hrmcode.errors import UsageError

SOURCE = "function-tasks"
CONSTANTS = range(2, 10)


@dataclass(frozen=True)
class Family:
    """One kind of function: its name (with ``{k}``), argument, the returned expression and its inputs."""

    name: str
    arg: str
    body: str  # the returned expression, with {k}
    inputs: Callable[[random.Random, int], Any]

    def reference(self, k: int) -> Callable[[Any], Any]:
        namespace: dict[str, Any] = {}
        exec(f"def f({self.arg}):\n    return {self.body.format(k=k)}\n", namespace)  # noqa: S102 - our own code
        return namespace["f"]


def _int(rng: random.Random, k: int) -> int:
    return rng.randint(-20, 40)


def _word(rng: random.Random, k: int) -> str:
    return "".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 4)))


def _ints(rng: random.Random, k: int) -> list[int]:
    return [rng.randint(0, 9) for _ in range(rng.randint(k + 1, k + 4))]


FAMILIES = (
    Family("add_{k}", "x", "x + {k}", _int),
    Family("sub_{k}", "x", "x - {k}", _int),
    Family("mul_{k}", "x", "x * {k}", _int),
    Family("mod_{k}", "x", "x % {k}", _int),
    Family("is_div_{k}", "x", "x % {k} == 0", _int),
    Family("above_{k}", "x", "x > {k}", _int),
    Family("min_{k}", "x", "min(x, {k})", _int),
    Family("max_{k}", "x", "max(x, {k})", _int),
    Family("repeat_{k}", "s", "s * {k}", _word),
    Family("item_{k}", "xs", "xs[{k}]", _ints),
)


def _task(family: Family, k: int, split: str, rng: random.Random) -> Task:
    name = family.name.format(k=k)
    stub = f"def {name}({family.arg}):\n"
    reference = family.reference(k)
    cases, seen = [], set()
    while len(cases) < 3:
        value = family.inputs(rng, k)
        if repr(value) not in seen:
            seen.add(repr(value))
            cases.append((value, reference(value)))
    check = "def check(candidate):\n" + "".join(f"    assert candidate({v!r}) == {r!r}\n" for v, r in cases)
    space: dict[str, Any] = {}
    exec(check, space)  # noqa: S102 - the generator's own asserts, on its own reference
    space["check"](reference)
    return Task(id=f"{SOURCE}/{name}", source=SOURCE, language="python", kind="function", title=name, prompt=stub,
                files={"solution.py": stub}, editable=["solution.py"],
                solution=Solution(files={"solution.py": f"{stub}    return {family.body.format(k=k)}\n"}),
                tests=Tests(files={"test.py": check}, entry_point=name),
                metadata={"family": family.name.format(k="K"), "constant": k, "split": split})


def function_tasks(seed: int = 0, heldout_fraction: float = 0.25, families: int = len(FAMILIES)) -> list[Task]:
    """Every (family, constant) of the first ``families`` families as a task, family by family (so the
    first 8 * N tasks are N whole families), held out as ``synthesize --seed seed --heldout-fraction
    heldout_fraction`` would hold them out."""
    if not 1 <= families <= len(FAMILIES):
        raise UsageError(f"families must be 1..{len(FAMILIES)}, got {families}", "pick fewer families")
    if not 0 < heldout_fraction < 1:
        raise UsageError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}", "use e.g. 0.25")
    rng = random.Random(seed)
    tasks: list[Task] = []
    for family in FAMILIES[:families]:
        for k in CONSTANTS:
            task_id = f"{SOURCE}/{family.name.format(k=k)}"
            tasks.append(_task(family, k, split_of(task_id, seed, heldout_fraction), rng))
    return tasks
