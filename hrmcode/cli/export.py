"""``hrmcode export ...``: hrmcode's artifacts in other tools' formats (``export model``: Hugging Face transformers)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hrmcode.cli._common import ForceOpt, OutOpt, examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._options import library_options, with_options
from hrmcode.cli._output import out
from hrmcode.export.options import HFExportOptions

MODEL_OPTIONS = library_options(HFExportOptions)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Export hrmcode artifacts in the formats other tools load.", no_args_is_help=True)
    app.add_typer(group, name="export")

    @group.command(
        "model",
        help="Write a model artifact or checkpoint as a directory Hugging Face transformers loads "
        "(AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True); the modeling code is written into "
        "it, so hrmcode is not needed to load it), with hrmcode's prompt format as the tokenizer's chat template.",
        epilog=examples_epilog(
            "hrmcode export model toy-examples",
            "hrmcode export model runs/a -o runs/a-hf --dtype bfloat16",
            "hrmcode export model runs/a/checkpoints/step-200 -o step-200-hf",
        ),
    )
    @handle_errors
    @with_options(MODEL_OPTIONS)
    def model(
        ctx: typer.Context,
        source: Annotated[str, typer.Argument(
            help="A model artifact (directory or workspace name) or a bare checkpoints/step-* directory.",
            show_default=False)],
        out_dir: OutOpt = None,
        force: ForceOpt = False,
        **options: Any,
    ) -> None:
        from hrmcode.export.huggingface import export_model

        result = export_model(source, out=out_dir, workspace=workspace(ctx), force=force, **options)
        payload = {"artifact": str(result.artifact.path), "arch": result.arch, "parameters": result.parameters,
                   "dtype": result.dtype}

        def render() -> None:
            out.log(f"{result.arch} model, {result.parameters:,} parameters, {result.dtype} weights")
            out.data(f"artifact: {result.artifact.path}")

        out.result(payload, render)
