"""``hrmcode synthesize --source NAME|ARTIFACT|repo:PATH``: tasks -> an ``examples`` artifact."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hrmcode.cli._common import (DryRunOpt, JobsOpt, LimitOpt, OutOpt, RedoOpt, SeedOpt, artifact_result, examples_epilog,
                                workspace)
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._options import library_options, with_options
from hrmcode.cli._output import out
from hrmcode.data.examples import LEVELS
from hrmcode.data.synthesize import SynthesizeOptions
from hrmcode.data.synthesize import synthesize as run_synthesize
from hrmcode.errors import UsageError


# Where each option appears in --help; the SynthesizeOptions fields named here are generated from the library.
HELP_ORDER = ("source out_dir analysis levels heldout_fraction seed jobs redo limit dry_run test_cmd max_bugs "
              "bug_timeout_s").split()


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
    @with_options(library_options(SynthesizeOptions), order=HELP_ORDER)
    def synthesize(
        ctx: typer.Context,
        source: Annotated[
            str,
            typer.Option("--source", "-s", show_default=False,
                         help="A tasks artifact: its name in the workspace (newest version, e.g. swe-smith), its "
                              "directory, or repo:PATH to inject bugs into a local git repository."),
        ],
        out_dir: OutOpt = None,
        levels: Annotated[
            str, typer.Option("--levels", help=f"Comma-separated levels to emit, from {','.join(LEVELS)}.")
        ] = ",".join(LEVELS),
        seed: SeedOpt = 0,
        jobs: JobsOpt = 1,
        redo: RedoOpt = False,
        limit: LimitOpt = None,
        dry_run: DryRunOpt = False,
        **options: Any,
    ) -> None:
        chosen = tuple(level.strip() for level in levels.split(",") if level.strip())
        if source.startswith("repo:") and not options["test_cmd"]:
            raise UsageError("--source repo:PATH needs --test-cmd", "e.g. --test-cmd 'python -m pytest tests'")
        result = run_synthesize(source, out=out_dir, workspace=workspace(ctx), seed=seed, levels=chosen, jobs=jobs,
                                redo=redo, limit=limit, dry_run=dry_run, **options)
        stats = result.stats

        def tables() -> None:
            out.table(f"{stats['examples']} examples from {stats['tasks']} tasks",
                      ["level", "examples"], [[k, v] for k, v in stats["by_level"].items()])
            out.table("by language", ["language", "examples"], [[k, v] for k, v in stats["by_language"].items()])
            out.table("by split", ["split", "examples", "tasks"],
                      [[k, v, stats["tasks_by_split"].get(k, 0)] for k, v in stats["by_split"].items()])
            if stats["tasks_without_examples"]:
                out.warn(f"{stats['tasks_without_examples']} tasks gave no example (see synthesis-report.json)")

        artifact_result(result, stats, tables)
