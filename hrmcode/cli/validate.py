"""``hrmcode validate EXAMPLES``: quality gates -> a ``validated-examples`` artifact."""

from __future__ import annotations

from typing import Annotated

import typer

from hrmcode.cli._common import DryRunOpt, JobsOpt, OutOpt, RedoOpt, examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._output import out


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
    def validate(
        ctx: typer.Context,
        examples: Annotated[str, typer.Argument(help="An examples artifact: its directory, or its name in the workspace.",
                                                show_default=False)],
        out_dir: OutOpt = None,
        min_score: Annotated[float, typer.Option("--min-score", min=0.0, max=1.0,
                                                 help="Accept only examples whose quality score (completeness x "
                                                      "(1 - contamination overlap)) reaches this fraction.")] = 0.5,
        dedup_threshold: Annotated[float, typer.Option("--dedup-threshold", min=0.0, max=1.0,
                                                       help="Estimated Jaccard similarity (of target and of input) "
                                                            "at which a later example is a near duplicate.")] = 0.9,
        contamination_threshold: Annotated[float, typer.Option("--contamination-threshold", min=0.0, max=1.0,
                                                               help="Fraction of a benchmark item's 50-character "
                                                                    "n-grams that makes an example contaminated.")] = 0.5,
        allow_contaminated: Annotated[bool, typer.Option("--allow-contaminated",
                                                         help="Keep contaminated examples, flagged in scores.jsonl.")] = False,
        no_exec: Annotated[bool, typer.Option("--no-exec", help="Skip execution checks in the sandbox.")] = False,
        exec_timeout: Annotated[float, typer.Option("--exec-timeout", min=1.0,
                                                    help="Seconds per execution check.")] = 30.0,
        jobs: JobsOpt = 1,
        redo: RedoOpt = False,
        dry_run: DryRunOpt = False,
    ) -> None:
        from hrmcode.data.validate import validate as run_validate  # imported here: the data pipeline's libraries load only for this command
        result = run_validate(examples, out=out_dir, workspace=workspace(ctx), min_score=min_score,
                              dedup_threshold=dedup_threshold,
                              contamination_threshold=contamination_threshold, allow_contaminated=allow_contaminated,
                              exec_checks=not no_exec, exec_timeout_s=exec_timeout, jobs=jobs, redo=redo, dry_run=dry_run)
        report = result.report
        payload = {"artifact": str(result.artifact.path) if result.artifact else None, "dry_run": result.dry_run, **report}

        def render() -> None:
            if result.dry_run:
                out.data(f"dry run: {report}")
                return
            out.table(f"{report['accepted']} of {report['examples']} examples accepted", ["gate", "examples"],
                      [[k, v] for k, v in report["gates"].items()])
            for key in ("language", "level", "stage", "split"):
                balance = report["balance"][key]
                out.table(f"balance by {key}", [key, "all", "accepted"],
                          [[k, v, balance["accepted"].get(k, 0)] for k, v in balance["all"].items()])
            out.data(f"artifact: {result.artifact.path}")

        out.result(payload, render)
