"""The LM a bug-synthesis run asks (``--llm openai:URL --llm-model NAME``): one chat request at a time
to an OpenAI-compatible ``/chat/completions`` server, through ``httpx``.

A minimal second home for what ``hrmcode.eval.backends.OpenAIBackend`` does in full (data/ may not
import eval/, see docs/architecture.md): temperature 0, a fixed ``seed``, retries with backoff on
429/5xx, timeouts and connection errors, the API key from ``$OPENAI_API_KEY`` when set. Guaranteed:
a server that cannot answer after the retries raises ``SourceUnavailable`` with the URL; an answer
without text is returned as "" (the caller decides). Not guaranteed: the same text across runs from
a remote server (even with ``seed``).
"""

from __future__ import annotations

import os
import time

from hrmcode.errors import SourceUnavailable, UsageError

PREFIX = "openai:"
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class ChatClient:
    """``chat(messages) -> text`` against ``openai:BASE_URL`` serving ``model``."""

    def __init__(self, spec: str, model: str | None, *, timeout_s: float = 120.0, retries: int = 3,
                 max_tokens: int = 1024, seed: int = 0):
        import httpx

        if not spec.startswith(PREFIX) or not spec[len(PREFIX):].startswith(("http://", "https://")):
            raise UsageError(f"--llm {spec}: expected openai:BASE_URL (http:// or https://)",
                             "e.g. --llm openai:http://127.0.0.1:8000/v1 --llm-model NAME")
        if not model:
            raise UsageError("--llm needs --llm-model", "the model name the server serves, e.g. --llm-model gpt-4o")
        self.base_url = spec[len(PREFIX):].rstrip("/")
        self.model = model
        self.retries = retries
        self.max_tokens = max_tokens
        self.seed = seed
        key = os.environ.get("OPENAI_API_KEY")
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(30.0, timeout_s)),
                                   headers={"Authorization": f"Bearer {key}"} if key else {})

    def describe(self) -> dict:
        return {"llm": f"{PREFIX}{self.base_url}", "llm_model": self.model}

    def chat(self, messages: list[dict[str, str]]) -> str:
        import httpx

        url = f"{self.base_url}/chat/completions"
        body = {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": self.max_tokens,
                "seed": self.seed, "n": 1}
        last, delay = "", 0.5
        for attempt in range(self.retries + 1):
            try:
                response = self.client.post(url, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        choices = response.json().get("choices") or [{}]
                        return str((choices[0].get("message") or {}).get("content") or "")
                    except (ValueError, AttributeError):
                        last = "the server answered 200 with a body that is not a chat completion"
                elif response.status_code in RETRY_STATUS:
                    last = f"HTTP {response.status_code}"
                else:
                    raise SourceUnavailable(f"{url} answered HTTP {response.status_code}: "
                                            f"{' '.join(response.text.split())[:200]}",
                                            "check --llm-model and the server's options")
            if attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise SourceUnavailable(f"{url} failed after {self.retries + 1} tries ({last})",
                                "check that the server is up, or drop --llm (templates need no LM)")

    def close(self) -> None:
        self.client.close()
