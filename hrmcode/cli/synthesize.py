"""``hrmcode synthesize --source NAME|ARTIFACT|repo:PATH``: tasks -> an ``examples`` artifact."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hrmcode.cli._common import DryRunOpt, JobsOpt, LimitOpt, OutOpt, RedoOpt, SeedOpt, examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._output import out
from hrmcode.data.examples import LEVELS
from hrmcode.errors import UsageError


def register(app: typer.Typer) -> None:
    @app.command(
        "synthesize",
        help="Turn tasks into training examples at five levels: plan (H), edit (L), tool, coord, solve. "
        "Every target comes from the task's real fix, reference, trajectory or analysis; the train/held-out "
        "split is by task. Resumable (rerun with the same --out) and parallel (-j).",
        epilog=examples_epilog(
            "hrmcode synthesize --source swe-smith",
            "hrmcode synthesize --source polyglot --levels plan,edit,solve -j 2",
            "hrmcode synthesize --source swe-smith-trajectories --levels tool",
            "hrmcode synthesize --source repo:./mypkg --test-cmd 'python -m pytest -rA tests' --max-bugs 20",
            "hrmcode synthesize --source hrmcode-artifacts/fetch/humaneval/20250101-120000-abc123 -o he-examples",
        ),
    )
    @handle_errors
    def synthesize(
        ctx: typer.Context,
        source: Annotated[
            str,
            typer.Option("--source", "-s", show_default=False,
                         help="A tasks artifact: its name in the workspace (newest version, e.g. swe-smith), its "
                              "directory, or repo:PATH to inject bugs into a local git repository."),
        ],
        out_dir: OutOpt = None,
        analysis: Annotated[
            Optional[str],
            typer.Option("--analysis", help="The analysis artifact to use (default: the newest one of these tasks in "
                                            "the workspace; analyze runs in-process when there is none)."),
        ] = None,
        levels: Annotated[
            str, typer.Option("--levels", help=f"Comma-separated levels to emit, from {','.join(LEVELS)}.")
        ] = ",".join(LEVELS),
        heldout_fraction: Annotated[
            float, typer.Option("--heldout-fraction", min=0.0, max=0.99,
                                help="Fraction of TASKS (not examples) put in the held-out split.")
        ] = 0.1,
        seed: SeedOpt = 0,
        jobs: JobsOpt = 1,
        redo: RedoOpt = False,
        limit: LimitOpt = None,
        dry_run: DryRunOpt = False,
        test_cmd: Annotated[
            Optional[str],
            typer.Option("--test-cmd", help="repo:PATH only: the test command, run in the repository root (pytest; "
                                            "-rA is added so per-test results can be read)."),
        ] = None,
        max_bugs: Annotated[
            int, typer.Option("--max-bugs", min=1, help="repo:PATH only: most candidate bugs to try.")
        ] = 50,
        bug_timeout: Annotated[
            float, typer.Option("--bug-timeout", min=1.0, help="repo:PATH only: seconds per test run of one candidate.")
        ] = 120.0,
    ) -> None:
        chosen = tuple(level.strip() for level in levels.split(",") if level.strip())
        if source.startswith("repo:") and not test_cmd:
            raise UsageError("--source repo:PATH needs --test-cmd", "e.g. --test-cmd 'python -m pytest tests'")
        from hrmcode.data.synthesize import synthesize as run_synthesize  # imported here: the data pipeline's libraries load only for this command
        result = run_synthesize(source, out=out_dir, workspace=workspace(ctx), analysis=analysis, seed=seed,
                                heldout_fraction=heldout_fraction,
                                levels=chosen, jobs=jobs, redo=redo, limit=limit, dry_run=dry_run, test_cmd=test_cmd,
                                max_bugs=max_bugs, bug_timeout_s=bug_timeout)
        stats = result.stats
        payload = {"artifact": str(result.artifact.path) if result.artifact else None, "dry_run": result.dry_run, **stats}

        def render() -> None:
            if result.dry_run:
                out.data(f"dry run: {stats}")
                return
            out.table(f"{stats['examples']} examples from {stats['tasks']} tasks",
                      ["level", "examples"], [[k, v] for k, v in stats["by_level"].items()])
            out.table("by language", ["language", "examples"], [[k, v] for k, v in stats["by_language"].items()])
            out.table("by split", ["split", "examples", "tasks"],
                      [[k, v, stats["tasks_by_split"].get(k, 0)] for k, v in stats["by_split"].items()])
            if stats["tasks_without_examples"]:
                out.warn(f"{stats['tasks_without_examples']} tasks gave no example (see synthesis-report.json)")
            out.data(f"artifact: {result.artifact.path}")

        out.result(payload, render)
