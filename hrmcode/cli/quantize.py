"""``hrmcode quantize CHECKPOINT``: int8/int4/float8 weights into a ``quantized-model`` artifact."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hrmcode.cli._common import ForceOpt, OutOpt, examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._output import out
from hrmcode.errors import ThresholdNotMet

EPILOG = examples_epilog(
    "hrmcode quantize toy-examples",
    "hrmcode quantize runs/a --weights int4 --group-size 64 -o runs/a-int4",
    "hrmcode quantize runs/a --activations none          # int8 weight-only, bf16 activations",
    "hrmcode quantize runs/a --backend quanto --weights float8",
    "hrmcode quantize runs/a --heldout my-examples --fail-over-loss 1",
)


def _payload(result) -> dict:
    return {"artifact": str(result.artifact.path), **result.report}


def _render(result) -> None:
    report = result.report
    before, after = report["before"], report["after"]

    def fmt(value, scale=1.0, digits=4):
        return "n/a" if value is None else round(value * scale, digits)

    out.table(f"quantize -> {result.artifact.path}", ["measure", "before", "after"], [
        ["size on disk (MB)", fmt(before["size_bytes"], 1e-6, 3), fmt(after["size_bytes"], 1e-6, 3)],
        ["held-out loss", fmt(before["heldout_loss"]), fmt(after["heldout_loss"])],
        ["exact match", fmt(before["exact_match"]), fmt(after["exact_match"])],
        ["CPU first token (ms)", fmt(before["first_token_ms"], 1, 2), fmt(after["first_token_ms"], 1, 2)],
        ["CPU ms per token", fmt(before["ms_per_token"], 1, 2), fmt(after["ms_per_token"], 1, 2)],
    ])
    out.log(f"loss change {report['loss_increase_pct']:+.3f}% on {report['examples_measured']} held-out examples "
            f"({report['examples_exact_match']} for exact match) from {report['heldout']}")


def register(app: typer.Typer) -> None:
    @app.command("quantize", epilog=EPILOG,
                 help="Quantize a checkpoint's weights into a `quantized-model` artifact and report size, "
                      "held-out loss, exact match and CPU latency before and after. The default, int8 weights "
                      "with dynamic int8 activations, is the fast CPU path of `hrmcode serve`.")
    @handle_errors
    def quantize_command(
        ctx: typer.Context,
        checkpoint: Annotated[str, typer.Argument(
            help="A model artifact (directory or workspace name) or a bare checkpoints/step-* directory.")],
        weights: Annotated[str, typer.Option(
            "--weights", help="Weight type: int8, int4 (grouped) or float8 (quanto backend).")] = "int8",
        group_size: Annotated[int, typer.Option(
            "--group-size", help="int4 only: input channels per scale group (32, 64, 128 or 256); smaller where "
                                 "a layer's width needs it.")] = 128,
        activations: Annotated[Optional[str], typer.Option(
            "--activations", help="dynamic (int8, quantized per call; default for int8 weights), none (weight-only; "
                                  "default otherwise), or int8 (calibrated on held-out examples that are not "
                                  "measured; quanto backend).", show_default=False)] = None,
        dtype: Annotated[Optional[str], typer.Option(
            "--dtype", help="Activation dtype: float32 (default with dynamic activations) or bfloat16 (default "
                            "otherwise).", show_default=False)] = None,
        backend: Annotated[str, typer.Option(
            "--backend", help="auto (torch unless the spec needs quanto), torch (PyTorch's CPU kernels) or quanto "
                              "(optimum-quanto).")] = "auto",
        exclude: Annotated[Optional[list[str]], typer.Option(
            "--exclude", help="Keep layers matching this glob in float (repeatable), e.g. 'lm_head'.")] = None,
        heldout: Annotated[Optional[str], typer.Option(
            "--heldout", help="Held-out examples: an examples/validated-examples artifact (its heldout split) or "
                              "a JSONL file of examples. Default: the model artifact's training data.")] = None,
        limit: Annotated[int, typer.Option(
            "--limit", min=1, help="Held-out examples scored for loss and latency.")] = 64,
        exact_match_limit: Annotated[int, typer.Option(
            "--exact-match-limit", min=0, help="Of those, how many are also checked by greedy generation.")] = 16,
        calibration: Annotated[int, typer.Option(
            "--calibration", min=1, help="With --activations int8: held-out examples used for calibration.")] = 32,
        latency_tokens: Annotated[int, typer.Option(
            "--latency-tokens", min=2, help="Tokens generated per prompt (4 prompts) when timing CPU latency.")] = 32,
        fail_over_loss: Annotated[Optional[float], typer.Option(
            "--fail-over-loss", help="Exit 1 when the held-out loss rises by more than this percentage "
                                     "(the artifact is written anyway).")] = None,
        name: Annotated[Optional[str], typer.Option(
            "--name", help="Artifact name in the workspace (default: <model name>-<weights>).")] = None,
        out_dir: OutOpt = None,
        force: ForceOpt = False,
    ) -> None:
        from hrmcode.quantize import QuantSpec, quantize_checkpoint

        spec = QuantSpec(weights=weights, activations=activations, dtype=dtype, group_size=group_size,
                         exclude=tuple(exclude or ()))
        try:
            result = quantize_checkpoint(checkpoint, spec, out=out_dir, workspace=workspace(ctx), name=name,
                                         heldout=heldout, limit=limit,
                                         exact_match_limit=exact_match_limit, calibration_examples=calibration,
                                         latency_tokens=latency_tokens, fail_over_loss=fail_over_loss,
                                         backend_name=backend, force=force)
        except ThresholdNotMet as exc:
            failed = exc.result  # written and measured: show the report, then exit 1
            out.result(_payload(failed), lambda: _render(failed))
            raise
        out.result(_payload(result), lambda: _render(result))
