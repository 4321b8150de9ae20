"""The hostile corpus: programs that try to forge a HumanEval or LiveCodeBench verdict.

Each file in ``tests/eval/hostile/`` is one attack: a header of ``# key: value`` lines (``attack``:
what it tries; ``task``: the HumanEval task id or LiveCodeBench question id it answers; optional
``victim``: a task whose wrong answer rides in the same batch and must stay failed; optional
``parity``: the verdict parity mode gives when a defence is strict-only), then the completion
(HumanEval: the text after the prompt) or the program (LiveCodeBench). Every attack must score a
failure in strict mode, in the local sandbox and in docker where a Docker engine is up; the
genuine solutions of the same tasks must pass in the same setting, so a failure means the defence
held, not that the harness is broken.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hrmcode.eval.backends import OracleBackend
from hrmcode.eval.humaneval import HumanEval, builtin_tasks
from hrmcode.eval.livecodebench import LiveCodeBench
from tests._sandboxes import BACKENDS, read_attack, real_sandbox
from tests.eval.conftest import load_fixture_tasks

CORPUS = Path(__file__).parent / "hostile"
WRONG_HUMANEVAL = "    return None\n"
WRONG_LCB = "print(0)\n"
TIMEOUT_S = 2.0


def _parse(path: Path) -> dict:
    header, lines = read_attack(path)
    return {**header, "code": "".join(lines), "bench": "humaneval" if path.name.startswith("he_") else "livecodebench"}


ATTACKS = sorted(CORPUS.glob("*.py"))


@pytest.fixture(scope="module", params=BACKENDS)
def hostile_sandbox(request):
    """bubblewrap, and docker where an engine is up (HRMCODE_REQUIRE_DOCKER=1 makes its absence fail)."""
    return real_sandbox(request.param)


@pytest.fixture(scope="module")
def humaneval_tasks():
    return {t.metadata["task_id"]: t for t in builtin_tasks()}


@pytest.fixture(scope="module")
def lcb_tasks():
    return {t.metadata["question_id"]: t for t in load_fixture_tasks("lcb_tasks.jsonl")}


def test_the_corpus_is_big_enough():
    attacks = [_parse(p) for p in ATTACKS]
    assert len(attacks) >= 20
    assert {a["bench"] for a in attacks} == {"humaneval", "livecodebench"}
    assert all(a.get("attack") and a.get("task") for a in attacks)


def _grade(attack: dict, sandbox, mode: str, humaneval_tasks, lcb_tasks) -> list[bool]:
    """Whether the attack (first) and its victim (second, if any) passed, graded in one batch."""
    if attack["bench"] == "humaneval":
        samples = [(humaneval_tasks[attack["task"]], attack["code"])]
        if "victim" in attack:
            samples.append((humaneval_tasks[attack["victim"]], WRONG_HUMANEVAL))
        verdicts, _ = HumanEval(OracleBackend(), sandbox, timeout_s=TIMEOUT_S, mode=mode).run_samples(samples, worker=0)
        return [v == "passed" for v in verdicts]
    samples = [(lcb_tasks[attack["task"]], attack["code"])]
    if "victim" in attack:
        samples.append((lcb_tasks[attack["victim"]], WRONG_LCB))
    graded = LiveCodeBench(OracleBackend(), sandbox, timeout_s=TIMEOUT_S, mode=mode).grade_samples(samples, worker=0)
    return [g["passed"] for g in graded]


@pytest.mark.parametrize("path", ATTACKS, ids=[p.stem for p in ATTACKS])
def test_attack_fails_in_strict_mode(path, hostile_sandbox, humaneval_tasks, lcb_tasks):
    attack = _parse(path)
    passed = _grade(attack, hostile_sandbox, "strict", humaneval_tasks, lcb_tasks)
    assert passed == [False] * len(passed), f"{path.name}: {attack['attack']}"
    if "parity" in attack:  # a strict-only defence: parity mode grades as upstream does
        assert _grade(attack, hostile_sandbox, "parity", humaneval_tasks, lcb_tasks)[0] is (attack["parity"] == "pass")


def test_genuine_answers_to_the_attacked_tasks_pass(hostile_sandbox, humaneval_tasks, lcb_tasks):
    attacks = [_parse(p) for p in ATTACKS]
    he_ids = sorted({a[k] for a in attacks if a["bench"] == "humaneval" for k in ("task", "victim") if k in a})
    lcb_ids = sorted({a[k] for a in attacks if a["bench"] == "livecodebench" for k in ("task", "victim") if k in a})
    he = HumanEval(OracleBackend(), hostile_sandbox, timeout_s=TIMEOUT_S, mode="strict")
    verdicts, hardened = he.run_samples([(humaneval_tasks[i], humaneval_tasks[i].metadata["canonical_solution"])
                                         for i in he_ids], worker=0)
    assert verdicts == ["passed"] * len(he_ids) and hardened
    lcb = LiveCodeBench(OracleBackend(), hostile_sandbox, timeout_s=TIMEOUT_S, mode="strict", comparator="tolerant")
    graded = lcb.grade_samples([(lcb_tasks[i], lcb_tasks[i].solution.files["solution.py"]) for i in lcb_ids], worker=0)
    assert [g["passed"] for g in graded] == [True] * len(lcb_ids)
    assert all(g["hardened"] for g in graded)


class _Counting:
    """A sandbox that counts its launches."""

    def __init__(self, inner):
        self.inner, self.name, self.launches = inner, inner.name, 0

    def run(self, *args, **kwargs):
        self.launches += 1
        return self.inner.run(*args, **kwargs)


def test_the_driver_survives_its_candidates(hostile_sandbox, humaneval_tasks, lcb_tasks):
    """Signals, rlimits and pidfds aimed at the driver or the fork server are refused (x86_64), so a
    batch holding an attack is graded in one launch, its genuine batch-mates passing."""
    counting = _Counting(hostile_sandbox)
    genuine = humaneval_tasks["HumanEval/2"]
    for name in ("he_stop_driver.py", "he_kill_driver.py", "he_kill_fork_server.py", "he_signal_driver.py"):
        attack = _parse(CORPUS / name)
        samples = [(humaneval_tasks[attack["task"]], attack["code"]), (genuine, genuine.metadata["canonical_solution"])]
        verdicts, _ = HumanEval(OracleBackend(), counting, timeout_s=TIMEOUT_S, mode="strict").run_samples(samples, 0)
        assert verdicts[0] != "passed" and verdicts[1] == "passed", name
    assert counting.launches == 4
    attack = _parse(CORPUS / "lcb_kill_everything.py")
    victim = lcb_tasks[attack["victim"]]
    graded = LiveCodeBench(OracleBackend(), counting, timeout_s=TIMEOUT_S, mode="strict").grade_samples(
        [(lcb_tasks[attack["task"]], attack["code"]), (victim, victim.solution.files["solution.py"])], 0)
    assert [g["passed"] for g in graded] == [False, True] and counting.launches == 5
