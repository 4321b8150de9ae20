"""The ``hrmcode`` command: global options, and the registry of commands.

Only commands that work are registered here; ``tests/test_cli.py`` keeps this list, the
README and the ``--help`` snapshot in sync.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hrmcode import __version__
from hrmcode.cli._output import out

app = typer.Typer(
    name="hrmcode",
    help="Build, measure and ship small code models based on the Hierarchical Reasoning Model.\n\n"
    "Pipeline: fetch -> analyze -> synthesize -> validate -> train -> quantize -> eval -> serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"hrmcode {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    json_output: Annotated[bool, typer.Option("--json", help="Print the machine-readable result (JSON) on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only data; no logs or progress on stderr.")] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Never draw progress bars (they are drawn only on a terminal anyway).")
    ] = False,
    workspace: Annotated[
        Optional[Path],
        typer.Option(
            "--workspace",
            help="Artifact root holding <step>/<name>/<version>/ (default: $HRMCODE_HOME or ./hrmcode-artifacts).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    # --workspace is read by each command (``_common.workspace(ctx)``) and passed to the library.
    out.configure(json_mode=json_output, quiet=quiet, no_progress=no_progress)


def _register() -> None:
    from hrmcode.cli import analyze, env, eval, fetch, quantize, sandbox, serve, synthesize, train, validate, version

    for module in (version, env, fetch, analyze, synthesize, validate, train, quantize, eval, serve, sandbox):
        module.register(app)


_register()


def main() -> None:
    app(prog_name="hrmcode")
