"""Running the app: ``serve(...)`` (blocking, for the CLI) and ``background_server(app)`` (a
context manager that runs uvicorn in a thread, for tests, benchmarks and the eval end-to-end run).

Guarantees: the default bind address is 127.0.0.1; binding anything else without an API key
logs a warning. The address is bound before the server starts, so an address in use (or not
ours to bind) is one ``HrmcodeError`` line, not the server's own log and exit code. No connection
is held forever: a connection that sends nothing for ``idle_timeout_s``, before its first
request or between requests, is closed, and one that has started sending gets ``client_timeout_s``
(from when it opened, or from the end of the previous response) to complete a request's headers;
the app itself limits the time for a body (408).
``background_server`` returns only once the socket accepts connections and stops the server
(bounded wait) when the block exits.
SIGTERM or Ctrl-C stops the running generations at their next token (each answered 503, see
``hrmcode.serve.app``) and the server then exits once their connections close: within a decode step
or so, not after every running request's ``max_tokens``; a second Ctrl-C exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from hrmcode.artifacts import MANIFEST, load_artifact
from hrmcode.errors import ArtifactError, CheckpointError, HrmcodeError, UsageError
from hrmcode.reporting import reporter
from hrmcode.serve.app import create_app
from hrmcode.serve.settings import ServeSettings


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
                   threads: int | None = None, dtype: str = "float32") -> FastAPI:
    """Load a model, quantized-model or bare checkpoint (``load_any``) and wrap it in the app.

    ``checkpoint`` is a directory, or an artifact name looked up in ``workspace``.

    ``threads``: CPU threads for generation (default: the machine's cores), split between PyTorch and
    hrmcode's kernels by ``kernels.use_threads``. ``dtype``: a float model's weights, float32 or bfloat16.
    """
    import os

    import torch

    from hrmcode.memory import serve_policy
    from hrmcode.model import kernels
    from hrmcode.quantize import load_any
    from hrmcode.serve.model_engine import ModelEngine

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA device", "use --device cpu")
    dtypes = {"float32": None, "bfloat16": torch.bfloat16}
    if dtype not in dtypes:
        raise UsageError(f"--dtype {dtype!r} is not a serving dtype", "use float32 or bfloat16")
    serve_policy()
    loaded = load_any(_artifact_dir(checkpoint, workspace), device=device, dtype=dtypes[dtype])
    loaded.model.to(device)  # load_any may build a quantized model on the CPU
    manifest = Path(loaded.path) / MANIFEST
    default_id = json.loads(manifest.read_text(encoding="utf-8")).get("name") if manifest.is_file() else None
    engine = ModelEngine(loaded, model_name or default_id or Path(loaded.path).name, chat_level=chat_level,
                         max_batch=settings.max_concurrency, max_segments=settings.max_segments,
                         halt_threshold=settings.halt_threshold)
    split = kernels.use_threads(loaded.model, threads or os.cpu_count() or 1) if device == "cpu" else device
    reporter().log(f"serving '{engine.model_id}' ({loaded.config.arch}, {Path(loaded.path)}) on {split}")
    return create_app(engine, settings)


class HeaderDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, plus an idle timeout before the first request and a deadline for headers.

    uvicorn (0.54, pinned) times out only the idle time after a response; a connection that never
    sends a request, or sends its headers a byte at a time, would be held forever. Here a new
    connection starts uvicorn's own keep-alive timer (cancelled by its first data, as after a
    response), and the header deadline runs from when the connection opens or a response ends, is
    not reset by data, and is cancelled once a whole request line and headers have arrived.
    """

    def __init__(self, *args, header_timeout_s: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._header_deadline: asyncio.TimerHandle | None = None

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        if not self._in_request() and not self.transport.is_closing():
            self._header_deadline = self.loop.call_later(self._header_timeout_s, self._headers_too_late)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_late(self) -> None:
        if not self._in_request() and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_request():
            self._cancel_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)


class _Server(uvicorn.Server):
    """uvicorn's server, which on SIGTERM / Ctrl-C also tells the app to stop its generations (uvicorn
    alone would wait for every running request to finish)."""

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        close = getattr(self.config.app.state, "close", None)  # create_app's Server.close
        if close is None:
            return
        try:  # a signal handler runs between two bytecodes of the loop's thread: let the loop call it
            asyncio.get_running_loop().call_soon_threadsafe(close)
        except RuntimeError:  # no loop running in this thread
            close()


def _config(app: FastAPI) -> uvicorn.Config:
    settings: ServeSettings = app.state.settings  # set by create_app
    protocol = functools.partial(HeaderDeadlineH11, header_timeout_s=settings.client_timeout_s)
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", http=protocol,
                          timeout_keep_alive=settings.idle_timeout_s)


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address ``host`` resolves to (as asyncio would bind them), or one-line errors."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host} does not resolve: {exc.strerror}", "give an IP address or a known name") \
            from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = sock.getsockname()[1]  # with port 0, the free port the first address got serves the others
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise HrmcodeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                           "pick another --port, or stop what uses it") from None
    return sockets


def serve(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          sockets: list[socket.socket] | None = None) -> None:
    """Serve ``app`` until interrupted, on ``sockets`` (from ``listen(host, port)``: bind before loading a
    model, so a busy port is reported at once) or on new ones."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port", "use 1-65535 (0 picks a free one)")
    if not is_loopback(host) and (settings is None or settings.api_key is None):
        reporter().warn(f"serving on {host} without an API key: anyone who can reach this port can use the model "
                        "(set HRMCODE_API_KEY)")
    _Server(_config(app)).run(sockets=sockets or listen(host, port))


@contextlib.contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                      startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Run ``app`` in a daemon thread; yield its base URL (``http://127.0.0.1:PORT``)."""
    sockets = listen(host, port)
    server = _Server(_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, name="hrmcode-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


__all__ = ["ServeSettings", "background_server", "checkpoint_app", "create_app", "is_loopback", "listen", "serve"]
