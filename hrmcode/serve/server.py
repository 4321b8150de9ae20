"""Running the app: ``serve(...)`` (blocking, for the CLI) and ``background_server(app)`` (a
context manager that runs uvicorn in a thread, for tests, benchmarks and the eval end-to-end run).

Guarantees: the default bind address is 127.0.0.1; binding anything else without an API key
logs a warning. ``background_server`` returns only once the socket accepts connections and
stops the server (bounded wait) when the block exits.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from hrmcode.artifacts import MANIFEST, load_artifact
from hrmcode.errors import ArtifactError, CheckpointError, UsageError
from hrmcode.reporting import reporter
from hrmcode.serve.app import ServeSettings, create_app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _artifact_dir(ref: Path | str, workspace: Path | str | None) -> Path:
    """``ref`` itself when it is a directory, else the newest model or quantized-model of that name."""
    if Path(ref).is_dir():
        return Path(ref)
    try:
        return load_artifact(ref, ("model", "quantized-model"), workspace).path
    except ArtifactError as exc:
        raise CheckpointError(exc.message, exc.hint) from None


def checkpoint_app(checkpoint: Path | str, settings: ServeSettings, *, workspace: Path | str | None = None,
                   device: str = "cpu", model_name: str | None = None, chat_level: str | None = "solve",
                   threads: int | None = None) -> FastAPI:
    """Load a model, quantized-model or bare checkpoint (``load_any``) and wrap it in the app.

    ``checkpoint`` is a directory, or an artifact name looked up in ``workspace``.

    ``threads``: CPU threads for generation (default: the machine's cores), split between PyTorch and
    hrmcode's kernels by ``kernels.use_threads``.
    """
    import os

    import torch

    from hrmcode.memory import serve_policy
    from hrmcode.model import kernels
    from hrmcode.quantize import load_any
    from hrmcode.serve.model_engine import ModelEngine

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA device", "use --device cpu")
    serve_policy()
    loaded = load_any(_artifact_dir(checkpoint, workspace), device=device)
    loaded.model.to(device)  # load_any may build a quantized model on the CPU
    manifest = Path(loaded.path) / MANIFEST
    default_id = json.loads(manifest.read_text(encoding="utf-8")).get("name") if manifest.is_file() else None
    engine = ModelEngine(loaded, model_name or default_id or Path(loaded.path).name, chat_level=chat_level)
    split = kernels.use_threads(loaded.model, threads or os.cpu_count() or 1) if device == "cpu" else device
    reporter().log(f"serving '{engine.model_id}' ({loaded.config.arch}, {Path(loaded.path)}) on {split}")
    return create_app(engine, settings)


def serve(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None) -> None:
    """Serve ``app`` until interrupted."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port", "use 1-65535 (0 picks a free one)")
    if not is_loopback(host) and (settings is None or settings.api_key is None):
        reporter().warn(f"serving on {host} without an API key: anyone who can reach this port can use the model "
                        "(set --api-key or HRMCODE_API_KEY)")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    try:
        server.run()
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         "pick another --port, or stop what uses it") from None


@contextlib.contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                      startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Run ``app`` in a daemon thread; yield its base URL (``http://127.0.0.1:PORT``)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="hrmcode-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


__all__ = ["ServeSettings", "background_server", "checkpoint_app", "create_app", "is_loopback", "serve"]
