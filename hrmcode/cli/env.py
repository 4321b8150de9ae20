"""``hrmcode env``: versions, toolchains and sandbox backends, for bug reports."""

from __future__ import annotations

import typer

from hrmcode.cli._common import examples_epilog
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._output import out
from hrmcode.environment import collect_environment


def register(app: typer.Typer) -> None:
    @app.command("env", help="Show versions, toolchains found and sandbox backends available.",
                 epilog=examples_epilog("hrmcode env", "hrmcode --json env"))
    @handle_errors
    def env() -> None:
        info = collect_environment()

        def render() -> None:
            out.table("hrmcode", ["item", "value"], [
                ["hrmcode", info["hrmcode"]], ["python", info["python"]], ["platform", info["platform"]],
                ["torch cuda", info["torch_cuda"]], ["decode kernels", info["decode_kernels"]],
            ])
            out.table("packages", ["package", "version"],
                      [[k, v or "not installed"] for k, v in info["packages"].items()])
            out.table("toolchains", ["tool", "version"], [[k, v or "not found"] for k, v in info["tools"].items()])
            if info["sandbox_backends"]:
                out.table("sandbox backends", ["backend", "status"],
                          [[k, v] for k, v in info["sandbox_backends"].items()])

        out.result(info, render)
