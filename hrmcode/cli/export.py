"""``hrmcode export ...``: hrmcode's artifacts in other tools' formats (``export model``: Hugging Face transformers;
``export dataset``: Hugging Face datasets)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hrmcode.cli._common import ForceOpt, OutOpt, examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._options import library_options, with_options
from hrmcode.cli._output import out
from hrmcode.datasets_io import DatasetExportOptions
from hrmcode.export.options import HFExportOptions

MODEL_OPTIONS = library_options(HFExportOptions)
DATASET_OPTIONS = library_options(DatasetExportOptions)


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
        payload = {"artifact": str(result.artifact.path), "arch": result.arch, "architecture": result.architecture,
                   "parameters": result.parameters, "dtype": result.dtype}
        loads_as = "LlamaForCausalLM" if result.architecture == "llama" else "trust_remote_code"

        def render() -> None:
            out.log(f"{result.arch} model ({loads_as}), {result.parameters:,} parameters, {result.dtype} weights")
            out.data(f"artifact: {result.artifact.path}")

        out.result(payload, render)

    @group.command(
        "dataset",
        help="Write an examples or validated-examples artifact as a Hugging Face dataset directory: a DatasetDict "
        "(its train and heldout splits) that datasets.load_from_disk(dir) opens and .push_to_hub(repo) publishes, "
        "with a README dataset card carrying the examples' provenance.",
        epilog=examples_epilog(
            "hrmcode export dataset humaneval",
            "hrmcode export dataset runs/validated -o my-examples-hf",
        ),
    )
    @handle_errors
    @with_options(DATASET_OPTIONS)
    def dataset(
        ctx: typer.Context,
        source: Annotated[str, typer.Argument(
            help="A validated-examples or examples artifact: its directory, or its name in the workspace (the "
            "validated examples of that name when there are some).",
            show_default=False)],
        out_dir: OutOpt = None,
        force: ForceOpt = False,
        **options: Any,
    ) -> None:
        from hrmcode.datasets_io import export_examples  # imported here: `datasets` loads only for this command

        result = export_examples(source, out=out_dir, workspace=workspace(ctx), force=force, **options)

        def render() -> None:
            out.table(f"exported {sum(result.splits.values())} examples from {result.source.path}",
                      ["split", "rows"], [[split, rows] for split, rows in result.splits.items()])
            out.data(f"artifact: {result.artifact.path}")

        out.result(result.to_dict(), render)
