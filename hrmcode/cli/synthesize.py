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
from hrmcode.executor import ExecutorOptions, using


# Where each option appears in --help; the SynthesizeOptions fields named here are generated from the library.
HELP_ORDER = ("source out_dir analysis levels heldout_fraction seed jobs redo limit dry_run test_cmd max_bugs "
              "bug_timeout_s llm llm_model lm_bugs combine").split()


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
    @with_options(library_options(SynthesizeOptions) + library_options(ExecutorOptions), order=HELP_ORDER)
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
        with using(ExecutorOptions.take(options), jobs):
            result = run_synthesize(source, out=out_dir, workspace=workspace(ctx), seed=seed, levels=chosen,
                                    jobs=jobs, redo=redo, limit=limit, dry_run=dry_run, **options)
        stats = result.stats
        if result.dry_run:
            out.result({"artifact": None, "dry_run": True, **stats}, lambda: _dry_run_report(stats))
            return

        def tables() -> None:
            if "bugs" in stats:
                _bug_tables(stats["bugs"])
            out.table(f"{stats['examples']} examples from {stats['tasks']} tasks",
                      ["level", "examples"], [[k, v] for k, v in stats["by_level"].items()])
            out.table("by language", ["language", "examples"], [[k, v] for k, v in stats["by_language"].items()])
            out.table("by split", ["split", "examples", "tasks"],
                      [[k, v, stats["tasks_by_split"].get(k, 0)] for k, v in stats["by_split"].items()])
            if stats["tasks_without_examples"]:
                out.warn(f"{stats['tasks_without_examples']} tasks gave no example (see synthesis-report.json)")

        artifact_result(result, stats, tables)


def _bug_tables(bugs: dict) -> None:
    """repo:PATH: candidates, tried, kept and rejected, by reason and by strategy."""
    resumed = f", {bugs['resumed']} of them from {bugs['verdict_log']}" if bugs.get("resumed") else ""
    title = (f"bugs in {bugs['repo']} at {bugs['commit'][:12]}: {bugs['kept']} kept of {bugs['tried']} tried "
             f"({bugs['candidates']} candidates{resumed})")
    if bugs["rejected"]:
        out.table(title, ["rejected because", "candidates"], [[k, v] for k, v in bugs["rejected"].items()])
    else:
        out.data(f"{title}, none rejected")
    candidates = bugs.get("by_type_candidates", {})
    out.table("by strategy", ["strategy", "candidates", "tried", "kept", "rejected"],
              [[k, candidates.get(k, tried), tried, bugs["by_type_kept"].get(k, 0), bugs["by_type_rejected"].get(k, 0)]
               for k, tried in bugs["by_type_tried"].items()])


def _dry_run_report(stats: dict) -> None:
    """What a real run would do, in words and tables (not the summary's dict)."""
    if "bugs" in stats:
        bugs = stats["bugs"]
        out.table(f"dry run: would test {bugs['tried']} of {bugs['candidates']} candidate bugs in {bugs['repo']} "
                  f"at {bugs['commit'][:12]}", ["strategy", "would try"], [[k, v] for k, v in bugs["by_type_tried"].items()])
    elif "trajectories" in stats:
        out.data(f"dry run: would fetch {stats['trajectories']} trajectories, then synthesize from them")
    elif "analysis" in stats:
        out.data(f"dry run: would analyze {stats['tasks']} first, then synthesize from it")
    else:
        out.data(f"dry run: would synthesize from {stats['tasks']} tasks ({stats['tasks_file']}) in {stats['chunks']} "
                 f"chunks, levels {','.join(stats['params']['levels'])}")
    out.data("nothing written")
