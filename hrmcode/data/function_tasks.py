"""Small Python function tasks with assert-based tests, written by a seeded generator: the tasks
``hrmcode train --stage rl`` learns from (never an evaluated benchmark).

Each task is a one-line function of a family (``add_3``: return x plus 3; ``is_div_4``: whether
x is divisible by 4; ``repeat_2``: s repeated 2 times ...) with one constant 2..9, in
HumanEval's shape so every consumer of function tasks takes it as is: kind ``function``, the stub
(signature and docstring) as ``prompt`` and ``solution.py``, ``tests.files["test.py"]`` a
``check(candidate)`` of three asserts on seeded inputs, ``tests.entry_point`` the function, the
reference in ``solution.files``. ``metadata`` holds the family, the constant and the ``split``
(``train`` or ``heldout``, seeded, by task): a held-out task never shares its (family,
constant) with a training one.

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
from hrmcode.errors import UsageError

SOURCE = "function-tasks"
CONSTANTS = range(2, 10)


@dataclass(frozen=True)
class Family:
    """One kind of function: its name and docstring (with ``{k}``), argument, body and inputs."""

    name: str
    arg: str
    doc: str
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
    Family("add_{k}", "x", "Return x plus {k}.", "x + {k}", _int),
    Family("sub_{k}", "x", "Return x minus {k}.", "x - {k}", _int),
    Family("mul_{k}", "x", "Return x times {k}.", "x * {k}", _int),
    Family("mod_{k}", "x", "Return x modulo {k}.", "x % {k}", _int),
    Family("is_div_{k}", "x", "Return whether x is divisible by {k}.", "x % {k} == 0", _int),
    Family("above_{k}", "x", "Return whether x is greater than {k}.", "x > {k}", _int),
    Family("min_{k}", "x", "Return the smaller of x and {k}.", "min(x, {k})", _int),
    Family("max_{k}", "x", "Return the larger of x and {k}.", "max(x, {k})", _int),
    Family("repeat_{k}", "s", "Return s repeated {k} times.", "s * {k}", _word),
    Family("item_{k}", "xs", "Return item {k} of the list xs.", "xs[{k}]", _ints),
)


def _task(family: Family, k: int, split: str, rng: random.Random) -> Task:
    name = family.name.format(k=k)
    stub = f'def {name}({family.arg}):\n    """{family.doc.format(k=k)}"""\n'
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
    """Every (family, constant) of the first ``families`` families as a task, the held-out ones chosen
    by ``seed`` (``heldout_fraction`` of each family, at least one); training tasks first."""
    if not 1 <= families <= len(FAMILIES):
        raise UsageError(f"families must be 1..{len(FAMILIES)}, got {families}", "pick fewer families")
    if not 0 < heldout_fraction < 1:
        raise UsageError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}", "use e.g. 0.25")
    rng = random.Random(seed)
    train: list[Task] = []
    heldout: list[Task] = []
    for family in FAMILIES[:families]:
        constants = list(CONSTANTS)
        rng.shuffle(constants)
        held = set(constants[:max(1, round(len(constants) * heldout_fraction))])
        for k in sorted(constants):
            split = "heldout" if k in held else "train"
            (heldout if split == "heldout" else train).append(_task(family, k, split, rng))
    return train + heldout
