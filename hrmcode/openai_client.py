"""The one HTTP transport to OpenAI-compatible ``/chat/completions`` servers.

``eval --model openai:URL`` (``hrmcode.eval.backends.OpenAIBackend``) and ``synthesize --llm openai:URL``
(``hrmcode.data.bugs.lm.ChatClient``) both post through ``post_chat``: retries with exponential backoff
and jitter (honouring ``Retry-After``) on 408/409/429/5xx, timeouts and connection errors; a 400 that
says the prompt does not fit the model's context (OpenAI's ``context_length_exceeded`` code, vLLM's
"maximum context length", hrmcode serve's "the model's context is N") raises ``PromptTooLong``; any
other answer, or a server that cannot answer after the retries, raises ``SourceUnavailable`` with the
URL and the caller's hint. Not guaranteed: the same text across runs from a remote server.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

from hrmcode.errors import InputError, SourceUnavailable

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class PromptTooLong(InputError):
    """This request's prompt does not fit the model's context: the case fails (or the request is
    skipped), the run goes on."""


def error_text(response: Any) -> str:
    """The server's error message (its JSON ``error.message``, else the body), on one line."""
    try:
        error = response.json().get("error") or {}
        message = str(error.get("message") or "") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = ""
    return " ".join((message or response.text).split())[:200]


def says_context_exceeded(response: Any) -> bool:
    """OpenAI's ``context_length_exceeded`` code, vLLM's "maximum context length", hrmcode serve's
    "the model's context is N"."""
    try:
        error = response.json().get("error") or {}
        code = error.get("code") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        code = None
    text = error_text(response).lower()
    return code == "context_length_exceeded" or "maximum context length" in text or "the model's context is" in text


def post_chat(client: Any, url: str, body: dict, *, retries: int, rejected_hint: str, down_hint: str,
              slots: threading.Semaphore | None = None) -> dict:
    """The JSON answer of ``POST url`` with ``body`` through the httpx ``client`` (``slots`` caps
    concurrent requests); ``rejected_hint`` goes with an answer that retrying cannot change,
    ``down_hint`` with a server that failed every try."""
    import httpx

    delay, last = 0.5, ""
    for attempt in range(retries + 1):
        try:
            if slots is None:
                response = client.post(url, json=body)
            else:
                with slots:
                    response = client.post(url, json=body)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 200:
                try:
                    return response.json()
                except json.JSONDecodeError:
                    last = "the server answered 200 with a body that is not JSON"
            elif response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after")
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    delay = max(delay, min(float(retry_after), 60.0))
            elif response.status_code == 400 and says_context_exceeded(response):
                raise PromptTooLong(f"the model's context is too short for this prompt ({error_text(response)})",
                                    "a model with a longer context, or a shorter prompt")
            else:
                raise SourceUnavailable(f"{url} answered HTTP {response.status_code}: "
                                        f"{' '.join(response.text.split())[:200]}", rejected_hint)
        if attempt < retries:
            time.sleep(delay * (1 + 0.25 * random.random()))
            delay = min(delay * 2, 30.0)
    raise SourceUnavailable(f"{url} failed after {retries + 1} tries ({last})", down_hint)
