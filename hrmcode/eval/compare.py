"""``hrmcode eval compare RUN_A RUN_B``: which cases regressed and which improved from A to B.

A case's score is the fraction of its samples that passed (HumanEval, LiveCodeBench), 1/0 for
whether it passed in any try (polyglot), or 1/0 for whether the attempt resolved its task (swe:
a case is one attempt, ``<task id>@<attempt>``). Cases present in only one run are counted, not compared.
Runs of different benchmarks are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hrmcode.artifacts import Artifact, load_artifact
from hrmcode.errors import UsageError
from hrmcode.jsonl import read_jsonl


def case_score(record: dict) -> float:
    if "resolved" in record:
        return 1.0 if record["resolved"] else 0.0
    if "tests_outcomes" in record:
        return 1.0 if any(record["tests_outcomes"]) else 0.0
    n = record.get("n", 0)
    return record.get("correct", 0) / n if n else 0.0


def load_runs(run_a: str | Path, run_b: str | Path, workspace: Path | str | None = None) -> tuple[Artifact, Artifact]:
    """Two eval runs of one benchmark (``UsageError`` for runs of two)."""
    a = load_artifact(run_a, "eval-run", workspace)
    b = load_artifact(run_b, "eval-run", workspace)
    bench_a, bench_b = a.params.get("bench"), b.params.get("bench")
    if bench_a != bench_b:
        raise UsageError(f"{a.path} is a {bench_a} run and {b.path} a {bench_b} run", "compare runs of one benchmark")
    return a, b


def compare_runs(run_a: str | Path, run_b: str | Path, workspace: Path | str | None = None) -> dict[str, Any]:
    a, b = load_runs(run_a, run_b, workspace)
    bench_a = a.params.get("bench")
    scores_a = {r["id"]: case_score(r) for r in read_jsonl(a.file("results.jsonl"))}
    scores_b = {r["id"]: case_score(r) for r in read_jsonl(b.file("results.jsonl"))}
    common = sorted(set(scores_a) & set(scores_b))
    regressed = [{"id": i, "a": scores_a[i], "b": scores_b[i]} for i in common if scores_b[i] < scores_a[i]]
    improved = [{"id": i, "a": scores_a[i], "b": scores_b[i]} for i in common if scores_b[i] > scores_a[i]]
    summary_a, summary_b = a.stats, b.stats
    return {
        "bench": bench_a, "run_a": str(a.path), "run_b": str(b.path),
        "score_a": summary_a.get("score"), "score_b": summary_b.get("score"),
        "compared": len(common), "regressed": regressed, "improved": improved,
        "unchanged": len(common) - len(regressed) - len(improved),
        "only_in_a": sorted(set(scores_a) - set(scores_b)), "only_in_b": sorted(set(scores_b) - set(scores_a)),
    }
