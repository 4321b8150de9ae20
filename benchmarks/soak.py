"""A bounded soak of ``hrmcode serve`` on 127.0.0.1: many concurrent clients, clients that go away,
hostile and oversized requests, half-open connections; prints what happened, side by side per kind.

    python benchmarks/soak.py                                   # 600 requests, 24 clients, at most 90 s
    python benchmarks/soak.py --requests 200 --clients 8 --duration 30

It makes its own tiny random-init model (seconds), starts the real command line
(``python -m hrmcode serve MODEL --port P --max-concurrency 2 --max-queue 8 --client-timeout 2
--idle-timeout 2``, the API key from ``HRMCODE_API_KEY``) as a subprocess bound to 127.0.0.1, and
sends a seeded mix of requests from a pool of client threads. It stops by itself: after
``--requests`` requests or ``--duration`` seconds, whichever comes first (each request has its own
timeout), then stops the server. Nothing but 127.0.0.1 is contacted.

Each kind of request has the outcomes it may have; anything else counts as an error:

| kind | what the client does | expected |
|---|---|---|
| plain, chat | a completion / chat completion, max_tokens 8-64 | 200, or 429 when the queue is full |
| stream | a streamed completion, read to ``data: [DONE]`` | 200 with [DONE], or 429 |
| gone-stream | a streamed completion of 16 choices, closed after its first event | closed by us, or 429 |
| gone-plain | a 16-choice completion whose client gives up after 0.2 s | gave up, 200 if it was that fast, or 429 |
| over-work | 1000 prompts x n 16 x max_tokens 1024 (the 13 KB body of issue 13) | 400 max_request_tokens_exceeded |
| over-body | a 2 MiB prompt | 413 |
| bad-seed | ``seed: 2**70`` | 400 |
| half-open | connects and sends nothing | the server closes it (after ``--idle-timeout``) |

The server's side comes from outside it: /proc (resident set before the load, after it, and its
peak; open file descriptors; threads), ``/health`` after the load (every slot free, nothing
queued), and its stderr (tracebacks). Latency is a client's time from sending to the whole answer
for the generation kinds that got a 200.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

KEY = "soak-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CLIENT_TIMEOUT_S = 2
IDLE_TIMEOUT_S = 2
EXPECTED = {
    "plain": {"200", "429"},
    "chat": {"200", "429"},
    "stream": {"200 [DONE]", "429"},
    "gone-stream": {"closed by client", "429"},
    "gone-plain": {"client gave up", "200", "429"},
    "over-work": {"400 max_request_tokens_exceeded"},
    "over-body": {"413"},
    "bad-seed": {"400 seed"},
    "half-open": {"closed by server"},
}
WEIGHTS = {"plain": 30, "chat": 15, "stream": 20, "gone-stream": 8, "gone-plain": 8, "over-work": 6, "over-body": 4,
           "bad-seed": 5, "half-open": 4}
GENERATING = ("plain", "chat", "stream")


def tiny_model(root: Path) -> Path:
    """A random-init model artifact on the ``tiny`` preset, with a tokenizer trained on a few snippets."""
    import torch

    from hrmcode.artifacts import ArtifactWriter
    from hrmcode.model import build_model, preset
    from hrmcode.model.checkpoint import save_checkpoint
    from hrmcode.model.tokenizer import CodeTokenizer

    texts = [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(60)]
    tokenizer = CodeTokenizer.train(texts, vocab_size=300)
    torch.manual_seed(0)
    model = build_model(preset("tiny", vocab_size=tokenizer.vocab_size, max_seq_len=256))
    with ArtifactWriter(root / "model", "model", update_latest=False) as writer:
        for name in save_checkpoint(writer.stage, model, tokenizer):
            writer.add(name)
        writer.finish()
    return root / "model"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int) -> dict:
    """Resident set now and at its peak (MB), threads and open file descriptors of a running process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "peak_mb": int(fields["VmHWM"].split()[0]) / 1024,
            "threads": int(fields["Threads"]), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


# -- one request of each kind: (outcome, seconds) ---------------------------------------------
def completion(rng: random.Random, **extra) -> dict:
    return {"model": "soak", "prompt": f"def f{rng.randrange(60)}(x):", "max_tokens": rng.randint(8, 64),
            "temperature": rng.choice([0.0, 0.8]), "seed": rng.randrange(1 << 32), **extra}


def status_of(response: httpx.Response) -> str:
    if response.status_code == 400:
        error = response.json()["error"]
        return f"400 {error['code'] or error['param']}"
    return str(response.status_code)


def run_one(kind: str, url: str, rng: random.Random) -> tuple[str, float]:
    start = time.monotonic()
    try:
        outcome = OUTCOMES[kind](url, rng)
    except httpx.ReadTimeout:
        outcome = "client gave up" if kind == "gone-plain" else "timeout"
    except (httpx.TransportError, OSError) as exc:
        outcome = f"connection error ({type(exc).__name__})"
    return outcome, time.monotonic() - start


def plain(url: str, rng: random.Random) -> str:
    return status_of(httpx.post(f"{url}/v1/completions", headers=AUTH, json=completion(rng), timeout=60))


def chat(url: str, rng: random.Random) -> str:
    body = {"model": "soak", "messages": [{"role": "user", "content": "add two numbers"}],
            "max_tokens": rng.randint(8, 64)}
    return status_of(httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=body, timeout=60))


def stream(url: str, rng: random.Random) -> str:
    with httpx.stream("POST", f"{url}/v1/completions", headers=AUTH, json=completion(rng, stream=True),
                      timeout=60) as response:
        if response.status_code != 200:
            response.read()
            return status_of(response)
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    return "200 [DONE]" if lines and lines[-1] == "data: [DONE]" else "200 without [DONE]"


def gone_stream(url: str, rng: random.Random) -> str:
    with httpx.stream("POST", f"{url}/v1/completions", headers=AUTH,
                      json=completion(rng, stream=True, n=16, max_tokens=256), timeout=60) as response:
        if response.status_code != 200:
            response.read()
            return status_of(response)
        for line in response.iter_lines():
            if line.startswith("data: "):
                return "closed by client"  # leaving the block closes the connection mid-stream
    return "200 ended before the client left"


def gone_plain(url: str, rng: random.Random) -> str:
    return status_of(httpx.post(f"{url}/v1/completions", headers=AUTH, json=completion(rng, n=16, max_tokens=256),
                                timeout=0.2))


def over_work(url: str, _rng: random.Random) -> str:
    body = {"model": "soak", "prompt": ["def f(x):"] * 1000, "n": 16, "max_tokens": 1024}
    return status_of(httpx.post(f"{url}/v1/completions", headers=AUTH, json=body, timeout=60))


def over_body(url: str, _rng: random.Random) -> str:
    body = {"model": "soak", "prompt": "x" * (2 << 20)}
    return status_of(httpx.post(f"{url}/v1/completions", headers=AUTH, json=body, timeout=60))


def bad_seed(url: str, rng: random.Random) -> str:
    return status_of(httpx.post(f"{url}/v1/completions", headers=AUTH, json=completion(rng, seed=2**70), timeout=60))


def half_open(url: str, _rng: random.Random) -> str:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=IDLE_TIMEOUT_S + 5) as sock:
        try:
            return "closed by server" if sock.recv(1) == b"" else "server sent data"
        except TimeoutError:
            return "still open"


OUTCOMES = {"plain": plain, "chat": chat, "stream": stream, "gone-stream": gone_stream, "gone-plain": gone_plain,
            "over-work": over_work, "over-body": over_body, "bad-seed": bad_seed, "half-open": half_open}


# -- the soak ------------------------------------------------------------------------------------
def start_server(model: Path, port: int, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "hrmcode", "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
               "--model-name", "soak", "--max-concurrency", "2", "--max-queue", "8", "--threads", "1",
               "--client-timeout", str(CLIENT_TIMEOUT_S), "--idle-timeout", str(IDLE_TIMEOUT_S)]
    process = subprocess.Popen(command, env=dict(os.environ, HRMCODE_API_KEY=KEY), stdout=log, stderr=log)
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the server did not come up within 120 s")
        time.sleep(0.2)


def soak(url: str, requests: int, clients: int, duration_s: float, seed: int) -> list[tuple[str, str, float]]:
    rng = random.Random(seed)
    kinds = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=requests)
    seeds = [rng.randrange(1 << 32) for _ in kinds]
    deadline = time.monotonic() + duration_s
    results: list[tuple[str, str, float]] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        if time.monotonic() > deadline:
            return  # the time bound: requests not yet started are not sent
        outcome, seconds = run_one(kinds[index], url, random.Random(seeds[index]))
        with lock:
            results.append((kinds[index], outcome, seconds))

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(requests)))
    return results


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def report(results: list[tuple[str, str, float]], wall_s: float, before: dict, after: dict, health: dict,
           freed_s: float | None, tracebacks: int) -> bool:
    by_kind: dict[str, Counter] = defaultdict(Counter)
    latency: dict[str, list[float]] = defaultdict(list)
    for kind, outcome, seconds in results:
        by_kind[kind][outcome] += 1
        if kind in GENERATING and outcome.startswith("200"):
            latency[kind].append(seconds)
    errors = {kind: sum(n for outcome, n in counts.items() if outcome not in EXPECTED[kind])
              for kind, counts in by_kind.items()}

    print(f"\n{len(results)} requests in {wall_s:.1f} s (load average {os.getloadavg()[0]:.2f})\n")
    print("| kind | sent | outcomes | errors | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    for kind in WEIGHTS:
        counts = by_kind.get(kind, Counter())
        outcomes = ", ".join(f"{outcome}: {n}" for outcome, n in counts.most_common())
        times = latency.get(kind)
        p50 = f"{statistics.median(times) * 1000:.0f}" if times else "-"
        p95 = f"{percentile(times, 95) * 1000:.0f}" if times else "-"
        print(f"| {kind} | {sum(counts.values())} | {outcomes or '-'} | {errors.get(kind, 0)} | {p50} | {p95} |")
    every = [t for times in latency.values() for t in times]
    total_errors = sum(errors.values())
    p50 = f"{statistics.median(every) * 1000:.0f}" if every else "-"
    p95 = f"{percentile(every, 95) * 1000:.0f}" if every else "-"
    print(f"| **all** | {len(results)} | | {total_errors} | {p50} | {p95} |")

    print("\n| server | before the load | after it |")
    print("|---|---|---|")
    print(f"| resident set MB | {before['rss_mb']:.0f} | {after['rss_mb']:.0f} (peak {after['peak_mb']:.0f}) |")
    print(f"| open file descriptors | {before['fds']} | {after['fds']} |")
    print(f"| threads | {before['threads']} | {after['threads']} |")
    freed = f"yes, {freed_s:.2f} s after the last client" if freed_s is not None else "NO"
    print(f"| /health after the load | | running {health['running']}, waiting {health['waiting']} "
          f"(all slots free: {freed}) |")
    print(f"| tracebacks in the server's log | | {tracebacks} |")
    return total_errors == 0 and freed_s is not None and tracebacks == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="requests to send at most")
    parser.add_argument("--clients", type=int, default=24, help="concurrent client threads")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds to send for at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hrmcode-soak-") as tmp:
        model = tiny_model(Path(tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(tmp) / "server.log"
        with open(log_path, "w") as log:
            server = start_server(model, port, log)
            try:
                for _ in range(3):  # warm-up: the first generation loads what the rest reuse
                    httpx.post(f"{url}/v1/completions", headers=AUTH, json={"model": "soak", "prompt": "def f(x):",
                                                                             "max_tokens": 64}, timeout=60)
                before = proc_status(server.pid)
                start = time.monotonic()
                results = soak(url, args.requests, args.clients, args.duration, args.seed)
                wall = time.monotonic() - start
                freed_s = None
                ended = time.monotonic()
                while time.monotonic() - ended < 10:
                    health = httpx.get(f"{url}/health", timeout=5).json()
                    if (health["running"], health["waiting"]) == (0, 0):
                        freed_s = time.monotonic() - ended
                        break
                    time.sleep(0.05)
                time.sleep(IDLE_TIMEOUT_S + 0.5)  # idle connections the load left are closed by now
                after = proc_status(server.pid)
            finally:
                server.terminate()
                server.wait(timeout=30)
        tracebacks = log_path.read_text(errors="replace").count("Traceback")
    ok = report(results, wall, before, after, health, freed_s, tracebacks)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
