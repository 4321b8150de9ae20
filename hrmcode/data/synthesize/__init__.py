"""``hrmcode synthesize``: tasks -> training examples at five levels (plan, edit, tool, coord, solve).

One module per level holds its rules (``plan``, ``edit``, ``tool``, ``coord``, ``solve``);
``context`` turns a task into the fix they read; ``pipeline`` runs them resumably and in
parallel. ``synthesize()`` is the one library entry point the CLI calls.

Sources: a ``tasks`` artifact by name (the newest fetched version, e.g. ``swe-smith``) or path,
or ``repo:PATH`` (bugs injected into a local git repository, see ``hrmcode.data.bugs``), or an
``hrmcode eval swe`` run directory (its trajectories, with their rewards, fetched first as source
``eval-swe`` into the workspace as ``fetch/eval-swe-<run key>``, as ``fetch eval-swe --from RUN``
would, and reused while the run is unchanged, so a rerun resumes; the ``tool`` level makes one
multi-turn example of each trajectory). The
analysis of those tasks is taken from the workspace (the newest ``analysis`` artifact whose
input is exactly this tasks artifact), else ``--analysis``, else ``analyze`` is run in-process
and its artifact written to the workspace. Guarantees are those of ``pipeline``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hrmcode.artifacts import Artifact, latest_in_workspace, load_artifact, read_manifest, workspace_root
from hrmcode.data.bugs import BUG_TIMEOUT_S, MAX_BUGS, repo_tasks
from hrmcode.data.bugs.lm import ChatClient
from hrmcode.data.examples import LEVELS
from hrmcode.data.sources import fetch
from hrmcode.data.sources.eval_swe import is_eval_swe_run, run_key
from hrmcode.data.synthesize.pipeline import SynthesisResult, run_synthesis
from hrmcode.errors import ArtifactError, UsageError
from hrmcode.options import option
from hrmcode.reporting import reporter

__all__ = ["synthesize", "SynthesisResult", "SynthesizeOptions", "find_analysis", "load_profiles"]

REPO_PREFIX = "repo:"


@dataclass(frozen=True)
class SynthesizeOptions:
    """``synthesize()``'s own options: their defaults, help text and ranges (``hrmcode synthesize``
    generates its options from these fields)."""

    analysis: str | Path | None = option(None, "The analysis artifact to use (default: the newest one of these tasks "
                                               "in the workspace; analyze runs in-process when there is none).")
    heldout_fraction: float = option(0.1, "Fraction of TASKS (not examples) put in the held-out split.",
                                     min=0.0, max=0.99)
    test_cmd: str | None = option(None, "repo:PATH only: the test command, run in the repository root: pytest "
                                        "(-rA is added), go test, cargo test or jest (Go, Rust and jest repositories "
                                        "default to go test ./..., cargo test --offline, the package's jest script).")
    max_bugs: int | None = option(None, f"repo:PATH only: most candidate bugs to try (default {MAX_BUGS}).", min=1)
    bug_timeout_s: float | None = option(None, f"repo:PATH only: seconds per test run of one candidate "
                                               f"(default {BUG_TIMEOUT_S:g}).", flags=("--bug-timeout",), min=1.0)
    llm: str | None = option(None, "repo:PATH only: an OpenAI-compatible server (openai:BASE_URL) whose model writes "
                                   "the problem statements; a text that leaks the fix falls back to a template "
                                   "(templates without --llm).")
    llm_model: str | None = option(None, "repo:PATH only: the model name the --llm server serves.")
    lm_bugs: int | None = option(None, "repo:PATH with --llm: functions the LM rewrites with a bug of its own "
                                       "(SWE-smith's lm_modify), tried first and validated like the others.", min=1)
    combine: bool = option(False, "repo:PATH only: also make SWE-smith's combine_file tasks, kept bugs of one file "
                                  "merged in pairs and validated again (extra test runs beyond --max-bugs).")
    env: str | None = option(None, "repo:PATH only: the test environment: auto (default; the test dependencies the "
                                   "repository declares, installed once with pip outside the sandbox into "
                                   "<workspace>/envs and mounted read-only), none, or a requirements file.")


def find_analysis(tasks: Artifact, workspace: Path | str | None = None) -> Artifact | None:
    """The newest analysis artifact in the workspace made from exactly ``tasks`` (by manifest sha256)."""
    root = workspace_root(workspace) / "analyze"
    if not root.is_dir():
        return None
    wanted = tasks.manifest_sha256()
    found: list[tuple[str, Path]] = []
    for manifest_path in root.glob("*/*/manifest.json"):
        try:
            manifest = read_manifest(manifest_path.parent)
        except ArtifactError:
            continue
        if manifest.get("kind") != "analysis":
            continue
        if any(entry.get("manifest_sha256") == wanted for entry in manifest.get("inputs", [])):
            found.append((manifest.get("created", ""), manifest_path.parent))
    if not found:
        return None
    return load_artifact(max(found)[1], "analysis")


def _run_analysis(tasks: Artifact, workspace: Path | str | None) -> Artifact:
    from hrmcode.data.analyze import analyze

    reporter().log(f"no analysis of {tasks.path} in the workspace: running analyze")
    artifact, _summary = analyze(tasks.path, workspace=workspace)
    return artifact


def load_profiles(analysis: Artifact) -> dict[str, dict]:
    """task id -> its analysis row (plain Python values)."""
    import polars as pl

    frame = pl.read_parquet(analysis.file("analysis.parquet"))
    key = "task_id" if "task_id" in frame.columns else "id"
    if key not in frame.columns:
        raise ArtifactError(f"{analysis.path}/analysis.parquet has no id column", "rerun `hrmcode analyze`")
    return {row[key]: row for row in frame.to_dicts()}


def synthesize(
    source: str,
    *,
    out: Path | str | None = None,
    workspace: Path | str | None = None,
    analysis: str | Path | None = SynthesizeOptions.analysis,
    seed: int = 0,
    heldout_fraction: float = SynthesizeOptions.heldout_fraction,
    levels: tuple[str, ...] = LEVELS,
    jobs: int = 1,
    redo: bool = False,
    limit: int | None = None,
    dry_run: bool = False,
    test_cmd: str | None = SynthesizeOptions.test_cmd,
    max_bugs: int | None = SynthesizeOptions.max_bugs,
    bug_timeout_s: float | None = SynthesizeOptions.bug_timeout_s,
    llm: str | None = SynthesizeOptions.llm,
    llm_model: str | None = SynthesizeOptions.llm_model,
    lm_bugs: int | None = SynthesizeOptions.lm_bugs,
    combine: bool = SynthesizeOptions.combine,
    env: str | None = SynthesizeOptions.env,
) -> SynthesisResult:
    extra: dict = {}
    bugs: dict | None = None  # repo:PATH's own report
    if source.startswith(REPO_PREFIX):
        for flag, value in (("--llm-model", llm_model), ("--lm-bugs", lm_bugs)):
            if value and not llm:
                raise UsageError(f"{flag} needs --llm", "e.g. --llm openai:http://127.0.0.1:8000/v1 --llm-model NAME")
        client = ChatClient(llm, llm_model, seed=seed) if llm else None
        result = repo_tasks(source[len(REPO_PREFIX):], test_cmd=test_cmd, seed=seed,
                            max_bugs=MAX_BUGS if max_bugs is None else max_bugs,
                            timeout_s=BUG_TIMEOUT_S if bug_timeout_s is None else bug_timeout_s,
                            workspace=workspace, dry_run=dry_run, jobs=jobs, redo=redo, llm=client,
                            lm_bugs=lm_bugs or 0, combine=combine, env=env or "auto")
        if result.artifact is None:
            return SynthesisResult(None, {"bugs": result.stats}, dry_run=True)
        tasks = result.artifact
        bugs = result.stats
        extra = {"repo": source[len(REPO_PREFIX):], "test_cmd": test_cmd, **(client.describe() if client else {})}
    else:
        given = [flag for flag, value in (("--test-cmd", test_cmd), ("--max-bugs", max_bugs),
                                          ("--bug-timeout", bug_timeout_s), ("--llm", llm),
                                          ("--llm-model", llm_model), ("--lm-bugs", lm_bugs),
                                          ("--combine", combine or None), ("--env", env)) if value is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise UsageError(f"{', '.join(given)} only {verb} to --source repo:PATH, not to {source}",
                             f"drop {', '.join(given)}, or inject bugs with --source repo:PATH")
        if is_eval_swe_run(source):
            fetched_name = f"eval-swe-{run_key(source)}"
            latest = latest_in_workspace("fetch", fetched_name, workspace)
            if latest is not None:
                tasks = load_artifact(latest, "tasks")
            else:
                fetched = fetch("eval-swe", from_path=source, workspace=workspace, name=fetched_name, dry_run=dry_run)
                if fetched.artifact is None:
                    return SynthesisResult(None, {"trajectories": fetched.records, "fetch": fetched.stats},
                                           dry_run=True)
                tasks = fetched.artifact
        else:
            tasks = load_artifact(source, "tasks", workspace)
    name = tasks.name
    if analysis is not None:
        analysis_artifact = load_artifact(analysis, "analysis", workspace)
    else:
        analysis_artifact = find_analysis(tasks, workspace)
        if analysis_artifact is None:
            if dry_run:
                return SynthesisResult(None, {"tasks": str(tasks.path), "analysis": "would run analyze first"}, dry_run=True)
            analysis_artifact = _run_analysis(tasks, workspace)
    profiles = load_profiles(analysis_artifact)
    synthesis = run_synthesis(
        tasks, analysis_artifact, profiles, out=out, workspace=workspace, seed=seed,
        heldout_fraction=heldout_fraction, levels=tuple(levels), jobs=jobs, redo=redo, limit=limit,
        dry_run=dry_run, name=name, extra_params=extra,
    )
    if bugs is not None:  # repo:PATH: how the bugs were found and judged, beside the examples' counts
        synthesis.stats["bugs"] = bugs
    return synthesis
