"""What the HTTP layer needs from a model (``Engine``), and the admission control in front of it.

``Engine`` is synchronous and runs in worker threads; the HTTP layer never touches torch.
``ModelEngine`` (in ``model_engine.py``) implements it on a loaded checkpoint through
``hrmcode.model.generate``; tests also use small fakes to drive the queue and error paths.

``Admission`` guarantees at most ``max_concurrency`` generations run at once and at most
``max_queue`` more wait; a request beyond that is refused at once (HTTP 429), never queued
without bound. It must be used from one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    max_segments: int | None = None  # the request's compute budget (hrm/trm); None: the server's default
    halt_threshold: float | None = None


@dataclass(frozen=True)
class Completion:
    """One finished generation. ``finish_reason`` is ``stop`` (stop sequence, EOS, or the client
    went away) or ``length`` (``max_tokens`` reached). ``segments``: what the generation ran (hrm/trm
    models; None for models without segments)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    segments: int | None = None


class Engine(Protocol):
    model_id: str

    def chat_prompt(self, messages: list[tuple[str, str]]) -> str:
        """Render (role, text) messages as the prompt text the model was trained on (a checkpoint's own
        prompt format, ``hrmcode.model.prompt``); ``InputError`` for a role it cannot render."""

    def check_prompt(self, prompt: str) -> int:
        """The prompt's token count; raise ``hrmcode.errors.InputError`` when it cannot be served."""

    def check_budget(self, max_segments: int | None, halt_threshold: float | None) -> None:
        """Raise an ``hrmcode.errors.HrmcodeError`` when a request's compute budget cannot be honoured
        (asked only of requests that give one)."""

    def complete(self, prompt: str, params: SamplingParams, should_stop: Callable[[], bool]) -> Completion:
        """Generate to the end; stop early (finish_reason ``stop``) once ``should_stop()`` is true."""

    def stream(self, prompt: str, params: SamplingParams, should_stop: Callable[[], bool]) -> Iterator[str | Completion]:
        """Yield text pieces as they are produced, then one final ``Completion`` (its ``text`` is the
        whole generated text, equal to the concatenated pieces)."""


class Busy(Exception):
    """All slots and the whole queue are taken."""


class Ticket:
    """A held generation slot; ``release`` is idempotent."""

    def __init__(self, admission: "Admission"):
        self._admission = admission
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission._release()


class Admission:
    def __init__(self, max_concurrency: int, max_queue: int):
        if max_concurrency < 1 or max_queue < 0:
            raise ValueError("max_concurrency must be >= 1 and max_queue >= 0")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.running = 0
        self.waiting = 0
        self._semaphore: asyncio.Semaphore | None = None

    async def acquire(self) -> Ticket:
        """Wait for a slot; raise ``Busy`` at once when the queue is full too."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        if self.running + self.waiting >= self.max_concurrency + self.max_queue:
            raise Busy
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        return Ticket(self)

    def _release(self) -> None:
        self.running -= 1
        assert self._semaphore is not None
        self._semaphore.release()
