"""``hrmcode serve CHECKPOINT``: an OpenAI-compatible HTTP server for a model or quantized model."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from hrmcode.cli._common import examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._options import library_options, with_options
from hrmcode.serve.settings import ServeSettings

# What the server allows a request and a connection, generated from the library's ServeSettings.
LIMITS = library_options(ServeSettings)

EPILOG = examples_epilog(
    "hrmcode serve toy-examples",
    "hrmcode serve toy-examples-int8 --port 8080 --max-concurrency 2",
    "HRMCODE_API_KEY=secret hrmcode serve runs/a --host 0.0.0.0",
    "hrmcode serve runs/a --device cuda --max-tokens-cap 2048 --max-request-tokens 32768",
    "hrmcode eval humaneval --model openai:http://127.0.0.1:8000/v1",
)


def register(app: typer.Typer) -> None:
    @app.command("serve", epilog=EPILOG,
                 help="Serve a model or quantized-model artifact over the OpenAI API (/v1/completions, "
                      "/v1/chat/completions, /v1/models, /health) until interrupted.")
    @handle_errors
    @with_options(LIMITS, order=("checkpoint", "host", "port", "api_key", "model_name", "device", "dtype", "chat_level",
                                 *(limit.name for limit in LIMITS)))
    def serve_command(
        ctx: typer.Context,
        checkpoint: Annotated[str, typer.Argument(
            help="A model or quantized-model artifact (directory or workspace name), or a checkpoint directory.")],
        host: Annotated[str, typer.Option(
            "--host", help="Address to bind. Anything but loopback exposes the model to the network.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: pick a free one).")] = 8000,
        api_key: Annotated[Optional[str], typer.Option(
            "--api-key", envvar="HRMCODE_API_KEY", show_envvar=True,
            help="Require 'Authorization: Bearer KEY' on /v1 (default: no key). Given on the command line, the key "
                 "is visible to every user of this machine (ps, /proc): set HRMCODE_API_KEY instead.")] = None,
        model_name: Annotated[Optional[str], typer.Option(
            "--model-name", help="The model id clients send (default: the artifact's name).")] = None,
        device: Annotated[str, typer.Option("--device", help="cpu, or cuda.")] = "cpu",
        dtype: Annotated[str, typer.Option(
            "--dtype", help="A float model's weights: float32, or bfloat16 (half the memory; the GPU's fast "
                            "path). Quantized models keep their own.")] = "float32",
        chat_level: Annotated[str, typer.Option(
            "--chat-level", help="Level token chat prompts start with: solve, plan, edit, tool, coord, or none.")
        ] = "solve",
        threads: Annotated[Optional[int], typer.Option(
            "--threads", min=1, help="CPU threads for generation (default: the core count). An int8 model's "
                                     "matmuls run on hrmcode's kernels with these threads; PyTorch keeps one.")] = None,
        **limits: Any,
    ) -> None:
        from hrmcode.serve.server import checkpoint_app, listen, serve  # FastAPI and uvicorn: loaded only to serve

        settings = ServeSettings(api_key=api_key or None, **limits)
        sockets = listen(host, port)  # before the model loads: a busy port is reported at once
        try:
            app_ = checkpoint_app(checkpoint, settings, workspace=workspace(ctx), device=device, dtype=dtype,
                                  model_name=model_name, chat_level=None if chat_level == "none" else chat_level,
                                  threads=threads)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        serve(app_, host=host, port=port, settings=settings, sockets=sockets)
