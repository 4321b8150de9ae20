"""``hrmcode version``."""

from __future__ import annotations

import platform

import typer

from hrmcode import __version__
from hrmcode.cli._common import examples_epilog
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._output import out


def register(app: typer.Typer) -> None:
    @app.command("version", help="Print the hrmcode version.",
                 epilog=examples_epilog("hrmcode version", "hrmcode --json version"))
    @handle_errors
    def version() -> None:
        payload = {"hrmcode": __version__, "python": platform.python_version()}
        out.result(payload, lambda: out.data(f"hrmcode {__version__}"))
