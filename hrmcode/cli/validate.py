"""``hrmcode validate EXAMPLES``: quality gates -> a ``validated-examples`` artifact."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hrmcode.cli._common import DryRunOpt, JobsOpt, OutOpt, RedoOpt, artifact_result, examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._options import library_options, with_options
from hrmcode.cli._output import out
from hrmcode.data.validate import ValidateOptions
from hrmcode.data.validate import validate as run_validate
from hrmcode.executor import ExecutorOptions, using

# The quality gates' options, generated from the library's ValidateOptions.
GATES = library_options(ValidateOptions)


def register(app: typer.Typer) -> None:
    @app.command(
        "validate",
        help="Check an examples artifact: schema and completeness, exact and near duplicates (MinHash/LSH), "
        "contamination with the eval benchmarks, execution in the sandbox; write accepted.jsonl, rejected.jsonl "
        "(with reasons), scores.jsonl and report.json, and print the balance by language, level and stage.",
        epilog=examples_epilog(
            "hrmcode validate swe-smith",
            "hrmcode validate polyglot --allow-contaminated --no-exec",
            "hrmcode validate hrmcode-artifacts/synthesize/swe-smith/20250101-120000-abc123 -o checked -j 2",
            "hrmcode --json validate humaneval --min-score 0.8",
        ),
    )
    @handle_errors
    @with_options(GATES + library_options(ExecutorOptions), order=("out_dir", *(gate.name for gate in GATES)))
    def validate(
        ctx: typer.Context,
        examples: Annotated[str, typer.Argument(help="An examples artifact: its directory, or its name in the workspace.",
                                                show_default=False)],
        out_dir: OutOpt = None,
        jobs: JobsOpt = 1,
        redo: RedoOpt = False,
        dry_run: DryRunOpt = False,
        **gates: Any,
    ) -> None:
        with using(ExecutorOptions.take(gates), jobs):
            result = run_validate(examples, out=out_dir, workspace=workspace(ctx), jobs=jobs, redo=redo,
                                  dry_run=dry_run, **gates)
        report = result.report

        def tables() -> None:
            out.table(f"{report['accepted']} of {report['examples']} examples accepted", ["gate", "examples"],
                      [[k, v] for k, v in report["gates"].items()])
            for key in ("language", "level", "stage", "split"):
                balance = report["balance"][key]
                out.table(f"balance by {key}", [key, "all", "accepted"],
                          [[k, v, balance["accepted"].get(k, 0)] for k, v in balance["all"].items()])

        artifact_result(result, report, tables)
