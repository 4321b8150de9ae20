"""The OpenAI-compatible HTTP app: ``create_app(engine, settings) -> FastAPI``.

``Server`` holds the app's state (the engine, settings, admission control, the generation
threads) and its endpoints as methods; ``create_app`` wires them and the error handlers into
FastAPI.

Endpoints: ``GET /health``, ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/completions``,
``POST /v1/chat/completions`` (plain JSON, or server-sent events ending with ``data: [DONE]`` when
``stream`` is true).

Guarantees:
- Every error is an OpenAI-shaped body: 400 bad request (including malformed JSON, what FastAPI
  would answer with 422, and any numeric field out of its range), 401 missing/wrong API key, 404
  unknown model or path, 408 body not received within ``client_timeout_s``, 413 body over
  ``max_body_bytes`` (checked while reading, so a lying Content-Length does not help), 429 when
  ``max_concurrency`` generations run and ``max_queue`` more wait, 500 for bugs (no traceback
  leaks to the client, and the connection stays usable for the next request).
- A request that gives a ``seed`` gets the same samples each time (choice i uses ``seed + i``); one that gives
  none gets a fresh random seed, so repeated sampled requests differ (greedy ones are the same regardless).
- ``max_tokens`` over ``max_tokens_cap`` is refused (400), not silently clipped; so is a request
  whose whole work (prompts x n x max_tokens) is over ``max_request_tokens``.
- A client that goes away stops its request's work: a queued request leaves the queue at once, a
  running one stops at the next token and starts none of its remaining choices. A generation holds
  its slot until its worker thread has really finished.
- A client that takes no part of the answer for ``client_timeout_s`` is disconnected.
- Shutting down (``Server.close``: the server calls it on SIGTERM / Ctrl-C) stops every running
  generation at its next token and answers it, and every request still queued or arriving, with a
  503 ``server_shutting_down`` (a stream: that error as its last event, no ``[DONE]``), so the
  process exits within a decode step or so, not after every running request's ``max_tokens``, and
  no client mistakes a cut-short answer for a whole one.
- ``/health`` answers without the API key; everything under ``/v1`` needs it when one is set.
- A looped model's compute budget (``max_segments``, ``halt_threshold``: ``protocol``'s extensions) is
  checked by the engine before the request is admitted (400 ``invalid_budget``), and ``usage.segments``
  reports the segments the request's generations ran.
It does not guarantee fairness beyond first-come-first-served on one event loop, nor batching
of concurrent requests into one forward pass. The other connection timeouts (idle, request
headers) are the server's (``hrmcode.serve.server``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hmac
import json
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hrmcode.errors import HrmcodeError, InputError
from hrmcode.serve.engine import Admission, Busy, Completion, Engine, SamplingParams, Ticket
from hrmcode.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    error_body,
    new_id,
    now,
    total_segments,
    usage,
)
from hrmcode.serve.settings import ServeSettings


@dataclass(frozen=True)
class _Job:
    index: int
    prompt_index: int
    prompt: str
    params: SamplingParams
    echo: str = ""


_DONE = object()
_log = logging.getLogger("uvicorn.error")  # the server's log, formatted and levelled by uvicorn

# Renders one streamed chunk: (job, None) opens the job's choice, then a text delta or the final Completion.
Render = Callable[[_Job, str | Completion | None], dict]
# The final chunk that carries usage: (prompt tokens, completion tokens, segments or None) -> chunk.
UsageChunk = Callable[[int, int, int | None], dict]


class BodyReader:
    """ASGI middleware in front of the app: reads a request's whole body, then replays it.

    Answers 413 once the body is over ``max_bytes`` and 408 when it is not complete within
    ``timeout_s`` (both close the connection). A client that takes no part of the answer for
    ``timeout_s`` (it stopped reading, or vanished without closing) has its connection closed,
    which stops a streamed generation. An exception the app's handlers did not turn into a
    response becomes a 500 here, logged with its traceback, instead of propagating to the server,
    which would drop the connection and so break the client's next keep-alive request.
    """

    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self._run(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(send, 413, f"request body is larger than this server's limit of {self.max_bytes} bytes",
                          "request_too_large")
            return
        chunks, total = [], 0
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                await _refuse(send, 408, f"the request body did not arrive within {self.timeout_s:g} s",
                              "request_timeout")
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await _refuse(send, 413, f"request body is larger than this server's limit of {self.max_bytes} "
                                         "bytes", "request_too_large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # afterwards: only http.disconnect is left to read

        await self._run(scope, replay, send)

    async def _run(self, scope, receive, send) -> None:
        started = False

        async def tracked(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            try:
                async with asyncio.timeout(self.timeout_s):  # the server's send waits while the client does not read
                    await send(message)
            except TimeoutError:
                raise _ClientStalled from None

        try:
            await self.app(scope, receive, tracked)
        except _ClientStalled:
            # Returning with the answer unfinished makes the server close the connection.
            _log.warning("closed a connection whose client took no part of the answer for %g s", self.timeout_s)
        except Exception as exc:
            if started:
                raise  # half a response is out: only closing the connection can tell the client
            _log.error("internal error answering %s %s", scope["method"], scope["path"], exc_info=exc)
            payload = json.dumps(error_body(f"internal server error ({type(exc).__name__})", "server_error")).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})


class _ClientStalled(Exception):
    """The client took no part of the answer within the timeout."""


async def _refuse(send, status: int, message: str, code: str) -> None:
    """An error answered before the body was read, closing the connection (the rest of the body is unread)."""
    payload = json.dumps(error_body(message, "invalid_request_error", code=code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "missing":
        return f"missing required parameter '{param}'", param
    return (f"invalid '{param}': {first.get('msg')}" if param else f"invalid request body: {first.get('msg')}"), param


async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.status == 429 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = _validation_message(exc)
    return JSONResponse(error_body(message, "invalid_request_error", param), status_code=400)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        message, code = f"unknown endpoint {request.method} {request.url.path}", "unknown_url"
    else:
        message, code = str(exc.detail), None
    return JSONResponse(error_body(message, "invalid_request_error", code=code), status_code=exc.status_code)


def create_app(engine: Engine, settings: ServeSettings = ServeSettings()) -> FastAPI:
    server = Server(engine, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        server.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="hrmcode", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(BodyReader, max_bytes=settings.max_body_bytes, timeout_s=settings.client_timeout_s)
    app.state.admission = server.admission
    app.state.close = server.close  # for the server, on SIGTERM / Ctrl-C (hrmcode.serve.server)
    app.state.settings = settings  # the connection timeouts, for whoever runs the app (hrmcode.serve.server)
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    keyed = [Depends(server.require_key)]
    app.get("/health")(server.health)
    app.get("/v1/models", dependencies=keyed)(server.list_models)
    app.get("/v1/models/{model_id:path}", dependencies=keyed)(server.get_model)
    app.post("/v1/completions", dependencies=keyed)(server.completions)
    app.post("/v1/chat/completions", dependencies=keyed)(server.chat_completions)
    return app


class Server:
    """The app's state (engine, settings, admission, the generation threads) and its endpoints."""

    def __init__(self, engine: Engine, settings: ServeSettings):
        self.engine, self.settings = engine, settings
        self.admission = Admission(settings.max_concurrency, settings.max_queue)
        self.pool = ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="hrmcode-generate")
        self.closing = False
        self._stops: set[threading.Event] = set()  # the running generations' stop events

    def close(self) -> None:
        """Shut down: every running generation stops at its next token, and it and every later or queued
        request are answered 503. Any thread; idempotent."""
        self.closing = True
        for stop in list(self._stops):
            stop.set()

    def shutting_down(self) -> APIError:
        return APIError(503, "the server is shutting down; this request was not completed, retry it later",
                        type="server_error", code="server_shutting_down")

    # -- checks ----------------------------------------------------------------------------
    async def require_key(self, request: Request) -> None:  # async: no worker-thread hop per request
        if self.settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        if not hmac.compare_digest(token.strip().encode(), self.settings.api_key.encode()):
            raise APIError(401, "incorrect API key provided", code="invalid_api_key")

    def model_card(self) -> dict:
        return {"id": self.engine.model_id, "object": "model", "created": 0, "owned_by": "hrmcode"}

    def check_model(self, name: str) -> None:
        if name != self.engine.model_id:
            raise APIError(404, f"the model '{name}' does not exist; this server serves '{self.engine.model_id}'",
                           param="model", code="model_not_found")

    def sampling(self, req, requested: int | None) -> SamplingParams:
        req.refuse_unsupported()
        cap = self.settings.max_tokens_cap
        max_tokens = requested if requested is not None else min(self.settings.default_max_tokens, cap)
        if max_tokens > cap:
            raise APIError(400, f"max_tokens is {max_tokens}, over this server's cap of {cap}",
                           param="max_tokens", code="max_tokens_exceeded")
        if req.max_segments is not None or req.halt_threshold is not None:
            try:
                self.engine.check_budget(req.max_segments, req.halt_threshold)
            except HrmcodeError as exc:
                given = [name for name in ("max_segments", "halt_threshold") if getattr(req, name) is not None]
                raise APIError(400, exc.message, param=given[0] if len(given) == 1 else None,
                               code="invalid_budget") from None
        return SamplingParams(max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p,
                              stop=tuple(req.stop_list), seed=fresh_seed() if req.seed is None else req.seed,
                              max_segments=req.max_segments,
                              halt_threshold=req.halt_threshold)

    def jobs_for(self, prompts: list[str], n: int, params: SamplingParams, echo: bool, param: str) -> list[_Job]:
        work, limit = len(prompts) * n * params.max_tokens, self.settings.max_request_tokens
        if work > limit:
            raise APIError(400, f"this request asks for up to {work} tokens ({len(prompts)} prompt(s) x n {n} x "
                                f"max_tokens {params.max_tokens}), over this server's limit of {limit} per request; "
                                "send fewer prompts, a smaller n or a smaller max_tokens",
                           code="max_request_tokens_exceeded")
        jobs = []
        for p, prompt in enumerate(prompts):
            try:
                self.engine.check_prompt(prompt)
            except InputError as exc:
                raise APIError(400, exc.message, param=param, code="invalid_prompt") from None
            for j in range(n):
                choice_params = dataclasses.replace(params, seed=params.seed + j)
                jobs.append(_Job(p * n + j, p, prompt, choice_params, prompt if echo else ""))
        return jobs

    # -- running generations -----------------------------------------------------------------
    async def acquire(self, request: Request) -> Ticket:
        """A generation slot; 429 at once when the queue is full too, 499 when the client goes while queued,
        503 once the server is shutting down."""
        if self.closing:
            raise self.shutting_down()
        waiting = asyncio.ensure_future(self.admission.acquire())
        gone = asyncio.ensure_future(client_gone(request))
        try:
            await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not waiting.done():
            waiting.cancel()  # leaves the queue (Admission.acquire counts it out)
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            raise APIError(499, "the client closed the request while it waited for a slot",
                           code="client_closed_request")
        try:
            ticket = waiting.result()
        except Busy:
            raise APIError(429, f"server busy: {self.admission.max_concurrency} generation(s) running and "
                           f"{self.admission.max_queue} waiting; retry later", type="rate_limit_exceeded",
                           code="rate_limit_exceeded") from None
        if self.closing:
            ticket.release()
            raise self.shutting_down()
        return ticket

    def start(self, fn: Callable[[], object], ticket: Ticket, stop: threading.Event) -> asyncio.Future:
        self._stops.add(stop)  # (close() sets it; acquire() refused this request if closing had begun)
        future = asyncio.get_running_loop().run_in_executor(self.pool, fn)

        def finished(_future: asyncio.Future) -> None:
            self._stops.discard(stop)
            ticket.release()  # the slot is free only when the thread is

        future.add_done_callback(finished)
        return future

    async def run_blocking(self, request: Request, jobs: list[_Job]) -> list[Completion]:
        ticket = await self.acquire(request)
        stop = threading.Event()

        def complete_all() -> list[Completion]:
            results = []
            for job in jobs:
                if stop.is_set():
                    break  # the client went: start none of the remaining choices
                results.append(self.engine.complete(job.prompt, job.params, stop.is_set))
            return results

        future = self.start(complete_all, ticket, stop)
        watcher = asyncio.create_task(_stop_when_gone(request, stop))
        try:
            results = await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            watcher.cancel()
        if self.closing and stop.is_set():  # cut short by close(), not finished
            raise self.shutting_down()
        return results

    async def run_streaming(self, request: Request, jobs: list[_Job], render: Render,
                            usage_chunk: UsageChunk | None) -> StreamingResponse:
        ticket = await self.acquire(request)
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        queue = _Handoff(loop)

        def produce() -> None:
            for job in jobs:
                if stop.is_set():
                    if self.closing:  # close() between two choices: the answer is not whole
                        queue.put(self.shutting_down())
                        return
                    break
                for event in self.engine.stream(job.prompt, job.params, stop.is_set):
                    if isinstance(event, Completion) and self.closing and stop.is_set():
                        queue.put(self.shutting_down())  # cut short by close(): not a finished choice
                        return
                    queue.put((job, event))
            queue.put(_DONE)

        def report_failure(f: asyncio.Future) -> None:
            if not f.cancelled() and f.exception() is not None:
                queue.put(f.exception())

        future = self.start(produce, ticket, stop)
        future.add_done_callback(report_failure)
        watcher = asyncio.create_task(_stop_when_gone(request, stop))
        return StreamingResponse(_events(queue, render, usage_chunk, stop, watcher), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- endpoints ---------------------------------------------------------------------------
    async def health(self) -> dict:
        return {"status": "ok", "model": self.engine.model_id, "running": self.admission.running,
                "waiting": self.admission.waiting}

    async def list_models(self) -> dict:
        return {"object": "list", "data": [self.model_card()]}

    async def get_model(self, model_id: str) -> dict:
        self.check_model(model_id)
        return self.model_card()

    async def completions(self, body: CompletionRequest, request: Request):
        self.check_model(body.model)
        jobs = self.jobs_for(body.prompts, body.n, self.sampling(body, body.max_tokens), body.echo, "prompt")
        ident, created = new_id("cmpl"), now()

        def envelope(choices: list[dict]) -> dict:
            return {"id": ident, "object": "text_completion", "created": created, "model": self.engine.model_id,
                    "choices": choices}

        if body.stream:
            def render(job: _Job, event: str | Completion | None) -> dict:
                if event is None:
                    return envelope([{"index": job.index, "text": job.echo, "logprobs": None, "finish_reason": None}])
                if isinstance(event, Completion):
                    return envelope([{"index": job.index, "text": "", "logprobs": None,
                                      "finish_reason": event.finish_reason}])
                return envelope([{"index": job.index, "text": event, "logprobs": None, "finish_reason": None}])

            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            usage_chunk = (lambda p, c, s: {**envelope([]), "usage": usage(p, c, s)}) if include_usage else None
            return await self.run_streaming(request, jobs, render, usage_chunk)

        results = await self.run_blocking(request, jobs)
        prompt_tokens = {job.prompt_index: r.prompt_tokens for job, r in zip(jobs, results)}
        payload = envelope([{"index": job.index, "text": job.echo + r.text, "logprobs": None,
                             "finish_reason": r.finish_reason} for job, r in zip(jobs, results)])
        payload["usage"] = usage(sum(prompt_tokens.values()), sum(r.completion_tokens for r in results),
                                 total_segments(results))
        return payload

    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        self.check_model(body.model)
        params = self.sampling(body, body.requested_max_tokens)
        try:
            prompt = self.engine.chat_prompt([(m.role, m.text()) for m in body.messages])
        except InputError as exc:
            raise APIError(400, exc.message, param="messages", code="unsupported") from None
        jobs = self.jobs_for([prompt], body.n, params, False, "messages")
        ident, created = new_id("chatcmpl"), now()

        def envelope(obj: str, choices: list[dict]) -> dict:
            return {"id": ident, "object": obj, "created": created, "model": self.engine.model_id, "choices": choices}

        if body.stream:
            def render(job: _Job, event: str | Completion | None) -> dict:
                if event is None:
                    delta, finish = {"role": "assistant", "content": ""}, None
                elif isinstance(event, Completion):
                    delta, finish = {}, event.finish_reason
                else:
                    delta, finish = {"content": event}, None
                return envelope("chat.completion.chunk",
                                [{"index": job.index, "delta": delta, "logprobs": None, "finish_reason": finish}])

            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            usage_chunk = ((lambda p, c, s: {**envelope("chat.completion.chunk", []), "usage": usage(p, c, s)})
                           if include_usage else None)
            return await self.run_streaming(request, jobs, render, usage_chunk)

        results = await self.run_blocking(request, jobs)
        payload = envelope("chat.completion", [
            {"index": job.index, "message": {"role": "assistant", "content": r.text}, "logprobs": None,
             "finish_reason": r.finish_reason} for job, r in zip(jobs, results)])
        payload["usage"] = usage(results[0].prompt_tokens, sum(r.completion_tokens for r in results),
                                 total_segments(results))
        return payload


def fresh_seed() -> int:
    """A request without a ``seed`` samples afresh, as OpenAI's API does: with a fixed default every unseeded
    sampled request (temperature defaults to 1) gave the same text, so k samples of one prompt (pass@k) were
    k copies. Below 2**62, so a choice's ``seed + i`` stays a 64-bit seed."""
    return secrets.randbelow(1 << 62)


async def client_gone(request: Request) -> None:
    """Return once the client has disconnected (or the response is complete).

    Called after the body has been read, when ``http.disconnect`` is the only message left: the
    server delivers it as soon as the connection is lost, so this needs no polling.
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _stop_when_gone(request: Request, stop: threading.Event) -> None:
    await client_gone(request)
    stop.set()


class _Handoff:
    """Items from a generating thread to the event loop, in order. The loop is woken (a self-pipe
    write and a loop pass) once for whatever has arrived since it last looked, not once per item:
    under load one wake carries several tokens' pieces."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._items: collections.deque = collections.deque()
        self._ready = asyncio.Event()
        self._wake_asked = False

    def put(self, item: object) -> None:
        """Any thread. Appends before reading the flag, and ``take`` clears the flag before reading
        the items, so an item is either seen by a ``take`` already running or wakes the next one."""
        self._items.append(item)
        if not self._wake_asked:
            self._wake_asked = True
            self._loop.call_soon_threadsafe(self._ready.set)

    async def take(self) -> list:
        """The event loop: every item that has arrived, waiting for at least one."""
        while True:
            self._wake_asked = False
            if self._items:
                return [self._items.popleft() for _ in range(len(self._items))]
            await self._ready.wait()
            self._ready.clear()


async def _events(queue: _Handoff, render: Render, usage_chunk: UsageChunk | None,
                  stop: threading.Event, watcher: asyncio.Task) -> AsyncIterator[str]:
    """The server-sent events of a streamed generation, from what the generating thread queues."""
    prompt_tokens: dict[int, int] = {}
    completion_tokens = 0
    finished: list[Completion] = []
    started: set[int] = set()
    done = False
    try:
        while not done:
            lines = []  # the events of one take, sent in one write
            for item in await queue.take():
                if item is _DONE:
                    done = True
                    break
                if isinstance(item, BaseException):
                    body = (item.body() if isinstance(item, APIError)
                            else error_body(f"generation failed ({type(item).__name__})", "server_error"))
                    yield "".join(lines) + f"data: {json.dumps(body)}\n\n"
                    return
                job, event = item
                if job.index not in started:
                    started.add(job.index)
                    lines.append(f"data: {json.dumps(render(job, None))}\n\n")
                if isinstance(event, Completion):
                    prompt_tokens[job.prompt_index] = event.prompt_tokens
                    completion_tokens += event.completion_tokens
                    finished.append(event)
                elif not event:
                    continue
                lines.append(f"data: {json.dumps(render(job, event))}\n\n")
            if lines:
                yield "".join(lines)
        if usage_chunk is not None:
            chunk = usage_chunk(sum(prompt_tokens.values()), completion_tokens, total_segments(finished))
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        stop.set()
        watcher.cancel()
