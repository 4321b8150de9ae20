"""``hrmcode analyze ARTIFACT``: profile every task of a tasks artifact -> an ``analysis`` artifact."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hrmcode.cli._common import ForceOpt, OutOpt, examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._output import out


def register(app: typer.Typer) -> None:
    @app.command(
        "analyze",
        help="Profile every task of a tasks artifact (languages, complexity, tools, domain, curriculum stage) "
        "into analysis.parquet, and print a summary by source/language, domain and stage.",
        epilog=examples_epilog(
            "hrmcode analyze swe-smith",
            "hrmcode analyze hrmcode-artifacts/fetch/polyglot/20250101-120000-abc123 -o polyglot-analysis",
            "hrmcode --json analyze humaneval",
        ),
    )
    @handle_errors
    def analyze(
        ctx: typer.Context,
        artifact: Annotated[
            str,
            typer.Argument(help="A tasks artifact: its directory, or its name in the workspace (newest version).",
                           show_default=False),
        ],
        out_dir: OutOpt = None,
        force: ForceOpt = False,
        name: Annotated[
            Optional[str], typer.Option("--name", help="Analysis name in the workspace (default: the tasks artifact's name).")
        ] = None,
    ) -> None:
        from hrmcode.data.analyze import analyze as analyze_tasks  # imported here: the data pipeline's libraries load only for this command
        result, summary = analyze_tasks(artifact, out=out_dir, name=name, workspace=workspace(ctx), force=force)
        payload = {"artifact": str(result.path), **summary}

        def render() -> None:
            out.table(
                f"{summary['tasks']} tasks by source and language",
                ["source", "language", "tasks", "mean files", "mean tests", "stage 1", "stage 2", "stage 3", "stage 4"],
                [[r["source"], r["language"], r["tasks"], r["mean_files"], r["mean_tests"],
                  r["stage_1"], r["stage_2"], r["stage_3"], r["stage_4"]] for r in summary["by_source_language"]],
            )
            out.table("by domain", ["domain", "tasks"], [[r["domain"], r["tasks"]] for r in summary["by_domain"]])
            out.table("by curriculum stage", ["stage", "name", "tasks"],
                      [[r["stage"], r["stage_name"], r["tasks"]] for r in summary["by_stage"]])
            out.data(f"artifact: {result.path}")

        out.result(payload, render)
