"""The ``hrmcode`` command: global options, and the registry of commands.

Only commands that work are registered here; ``tests/test_cli.py`` keeps this list, the
README and the ``--help`` snapshot in sync. Usage errors found while parsing (unknown option, bad
value, out of range, missing argument) print one line and exit 2, like every other error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperGroup

from hrmcode import __version__
from hrmcode.cli._errors import render_usage
from hrmcode.cli._output import out


FLAGS = ("--json", "--quiet", "-q", "--no-progress")  # the global options without a value
WORKSPACE = "--workspace"


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """``args`` with the global options that follow the command moved before it, so ``hrmcode eval polyglot ...
    --json`` means ``hrmcode --json eval polyglot ...`` (no command has an option of the same name). ``--`` ends
    the options: what follows it stays where it is."""
    hoisted: list[str] = []
    rest: list[str] = []
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            rest += [token, *tokens]
        elif token in FLAGS or token.startswith(WORKSPACE + "="):
            hoisted.append(token)
        elif token == WORKSPACE:
            value = next(tokens, None)
            if value is None:
                raise UsageError(f"Option '{WORKSPACE}' requires an argument.")
            hoisted += [token, value]
        else:
            rest.append(token)
    return hoisted + rest


class OneLineUsageErrors(TyperGroup):
    """The root command: parses in click's non-standalone mode so a usage error reaches
    ``render_usage`` (one line) instead of typer's boxed message; global options may follow the command."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        given = sys.argv[1:] if args is None else args
        if not standalone_mode:
            return super().main(hoist_global_options(given), prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(hoist_global_options(given), prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            code = render_usage(exc)
        except typer.Abort:
            out.error("aborted")
            code = 1
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineUsageErrors,
    name="hrmcode",
    help="Build, measure and ship small code models based on the Hierarchical Reasoning Model.\n\n"
    "Pipeline: fetch -> analyze -> synthesize -> validate -> train -> quantize -> eval -> serve.\n\n"
    "The options below may also follow the command (hrmcode eval polyglot ... --json).",
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
    from hrmcode.cli import (analyze, env, eval, export, fetch, quantize, sandbox, serve, synthesize, train, validate,
                             version)

    for module in (version, env, fetch, analyze, synthesize, validate, train, quantize, eval, serve, export, sandbox):
        module.register(app)


_register()


def main() -> None:
    app(prog_name="hrmcode")
