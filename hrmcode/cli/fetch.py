"""``hrmcode fetch SOURCE``: one source -> a ``tasks`` artifact (``code``: a ``corpus`` artifact)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hrmcode.cli._common import DryRunOpt, ForceOpt, LimitOpt, OutOpt, examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._output import out
from hrmcode.data.sources import SOURCE_NAMES, fetch as fetch_source

HELP = (
    "Fetch a source into an artifact: a tasks artifact (tasks.jsonl + manifest), or for `code` a corpus "
    "artifact (corpus.jsonl + manifest). "
    f"Sources: {', '.join(SOURCE_NAMES)}. Remote sources use their real location unless --from names a local copy; "
    "when the remote cannot be reached the error says so and names --from."
)


def register(app: typer.Typer) -> None:
    @app.command(
        "fetch",
        help=HELP,
        epilog=examples_epilog(
            "hrmcode fetch humaneval",
            "hrmcode fetch polyglot --from ../polyglot-benchmark --languages python,go",
            "hrmcode fetch swe-smith --from instances.jsonl --limit 100",
            "hrmcode fetch swe-smith --from smith-saved  # a save_to_disk dir",
            "hrmcode fetch swe-smith-trajectories --split xml --limit 500",
            "hrmcode fetch livecodebench --release v6 --since 2024-08-01 --until 2025-02-01",
            "hrmcode fetch tasks --from my-tasks.jsonl --name mine",
            "hrmcode fetch code --from /usr/lib/python3.11 --languages python",
            "hrmcode fetch polyglot --from ../polyglot-benchmark --dry-run",
        ),
    )
    @handle_errors
    def fetch(
        ctx: typer.Context,
        source: Annotated[str, typer.Argument(help=f"Which source: {', '.join(SOURCE_NAMES)}.", show_default=False)],
        from_: Annotated[
            Optional[list[str]],
            typer.Option(
                "--from",
                help="Local copy to read instead of the remote: a directory or file (polyglot also takes a git URL). "
                "Repeatable for `code`. Default: the source's remote.",
            ),
        ] = None,
        limit: LimitOpt = None,
        dry_run: DryRunOpt = False,
        out_dir: OutOpt = None,
        force: ForceOpt = False,
        name: Annotated[
            Optional[str],
            typer.Option("--name", help="Artifact name in the workspace (default: the source name)."),
        ] = None,
        dataset: Annotated[
            Optional[str],
            typer.Option(
                "--dataset",
                help="Hugging Face dataset id (swe-smith: SWE-bench/SWE-smith; swe-smith-trajectories: "
                "SWE-bench/SWE-smith-trajectories; livecodebench: livecodebench/code_generation_lite).",
            ),
        ] = None,
        revision: Annotated[
            Optional[str],
            typer.Option(
                "--revision",
                help="Hugging Face dataset commit, tag or branch to read (default: the commit pinned in hrmcode for "
                "swe-smith and livecodebench, the newest for swe-smith-trajectories; the manifest records it).",
            ),
        ] = None,
        split: Annotated[
            Optional[str],
            typer.Option("--split", help="Dataset split (swe-smith: default train; swe-smith-trajectories: xml|tool|ticks, default xml)."),
        ] = None,
        release: Annotated[
            Optional[str],
            typer.Option("--release", help="livecodebench release v1..v6 or latest (cumulative; default latest)."),
        ] = None,
        since: Annotated[
            Optional[str],
            typer.Option("--since", help="livecodebench: keep problems with contest_date on or after YYYY-MM-DD."),
        ] = None,
        until: Annotated[
            Optional[str],
            typer.Option("--until", help="livecodebench: keep problems with contest_date on or before YYYY-MM-DD."),
        ] = None,
        languages: Annotated[
            Optional[str],
            typer.Option("--languages", help="polyglot/code: comma-separated languages to keep (default: all six)."),
        ] = None,
        max_file_bytes: Annotated[
            Optional[int],
            typer.Option("--max-file-bytes", min=1, help="code: skip files larger than this many bytes (default 1000000)."),
        ] = None,
        no_decontaminate: Annotated[
            bool,
            typer.Option(
                "--no-decontaminate",
                help="code: keep files that contain HumanEval signatures or fetched polyglot solutions (default: drop them).",
            ),
        ] = False,
    ) -> None:
        options = {
            "dataset": dataset, "revision": revision, "split": split, "release": release, "since": since, "until": until,
            "languages": languages, "max_file_bytes": max_file_bytes,
            "decontaminate": False if no_decontaminate else None,
        }
        result = fetch_source(source, from_path=from_, limit=limit, dry_run=dry_run, out=out_dir,
                              workspace=workspace(ctx), name=name, force=force, **options)
        payload = result.to_dict()

        def render() -> None:
            verb = "would fetch" if result.dry_run else "fetched"
            title = f"{verb} {result.records} {source} records from {result.origin}"
            if result.revision:
                title += f" @ {result.revision}"
            out.table(title, ["language", "records"], [[lang, n] for lang, n in result.languages.items()])
            if result.artifact is not None:
                out.data(f"artifact: {result.artifact.path}")

        out.result(payload, render)
