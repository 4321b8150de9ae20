"""Option types shared by several commands, so their names and help stay identical; the global ``--workspace``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hrmcode.cli._output import out

OutOpt = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", help="Write the artifact exactly here instead of a new version in the workspace."),
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Let --out replace what is there even when it is not an earlier artifact of this "
                 "step (a file, your own files, another kind of artifact): it is deleted. Default: refuse."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same inputs, options and seed give the same bytes.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Say what would be done (and how many records), write nothing.")]
RedoOpt = Annotated[bool, typer.Option("--redo", help="Start over instead of resuming the finished items in --out.")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Parallel workers.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Take at most this many records (default: all).")]


def examples_epilog(*lines: str) -> str:
    """An 'Examples' epilog for ``--help``: one command per line."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


def workspace(ctx: typer.Context) -> Path | None:
    """The global ``--workspace`` of the running command, passed to the library as ``workspace=``.

    None when not given: the library then uses ``$HRMCODE_HOME`` or ./hrmcode-artifacts
    (``hrmcode.artifacts.workspace_root``).
    """
    return ctx.find_root().params.get("workspace")


def artifact_result(result: Any, summary: dict, tables: Callable[[], None]) -> None:
    """Report a step that writes an artifact (``result.artifact``, ``result.dry_run``): as JSON, the artifact's
    path, ``dry_run`` and ``summary``; for people, a dry run's summary, or ``tables`` then the artifact's path."""
    payload = {"artifact": str(result.artifact.path) if result.artifact else None, "dry_run": result.dry_run, **summary}

    def render() -> None:
        if result.dry_run:
            out.data(f"dry run: {summary}")
            return
        tables()
        out.data(f"artifact: {result.artifact.path}")

    out.result(payload, render)
