"""Start `hrmcode serve MODEL` on a free loopback port, send one completion request, stop it.

Used by examples/pipeline.sh; prints the server's answer as JSON on stdout.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(model: str) -> int:
    port = free_port()
    server = subprocess.Popen(["hrmcode", "serve", model, "--port", str(port)], stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                print(f"error: hrmcode serve exited with {server.returncode}", file=sys.stderr)
                return 1
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                print("error: server did not become healthy in 120 s", file=sys.stderr)
                return 1
            time.sleep(0.5)
        model_id = httpx.get(f"{base}/v1/models", timeout=10).json()["data"][0]["id"]
        reply = httpx.post(
            f"{base}/v1/completions",
            json={"model": model_id, "prompt": "def add(a, b):\n", "max_tokens": 16, "temperature": 0},
            timeout=60,
        )
        reply.raise_for_status()
        body = reply.json()
        print(json.dumps({"model": model_id, "text": body["choices"][0]["text"], "usage": body["usage"]}))
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
