"""A fake OpenAI-compatible server on 127.0.0.1 (loopback only) answering fixed replies.

``FakeOpenAI(answer)``: ``answer(body) -> str`` gives the reply text for a request body;
``fail_first`` makes the first N requests answer ``fail_status`` (to exercise retries).
Every request body is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, answer: Callable[[dict], str], fail_first: int = 0, fail_status: int = 429):
        self.answer = answer
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                with fake._lock:
                    fake.requests.append(body)
                    failing = len(fake.requests) <= fake.fail_first
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                elif failing:
                    self._send(fake.fail_status, {"error": {"message": "try later"}}, {"Retry-After": "0"})
                else:
                    n = int(body.get("n", 1))
                    text = fake.answer(body)
                    self._send(200, {
                        "id": "chatcmpl-test", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                                    for i in range(n)],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5 * n, "total_tokens": 10 + 5 * n},
                    })

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
