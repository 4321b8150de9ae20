"""The depth tasks of the model-science experiment: answers and depths are what the program text
says (an interpreter and a data-flow analysis of the text, not the generator's bookkeeping), the
answer depends on the whole chain (no shortcut from the last line), and generation is seeded."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict

import pytest

from hrmcode.data import depth_tasks as DT
from hrmcode.errors import UsageError

DEPTHS = range(1, DT.MAX_DEPTH + 1)


@pytest.fixture(scope="module")
def tests_by_depth() -> dict[int, list[DT.DepthTask]]:
    return {d: DT.test_set(d, 500, seed=0) for d in DEPTHS}


def test_every_test_example_has_the_answer_and_depth_its_text_gives(tests_by_depth):
    for depth, tasks in tests_by_depth.items():
        assert len(tasks) == 500
        assert Counter(t.kind for t in tasks) == {"straight": 167, "loop": 167, "arith": 166}
        for task in tasks:
            assert task.depth == depth
            assert str(DT.execute(task.program)) == task.answer, task
            assert DT.dependency_depth(task.program) == depth * DT.steps_per_depth(task.kind), task


def _chain_lines(program: str) -> set[int]:
    """Indexes of the update lines the queried value flows through, found backwards from the query."""
    _, updates, query = DT._statements(program)
    wanted, chain = query, set()
    for index in range(len(updates) - 1, -1, -1):
        if updates[index][0] == wanted:
            chain.add(index)
            wanted = updates[index][1]
    return chain


def test_straight_programs_have_two_distractors_and_every_chain_line_matters():
    rng = random.Random(3)
    for depth in DEPTHS:
        for _ in range(50):
            task = DT.make_task(rng, "straight", depth)
            updates = re.findall(r"[a-e]=[a-e][+*]\d;", task.program)
            assert len(updates) == depth + DT.DISTRACTORS
            chain = _chain_lines(task.program)
            assert len(chain) == depth
            lines = task.program.split(";")
            offset = len(DT.INIT_VARS)
            for index in range(len(updates)):  # a distractor's constant changed: the same answer
                line = lines[offset + index]
                other = line[:-1] + ("4" if line[-1] != "4" else "1") if line[-2] == "+" else line[:-1] + \
                    ("3" if line[-1] != "3" else "7")
                changed = ";".join(lines[:offset + index] + [other] + lines[offset + index + 1:])
                if index not in chain:
                    assert DT.execute(changed) == int(task.answer), (task, changed)
                elif line[-2] == "+":  # (x*3 and x*7 agree for x = 0 and 5; a different addend never does)
                    assert DT.execute(changed) != int(task.answer), (task, changed)


def _perturb_start(task: DT.DepthTask) -> str:
    """The program with the first value of its chain changed by +1 (mod 10)."""
    if task.kind == "arith":
        first = re.search(r"\d", task.program)
        return task.program[:first.start()] + str((int(first.group()) + 1) % 10) + task.program[first.end():]
    init, updates, query = DT._statements(task.program)
    # follow the queried value back to the initial variable it starts from
    source = query
    for target, read, _, _ in reversed(updates):
        if target == source:
            source = read
    assert source in init
    return re.sub(rf"(?<![a-e=]){source}=(\d);", lambda m: f"{source}={(int(m.group(1)) + 1) % 10};",
                  task.program, count=1)


def test_the_answer_changes_with_the_start_of_the_chain(tests_by_depth):
    """Every step is a bijection: the answer is a function of the chain's first value, so neither
    the last line nor any suffix of the chain gives it."""
    for tasks in tests_by_depth.values():
        for task in tasks[:60]:
            changed = _perturb_start(task)
            assert changed != task.program
            assert DT.execute(changed) != int(task.answer), (task, changed)


def test_the_last_line_and_the_query_predict_the_answer_at_chance_level(tests_by_depth):
    """The best guess from the last update line and the queried variable alone, fitted on 6000
    other programs of the same depth, scores near chance (0.1) on the test set."""
    rng = random.Random(11)
    for depth in (2, 5, 8):
        table: dict[tuple, Counter] = defaultdict(Counter)
        for _ in range(6000):
            task = DT.make_task(rng, "straight", depth)
            table[(task.program.rsplit(";", 2)[-2], task.program[-2])][task.answer] += 1
        tests = [t for t in tests_by_depth[depth] if t.kind == "straight"]
        right = 0
        for task in tests:
            seen = table.get((task.program.rsplit(";", 2)[-2], task.program[-2]))
            right += int(seen is not None and seen.most_common(1)[0][0] == task.answer)
        assert right / len(tests) < 0.2, (depth, right, len(tests))


def test_generation_is_seeded_and_the_training_stream_skips_excluded_programs():
    assert DT.test_set(4, 30, seed=0) == DT.test_set(4, 30, seed=0)
    assert DT.test_set(4, 30, seed=0) != DT.test_set(4, 30, seed=1)
    excluded = frozenset(t.program for d in (1, 2) for t in DT.test_set(d, 500, seed=0))
    stream = DT.train_stream(5, seed=0, exclude=excluded)
    drawn = [next(stream) for _ in range(2000)]
    assert not any(t.program in excluded for t in drawn)
    assert {t.depth for t in drawn} == {1, 2, 3, 4, 5}
    assert {t.kind for t in drawn} == set(DT.KINDS)


def test_tokens_are_characters_and_the_answer_is_the_last_one():
    task = DT.DepthTask("arith", 2, "((3+4)*7)=", "9")
    ids = DT.encode(task)
    assert ids[0] == DT.BOS and len(ids) == 1 + len(task.text)
    assert DT.VOCAB[ids[-1]] == "9"
    assert DT.decode(ids) == task.text
    assert DT.execute(task.program) == 9
    lengths = [len(DT.encode(t)) for d in DEPTHS for t in DT.test_set(d, 30)]
    assert max(lengths) <= 80


@pytest.mark.parametrize("kind, depth", [("nope", 3), ("loop", 0), ("arith", 9)])
def test_bad_kind_or_depth_is_a_usage_error(kind, depth):
    with pytest.raises(UsageError):
        DT.make_task(random.Random(0), kind, depth)
