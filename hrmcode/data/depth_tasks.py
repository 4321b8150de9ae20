"""Program-execution tasks of controlled depth, for the model-science experiment (docs/model-science.md).

Three kinds of tiny program in a language of its own, every value a digit and every operation
mod 10, each ending in ``=`` and a one-digit answer (``DepthTask.answer``):

- ``straight``: three variables set, then ``depth + 2`` update lines ``x=y+k;`` / ``x=y*k;`` in random
  order, then the query ``?x=``. ``depth`` of them form the chain the queried variable's value
  flows through (each chain line reads the variable the previous chain line wrote); the other two
  are distractors that never overwrite a live chain variable::

      a=2;b=9;c=5;d=c*3;b=b+1;e=d+4;a=b*7;d=e+8;?d=   (depth 3: 5 -> 5 -> 9 -> 7)

- ``loop``: three variables set, then ``r<n>{x=y+k;y=x*m;}`` repeats its two-line body ``n`` times,
  then ``?y=``; ``depth`` is the number of iterations ``n`` (each iteration is two
  dependent updates)::

      a=7;b=0;c=7;r3{b=a+1;a=b*7;}?a=   (depth 3)

- ``arith``: a fully parenthesised expression of ``depth`` operations evaluated inside out::

      (((1+5)+6)*3)=   (depth 3)

No shortcut: additions add 1-9 and multiplications multiply by 3, 7 or 9 (the units mod 10), so
each step is a bijection of the digits and the answer changes whenever the chain's first value
changes: it is a function of every dependent step, never of the last line alone
(tests/data/test_depth_tasks.py checks this, and that ``dependency_depth`` and ``execute``, an
interpreter and a data-flow analysis of the text written independently of the generator, agree
with the generator on every example).

Tokens are characters of ``VOCAB`` (digits, letters a-e, ``= + * ; ( ) r { } ?``) plus ``<pad>``
and ``<bos>``; ``encode`` gives the token ids of one example, the answer last. Generation is
seeded and pure Python (``random.Random``): ``test_set(depth, n, seed)`` is the same list on every
machine. What it does not guarantee: that a test program never appears in a training stream, unless
the stream is given the test programs to skip (``train_stream(..., exclude=...)``); low depths
have few distinct programs (a depth-1 ``arith`` program is one of 120: 10 digits x 12 operations).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from hrmcode.errors import UsageError

KINDS = ("straight", "loop", "arith")
MAX_DEPTH = 8
DISTRACTORS = 2  # update lines of a straight-line program off the queried chain
INIT_VARS = "abc"
VARS = "abcde"
UNITS = (3, 7, 9)  # multipliers that are bijections mod 10 (1 would be a no-op)
VOCAB = ("<pad>", "<bos>", *"0123456789", *VARS, "=", "+", "*", ";", "(", ")", "r", "{", "}", "?")
PAD, BOS = 0, 1
TOKEN_ID = {token: index for index, token in enumerate(VOCAB)}


@dataclass(frozen=True)
class DepthTask:
    kind: str
    depth: int
    program: str  # ends in "="
    answer: str  # one digit

    @property
    def text(self) -> str:
        return self.program + self.answer


def _operation(rng: random.Random) -> tuple[str, int]:
    if rng.random() < 0.5:
        return "+", rng.randint(1, 9)
    return "*", rng.choice(UNITS)


def apply(value: int, op: str, k: int) -> int:
    return (value + k) % 10 if op == "+" else (value * k) % 10


def straight(rng: random.Random, depth: int) -> DepthTask:
    """``depth`` chain lines and DISTRACTORS others, in random order (module docstring)."""
    env = {v: rng.randint(0, 9) for v in INIT_VARS}
    head = "".join(f"{v}={env[v]};" for v in INIT_VARS)
    lines_total = depth + DISTRACTORS
    chain_at = set(rng.sample(range(lines_total), depth))
    live = rng.choice(INIT_VARS)  # the chain variable whose value the next chain line reads
    lines = []
    for position in range(lines_total):
        op, k = _operation(rng)
        if position in chain_at:
            target, source = rng.choice(VARS), live
            live = target
        else:  # a distractor: reads anything set, never overwrites the live chain variable
            target = rng.choice([v for v in VARS if v != live])
            source = rng.choice(sorted(env))
        env[target] = apply(env[source], op, k)
        lines.append(f"{target}={source}{op}{k};")
    return DepthTask("straight", depth, f"{head}{''.join(lines)}?{live}=", str(env[live]))


def loop(rng: random.Random, iterations: int) -> DepthTask:
    """``r<n>{x=y+k;y=x*m;}`` over three set variables; asks for y (the body's last write)."""
    env = {v: rng.randint(0, 9) for v in "abc"}
    head = "".join(f"{v}={env[v]};" for v in "abc")
    x, y = rng.sample("abc", 2)
    k, m = rng.randint(1, 9), rng.choice(UNITS)
    for _ in range(iterations):
        env[x] = apply(env[y], "+", k)
        env[y] = apply(env[x], "*", m)
    return DepthTask("loop", iterations, f"{head}r{iterations}{{{x}={y}+{k};{y}={x}*{m};}}?{y}=", str(env[y]))


def arith(rng: random.Random, depth: int) -> DepthTask:
    """``depth`` nested operations on a digit, e.g. ``((3+4)*7)=``."""
    value = rng.randint(0, 9)
    expression = str(value)
    for _ in range(depth):
        op, k = _operation(rng)
        expression = f"({expression}{op}{k})"
        value = apply(value, op, k)
    return DepthTask("arith", depth, f"{expression}=", str(value))


MAKERS = {"straight": straight, "loop": loop, "arith": arith}


def make_task(rng: random.Random, kind: str, depth: int) -> DepthTask:
    if kind not in MAKERS:
        raise UsageError(f"unknown depth-task kind {kind!r}", f"use one of {', '.join(KINDS)}")
    if not 1 <= depth <= MAX_DEPTH:
        raise UsageError(f"task depth must be in 1..{MAX_DEPTH}, got {depth}", "pick a depth from 1 to 8")
    return MAKERS[kind](rng, depth)


def test_set(depth: int, n: int = 500, seed: int = 0) -> list[DepthTask]:
    """``n`` test examples of one depth, the kinds in turn (straight, loop, arith, straight, ...)."""
    rng = random.Random(f"depth-tasks/test/{seed}/{depth}")
    return [make_task(rng, KINDS[i % len(KINDS)], depth) for i in range(n)]


def train_stream(max_depth: int, seed: int, exclude: frozenset[str] = frozenset()) -> Iterator[DepthTask]:
    """An endless stream of training examples, kind and depth (1..``max_depth``) uniform; programs
    in ``exclude`` (e.g. the test programs) are skipped."""
    rng = random.Random(f"depth-tasks/train/{seed}")
    while True:
        task = make_task(rng, rng.choice(KINDS), rng.randint(1, max_depth))
        if task.program not in exclude:
            yield task


def encode(task: DepthTask) -> list[int]:
    """``<bos>`` then one token per character; the answer digit is the last token."""
    return [BOS] + [TOKEN_ID[c] for c in task.text]


def decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids if i not in (PAD, BOS))


# -- an interpreter and a data-flow analysis of the text, independent of the generator ---------
_STATEMENT = re.compile(r"([a-f])=([a-f])([+*])(\d)")
_INIT = re.compile(r"([a-f])=(\d)")


def _statements(program: str) -> tuple[dict[str, int], list[tuple[str, str, str, int]], str]:
    """(initial values, update statements in execution order with loops unrolled, queried variable)."""
    body, query = program.rstrip("=").rsplit("?", 1)
    init: dict[str, int] = {}
    updates: list[tuple[str, str, str, int]] = []
    for part in re.findall(r"r\d+\{[^}]*\}|[^;]+;", body):
        if part.startswith("r"):
            count, inner = re.fullmatch(r"r(\d+)\{(.*)\}", part).groups()
            steps = [_STATEMENT.fullmatch(s).groups() for s in inner.split(";") if s]
            updates += [(t, s, op, int(k)) for _ in range(int(count)) for t, s, op, k in steps]
        elif (match := _STATEMENT.fullmatch(part[:-1])) is not None:
            t, s, op, k = match.groups()
            updates.append((t, s, op, int(k)))
        else:
            name, value = _INIT.fullmatch(part[:-1]).groups()
            init[name] = int(value)
    return init, updates, query


def _arith_tokens(program: str) -> list[tuple[str, int]]:
    expression = program.rstrip("=")
    ops = re.findall(r"([+*])(\d)\)", expression)
    return [(op, int(k)) for op, k in ops]


def execute(program: str) -> int:
    """The program's answer, computed from its text."""
    if program.startswith("("):
        value = int(re.match(r"\(*(\d)", program).group(1))
        for op, k in _arith_tokens(program):
            value = apply(value, op, k)
        return value
    if program[0].isdigit():  # a bare digit is an arith program of depth 0
        return int(program[0])
    env, updates, query = _statements(program)
    for target, source, op, k in updates:
        env[target] = apply(env[source], op, k)
    return env[query]


def dependency_depth(program: str) -> int:
    """How many dependent operations the answer goes through: the longest data-flow path into
    the queried value (loops unrolled: two per iteration) or the expression's operations."""
    if program.startswith("("):
        return len(_arith_tokens(program))
    init, updates, query = _statements(program)
    depth = {name: 0 for name in init}
    for target, source, _, _ in updates:
        depth[target] = depth[source] + 1
    return depth[query]


def steps_per_depth(kind: str) -> int:
    """Data-flow operations per unit of ``depth``: two for a loop iteration, else one."""
    return 2 if kind == "loop" else 1
