"""Model backends for ``hrmcode eval``: where a benchmark's answers come from.

``--model`` picks one:

- ``oracle``: the task's reference solution (a correct harness must score the maximum with it);
- ``stub``: the unchanged starting files (no answer at all; scores about 0);
- ``openai:BASE_URL`` with ``--model-name``: any OpenAI-compatible ``/chat/completions`` server,
  through ``httpx``: temperature, n, max_tokens, a cap on concurrent requests, a per-request
  timeout, and retries with exponential backoff (honouring ``Retry-After``) on 429, 5xx, timeouts
  and connection errors. The API key is read from ``$OPENAI_API_KEY`` when set; each request names
  its task in OpenAI's ``user`` field (the server sees it, the model's prompt does not);
- ``samples:FILE``: answers computed elsewhere, in the official harnesses' formats (human-eval
  ``{task_id, completion}`` JSONL; LiveCodeBench ``[{"question_id", "code_list"}]``; polyglot JSONL
  ``{id, reply}`` / ``{id, replies: [...]}`` / ``{id, files: {path: text}}``);
- ``checkpoint:PATH``: an hrmcode model (``hrmcode.quantize.load_any`` + ``generate``).

A compute budget for looped models (``Generation.max_segments``, ``halt_threshold``:
``--max-segments``, ``--halt-threshold``) reaches a checkpoint's ``generate`` (a budget its model
cannot honour, a transformer's, is refused before any case), and an ``openai:`` server as the body
extension ``hrmcode serve`` reads (another server may refuse or ignore the fields); the others,
which generate nothing, refuse it. ``Reply.segments`` is what a reply's generation ran (a
checkpoint's, or an ``hrmcode serve`` reply's ``usage.segments``); ``segments_field`` puts the mean
over a case's replies into its record.

Every backend answers a ``Request`` with ``Reply`` objects. ``Reply.raw`` says the text is already
in the benchmark's own answer format (a human-eval completion, a program, an edit reply); a chat
model's reply is not (``raw=False``) and the benchmark extracts the code from it. Oracle and stub
know no benchmark: they ask the request's ``answer_key`` (the benchmark itself) for its answer.

Guarantees: a request whose prompt does not fit the model's context raises ``PromptTooLong``
(the checkpoint checks before generating; a server's 400 that says so is mapped to it), which
every benchmark records as that case's failure with the reason, and the run goes on. A backend
that cannot answer otherwise (server down after all retries, bad checkpoint) raises an
``HrmcodeError``; the run stops and keeps every finished case, so a rerun resumes. Not
guaranteed: identical answers across runs from a remote server (even with ``seed``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hrmcode.data.schema import Task
from hrmcode.errors import CheckpointError, InputError, SourceUnavailable, UsageError
from hrmcode.executor import rebuilt_on_worker
from hrmcode.openai_client import PromptTooLong, post_chat

BACKEND_SPECS = ("oracle", "stub", "openai:BASE_URL", "samples:FILE", "checkpoint:PATH")


@dataclass
class Request:
    """One question to a model. ``messages`` is the chat so far (OpenAI roles); ``files`` the
    current working files (polyglot); ``attempt`` counts from 1 (polyglot tries and reflections)."""

    bench: str
    task: Task
    messages: list[dict[str, str]]
    n: int = 1
    attempt: int = 1
    files: dict[str, str] | None = None
    edit_format: str | None = None
    answer_key: AnswerKey | None = None  # the asking benchmark: oracle and stub take their answers from it


@dataclass
class Reply:
    text: str
    raw: bool = False  # already in the benchmark's answer format (no code extraction)
    files: dict[str, str] | None = None  # whole new files (polyglot samples), applied as they are
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    segments: float | None = None  # segments its generation ran (looped models); None when not reported


@dataclass
class Generation:
    """Sampling options shared by the generating backends."""

    temperature: float = 0.0
    max_tokens: int = 2048
    top_p: float = 1.0
    seed: int = 0
    timeout_s: float = 600.0
    retries: int = 6
    concurrency: int = 4
    stop: list[str] = field(default_factory=list)
    max_segments: int | None = None  # looped models' compute budget (hrmcode.model.halting); None: the model's
    halt_threshold: float | None = None

    @property
    def budget(self) -> dict[str, Any]:
        """The compute budget's fields that are set (what a run's model description and body carry)."""
        return {name: getattr(self, name) for name in ("max_segments", "halt_threshold")
                if getattr(self, name) is not None}


def segments_field(replies: Sequence[Reply]) -> dict[str, float]:
    """``{"segments": mean}`` over the replies whose generation reported segments; ``{}`` when none did."""
    spent = [reply.segments for reply in replies if reply.segments is not None]
    return {"segments": round(sum(spent) / len(spent), 3)} if spent else {}


class Backend(Protocol):
    name: str

    def describe(self) -> dict[str, Any]: ...

    def complete(self, request: Request) -> list[Reply]: ...


class AnswerKey(Protocol):
    """What only a benchmark knows about its answers: its task's reference solution and the answer
    that changes nothing, each in the benchmark's own answer format (``Reply.raw``)."""

    def reference_answer(self, request: Request) -> Reply: ...

    def stub_answer(self, request: Request) -> Reply: ...


# -- oracle and stub -----------------------------------------------------------------------------

def _answer_key(request: Request, model: str) -> AnswerKey:
    if request.answer_key is None:
        raise UsageError(f"{request.bench} does not supply its own answers, so --model {model} cannot answer it",
                         "use --model openai:URL, samples:FILE or checkpoint:PATH")
    return request.answer_key


class _AnswerKeyBackend:
    """A backend that takes every reply from the benchmark's own answer key (``answer``)."""

    name: str

    def describe(self) -> dict[str, Any]:
        return {"model": self.name}

    def complete(self, request: Request) -> list[Reply]:
        key = _answer_key(request, self.name)
        return [self.answer(key, request) for _ in range(request.n)]

    def answer(self, key: AnswerKey, request: Request) -> Reply:
        raise NotImplementedError


class OracleBackend(_AnswerKeyBackend):
    name = "oracle"

    def answer(self, key: AnswerKey, request: Request) -> Reply:
        return key.reference_answer(request)


class StubBackend(_AnswerKeyBackend):
    name = "stub"

    def answer(self, key: AnswerKey, request: Request) -> Reply:
        return key.stub_answer(request)


# -- samples files -------------------------------------------------------------------------------

def _sample_keys(task: Task) -> list[str]:
    """Names a samples file may use for ``task``: our id, the id without its source, the source's own id."""
    keys = [task.id, task.id.split("/", 1)[1]]
    for field_name in ("task_id", "question_id"):
        value = task.metadata.get(field_name)
        if isinstance(value, (str, int)):
            keys.append(str(value))
    return keys


class SamplesBackend:
    """Precomputed answers. Each task gets, in file order, the answers recorded for it."""

    name = "samples"

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"samples file {self.path} does not exist", "pass --model samples:FILE with an existing file")
        self.answers: dict[str, list[Reply]] = {}
        self.replies: dict[str, list[Reply]] = {}  # polyglot: one per try
        text = self.path.read_text(encoding="utf-8")
        stripped = text.lstrip()
        if stripped.startswith("["):
            self._load_lcb(text)
        else:
            self._load_jsonl(text)
        if not self.answers and not self.replies:
            raise InputError(f"{self.path} holds no samples", "expected human-eval, LiveCodeBench or polyglot samples")

    def _load_lcb(self, text: str) -> None:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{self.path}: malformed JSON ({exc.msg} at line {exc.lineno})", "fix the samples file") from None
        for index, record in enumerate(records):
            if not isinstance(record, dict) or "question_id" not in record or not isinstance(record.get("code_list"), list):
                raise InputError(f"{self.path}: item {index} lacks question_id/code_list", 'expected [{"question_id", "code_list"}]')
            self.answers.setdefault(str(record["question_id"]), []).extend(Reply(text=str(c), raw=True) for c in record["code_list"])

    def _load_jsonl(self, text: str) -> None:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{self.path}:{lineno}: malformed JSON ({exc.msg})", "fix or remove that line") from None
            if not isinstance(record, dict):
                raise InputError(f"{self.path}:{lineno}: expected a JSON object", "one sample per line")
            if "task_id" in record and "completion" in record:
                self.answers.setdefault(str(record["task_id"]), []).append(Reply(text=str(record["completion"]), raw=True))
            elif "id" in record and ("reply" in record or "replies" in record or "files" in record):
                key = str(record["id"])
                if "files" in record:
                    if not isinstance(record["files"], dict):
                        raise InputError(f"{self.path}:{lineno}: 'files' must map path -> text", "fix that line")
                    self.replies.setdefault(key, []).append(Reply(text="", raw=True, files=dict(record["files"])))
                else:
                    texts = record["replies"] if "replies" in record else [record["reply"]]
                    self.replies.setdefault(key, []).extend(Reply(text=str(t), raw=True) for t in texts)
            elif "question_id" in record and "code_list" in record:
                self.answers.setdefault(str(record["question_id"]), []).extend(Reply(text=str(c), raw=True) for c in record["code_list"])
            else:
                raise InputError(
                    f"{self.path}:{lineno}: not a sample record",
                    "expected {task_id, completion}, {question_id, code_list} or {id, reply|replies|files}",
                )

    def describe(self) -> dict[str, Any]:
        return {"model": f"samples:{self.path}"}

    def available(self, task: Task) -> int:
        """How many answers (or, for polyglot, recorded turns) the file holds for ``task``."""
        for key in _sample_keys(task):
            if key in self.answers:
                return len(self.answers[key])
            if key in self.replies:
                return len(self.replies[key])
        return 0

    def complete(self, request: Request) -> list[Reply]:
        keys = _sample_keys(request.task)
        if request.files is not None:  # a benchmark that edits files turn by turn
            for key in keys:
                if key in self.replies:
                    replies = self.replies[key]
                    # one recorded reply per model turn; past the end the model "says nothing"
                    index = request.attempt - 1
                    return [replies[index] if index < len(replies) else Reply(text="", raw=True)]
            return [Reply(text="", raw=True)]
        for key in keys:
            if key in self.answers:
                return self.answers[key][: request.n]
        return []


# -- OpenAI-compatible servers -------------------------------------------------------------------



class OpenAIBackend:
    """``/chat/completions`` of any OpenAI-compatible server."""

    name = "openai"

    def __init__(self, base_url: str, model_name: str | None, generation: Generation, api_key: str | None = None):
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"--model openai:{base_url}: the base URL must start with http:// or https://",
                             "e.g. --model openai:http://127.0.0.1:8000/v1")
        if not model_name:
            raise UsageError("--model openai:... needs --model-name", "the model name the server serves, e.g. --model-name gpt-4o")
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.generation = generation
        self.api_key = api_key  # for a Ray worker's own client
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=httpx.Timeout(generation.timeout_s, connect=min(30.0, generation.timeout_s)),
                                   headers=headers)
        self._slots = threading.Semaphore(max(1, generation.concurrency))

    def describe(self) -> dict[str, Any]:
        g = self.generation
        return {"model": f"openai:{self.base_url}", "model_name": self.model_name, "temperature": g.temperature,
                "max_tokens": g.max_tokens, "top_p": g.top_p, **g.budget}

    def _post(self, body: dict) -> dict:
        return post_chat(self.client, f"{self.base_url}/chat/completions", body, retries=self.generation.retries,
                         rejected_hint="check --model-name and the server's options",
                         down_hint="check that the server is up; rerun with the same --out to resume",
                         slots=self._slots)

    def complete(self, request: Request) -> list[Reply]:
        g = self.generation
        replies: list[Reply] = []
        while len(replies) < request.n:
            body: dict[str, Any] = {
                "model": self.model_name, "messages": request.messages, "temperature": g.temperature,
                "top_p": g.top_p, "max_tokens": g.max_tokens, "n": request.n - len(replies), "seed": g.seed + len(replies),
            }
            if g.stop:
                body["stop"] = g.stop
            body.update(g.budget)  # hrmcode serve's extension of the body
            if request.task is not None:
                # OpenAI's end-user field: lets a server (a replay or scripted server, a gateway's logs) tell
                # tasks apart without the id in the prompt, where it would tell the model what the task is
                body["user"] = request.task.id
            started = time.monotonic()
            data = self._post(body)
            seconds = time.monotonic() - started
            choices = data.get("choices") or []
            if not choices:
                raise SourceUnavailable(f"{self.base_url} returned no choices", "check the server's logs")
            usage = data.get("usage") or {}
            segments = usage.get("segments")  # hrmcode serve: summed over the choices
            for index, choice in enumerate(choices[: request.n - len(replies)]):
                content = (choice.get("message") or {}).get("content") or ""
                replies.append(Reply(
                    text=content, raw=False, seconds=seconds / len(choices),
                    prompt_tokens=int(usage.get("prompt_tokens", 0)) if index == 0 else 0,
                    completion_tokens=int(usage.get("completion_tokens", 0)) // len(choices),
                    segments=segments / len(choices) if isinstance(segments, (int, float)) else None,
                ))
        return replies


# -- hrmcode checkpoints -------------------------------------------------------------------------

class CheckpointBackend:
    """An hrmcode checkpoint, generating in process (one request at a time).

    The request's messages are rendered by the checkpoint's own prompt format (``config.prompt``)
    with serve's default chat level, so a request gives the same prompt ids here as through
    ``--model openai:URL`` against ``hrmcode serve`` of the same checkpoint.
    """

    name = "checkpoint"

    def __init__(self, path: Path | str, generation: Generation):
        self.path = Path(path)
        self.generation = generation
        try:
            from hrmcode.quantize import load_any
            from hrmcode.model.generate import GenerationConfig, generate, halt_policy
        except ImportError as exc:
            raise CheckpointError(f"checkpoint models are not available in this build ({exc})",
                                  "install hrmcode with its model package, or use --model openai:URL") from None
        self._generate = generate
        self._config = GenerationConfig
        self.loaded = load_any(self.path)
        halt_policy(self.loaded.config, generation.max_segments, generation.halt_threshold)  # refused before any case
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        g = self.generation
        return {"model": f"checkpoint:{self.path}", "temperature": g.temperature, "max_tokens": g.max_tokens,
                **g.budget}

    def complete(self, request: Request) -> list[Reply]:
        g = self.generation
        messages = [(m["role"], m.get("content") or "") for m in request.messages]
        prompt = self.loaded.config.prompt.encode_chat(self.loaded.tokenizer, messages)
        context = self.loaded.model.config.max_seq_len
        if len(prompt) >= context:
            raise PromptTooLong(f"the prompt has {len(prompt)} tokens, the model's context is {context}",
                                "a model with a longer context, or a shorter prompt")
        replies = []
        for index in range(request.n):
            config = self._config(max_new_tokens=g.max_tokens, temperature=g.temperature, top_p=g.top_p,
                                  stop=list(g.stop), seed=g.seed + index, max_segments=g.max_segments,
                                  halt_threshold=g.halt_threshold)
            started = time.monotonic()
            with self._lock:
                result = self._generate(self.loaded.model, self.loaded.tokenizer, prompt, config)
            replies.append(Reply(text=result.text, raw=False, seconds=time.monotonic() - started,
                                 prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                                 segments=result.segments))
        return replies


def make_backend(spec: str, *, model_name: str | None = None, generation: Generation | None = None,
                 api_key: str | None = None) -> Backend:
    """Parse ``--model``: ``oracle``, ``stub``, ``openai:URL``, ``samples:FILE`` or ``checkpoint:PATH``."""
    generation = generation or Generation()
    kind, _, rest = spec.partition(":")
    if generation.budget and kind not in ("openai", "checkpoint"):
        raise UsageError(f"--max-segments and --halt-threshold budget a model's generation, and --model {spec} "
                         "generates nothing", "drop them, or use --model checkpoint:PATH or openai:URL")
    if spec == "oracle":
        return OracleBackend()
    if spec == "stub":
        return StubBackend()
    if kind == "openai" and rest:
        return OpenAIBackend(rest, model_name, generation, api_key=api_key)
    if kind == "samples" and rest:
        return SamplesBackend(rest)
    if kind == "checkpoint" and rest:
        return CheckpointBackend(rest, generation)
    raise UsageError(f"unknown --model '{spec}'", f"use one of: {', '.join(BACKEND_SPECS)}")


# --executor ray: a worker gets a backend's arguments and builds its own (an HTTP client, a loaded model and
# their locks cannot be sent); a checkpoint's path must exist on the worker's node
rebuilt_on_worker(OpenAIBackend, lambda b: (b.base_url, b.model_name, b.generation, b.api_key),
                  lambda state: OpenAIBackend(*state))
rebuilt_on_worker(CheckpointBackend, lambda b: (b.path, b.generation), lambda state: CheckpointBackend(*state))
