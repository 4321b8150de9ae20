"""A scripted ``Engine`` for HTTP-layer tests: it "generates" a fixed reply one character per token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from hrmcode.errors import InputError
from hrmcode.serve.engine import Completion, SamplingParams


class FakeEngine:
    model_id = "fake-model"

    def __init__(self, reply: str = "def add(a, b):\n    return a + b\n\n# done", delay_s: float = 0.0,
                 gate: threading.Event | None = None):
        self.reply = reply
        self.delay_s = delay_s
        self.gate = gate
        self.started = threading.Semaphore(0)  # released once per generation that starts
        self.finished: list[Completion] = []

    def chat_prompt(self, messages: list[tuple[str, str]]) -> str:
        return "".join(f"<{role}>{text}" for role, text in messages) + "<assistant>"

    def check_prompt(self, prompt: str) -> int:
        if not prompt:
            raise InputError("the prompt is empty", "send some text")
        return len(prompt)

    def stream(self, prompt: str, params: SamplingParams, should_stop: Callable[[], bool]) -> Iterator[str | Completion]:
        self.started.release()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        text, reason = "", "length"
        for count, char in enumerate(self.reply):
            if count >= params.max_tokens:
                break
            if should_stop():
                reason = "stop"
                break
            if self.delay_s:
                time.sleep(self.delay_s)
            candidate = text + char
            hit = next((s for s in params.stop if s in candidate), None)
            if hit is not None:
                reason = "stop"
                break
            text = candidate
            yield char
        else:
            reason = "stop"  # the whole reply: like reaching EOS
        done = Completion(text, len(prompt), len(text), reason)
        self.finished.append(done)
        yield done

    def complete(self, prompt: str, params: SamplingParams, should_stop: Callable[[], bool]) -> Completion:
        *_pieces, done = self.stream(prompt, params, should_stop)
        return done
