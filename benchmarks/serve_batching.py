"""Serving many clients: aggregate tokens/s and first-token latency with 1, 2, 4 and 8 concurrent
clients, continuous batching on (``--max-concurrency 8``) against one generation at a time
(``--max-concurrency 1``), for the int8 HRM and the int8 transformer baseline, side by side.

    python benchmarks/serve_batching.py                         # random-init 27m, both archs
    python benchmarks/serve_batching.py --config tiny --requests 2 --new-tokens 16   # quick check

Each (arch, server mode) is a fresh server subprocess (as ``serve_speed.py`` starts them: the
int8 model ``hrmcode quantize`` writes by default, threads split as ``hrmcode serve`` does). Every
client streams ``--requests`` greedy completions of ``--new-tokens`` tokens (ignoring EOS is not
possible over HTTP, so a random-init model is used: it rarely emits EOS) back to back, all clients
at once after one warm-up request. Reported per row:

- tokens/s: all clients' completion tokens / wall time from the first request sent to the last done
- first token p50 / p95: time from sending a request to its first streamed text, over all requests
- peak RSS: the server subprocess's maximum resident set
- a joining request's first token (second table): while the busiest client count's clients but one decode
  long completions, one more client sends ``--joins`` short requests one after another; the time to each
  one's first text is what a new request waits while others decode
- server / client CPU ms per token: CPU time (all threads) the server subprocess and this load
  generator spent per completion token: on 2 cores, what the HTTP side costs beside the model

The load generator shares the machine's cores with the server, so it is kept lean: one asyncio
thread, a kept-alive HTTP/1.1 connection per client, the event stream read as raw chunks (JSON is
parsed only until the first text and for the final usage event). httpx with a JSON parse per event
cost ~0.2 ms of CPU per token, this ~0.03-0.05, CPU a load generator on another machine would not
take from the server.

Target (issue 16): with batching, 8 clients' aggregate tokens/s >= 3x one client's, on 2 cores, for
both models, with first-token latency bounded while others decode.

Before the servers, the same int8 models run one batched decode step in this process at 1, 2, 4 and
8 rows (``--step-reps`` rounds, the row counts interleaved within each round so that load from
other processes falls on all of them alike), plus a lone request's step (its own ``KVCache``, what
a single client runs): median wall ms per step, the part inside the fused stack kernel, and thread
CPU ms (less sensitive to a busy machine than wall time). The load average is printed at the
start and the end: on a shared machine, compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve_speed import peak_rss_mb, random_model, stdlib_examples, stdlib_sources  # noqa: E402


def server(path: str, max_concurrency: int, max_tokens: int) -> None:
    """The worker: load the int8 model, serve it, print {"url"}, serve until stdin closes."""
    from hrmcode.memory import serve_policy
    from hrmcode.model import kernels
    from hrmcode.quantize import load_quantized
    from hrmcode.serve.app import ServeSettings, create_app
    from hrmcode.serve.model_engine import ModelEngine
    from hrmcode.serve.server import background_server

    serve_policy()
    loaded = load_quantized(path)
    kernels.use_threads(loaded.model, os.cpu_count())
    engine = ModelEngine(loaded, model_id="bench", max_batch=max_concurrency)
    settings = ServeSettings(max_tokens_cap=max(max_tokens, 16), max_concurrency=max_concurrency, max_queue=64)
    with background_server(create_app(engine, settings)) as url:
        print(json.dumps({"url": url}), flush=True)
        sys.stdin.read()


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stream_raw(reader, writer, host: str, prompt: str, new_tokens: int) -> tuple[float | None, int]:
    """One streamed greedy completion over a kept-alive HTTP/1.1 connection, read as raw chunks: seconds
    to the first text, completion tokens (from the final usage event). Lean on purpose: the load
    generator shares the 2 cores with the server, and httpx + a JSON parse per event cost it
    ~0.2 ms of CPU per token; this costs a fraction of that."""
    body = json.dumps({"model": "bench", "prompt": prompt, "max_tokens": new_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    sent = time.perf_counter()
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
    status = await reader.readline()
    headers = []
    while (line := await reader.readline()) not in (b"\r\n", b""):
        headers.append(line.lower())
    if b" 200 " not in status or b"transfer-encoding: chunked\r\n" not in headers:
        raise SystemExit(f"unexpected response: {status!r} {headers}")
    first, tail = None, b""
    while size := int((await reader.readline()).strip(), 16):
        data = await reader.readexactly(size + 2)
        if first is None and any(json.loads(e)["choices"][0].get("text") for e in _events(data, b'"choices": [{')):
            first = time.perf_counter() - sent
        tail = (tail + data)[-8192:]
    await reader.readline()  # the empty trailer after the last chunk
    usage = json.loads(_events(tail, b'"usage": {')[-1])["usage"]
    return first, usage["completion_tokens"]


def _events(chunk: bytes, marker: bytes) -> list[bytes]:
    """The JSON of each ``data:`` event in ``chunk`` that contains ``marker``, in order."""
    return [line[6:] for line in chunk.split(b"\n") if line.startswith(b"data: {") and marker in line]


def load(url: str, prompts: list[str], clients: int, requests: int, new_tokens: int, server_pid: int) -> dict:
    import asyncio
    from urllib.parse import urlsplit

    address = urlsplit(url)
    firsts: list[float] = []
    tokens = [0]

    async def client_loop(index: int, count: int, record: bool) -> None:
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            for i in range(count):
                started = time.perf_counter()
                first, produced = await _stream_raw(reader, writer, address.netloc,
                                                    prompts[(index + i) % len(prompts)], new_tokens)
                if record:
                    firsts.append(first if first is not None else time.perf_counter() - started)
                    tokens[0] += produced
        finally:
            writer.close()

    async def run_all() -> None:
        await asyncio.gather(*(client_loop(i, requests, True) for i in range(clients)))

    asyncio.run(client_loop(0, 1, False))  # warm-up
    started, server_cpu, client_cpu = time.perf_counter(), cpu_seconds(server_pid), time.process_time()
    asyncio.run(run_all())
    wall = time.perf_counter() - started
    server_cpu, client_cpu = cpu_seconds(server_pid) - server_cpu, time.process_time() - client_cpu
    firsts.sort()
    return {"tokens_per_s": tokens[0] / wall, "first_p50_ms": statistics.median(firsts) * 1000,
            "first_p95_ms": firsts[min(len(firsts) - 1, int(0.95 * len(firsts)))] * 1000, "tokens": tokens[0],
            "server_cpu_ms": server_cpu / tokens[0] * 1000, "client_cpu_ms": client_cpu / tokens[0] * 1000}


def join_latency(url: str, prompts: list[str], background: int, joins: int, new_tokens: int) -> dict:
    """First-token latency of a request that arrives while ``background`` clients decode: those stream
    ``new_tokens``-token completions back to back until ``joins`` short requests (8 tokens), sent one after
    another by one more client 0.25 s apart, are done."""
    import asyncio
    from urllib.parse import urlsplit

    address = urlsplit(url)
    firsts: list[float] = []

    async def run() -> None:
        done = asyncio.Event()

        async def busy(index: int) -> None:
            reader, writer = await asyncio.open_connection(address.hostname, address.port)
            try:
                while not done.is_set():
                    await _stream_raw(reader, writer, address.netloc, prompts[index % len(prompts)], new_tokens)
            finally:
                writer.close()

        async def joiner() -> None:
            reader, writer = await asyncio.open_connection(address.hostname, address.port)
            try:
                await asyncio.sleep(1.0)  # the others are decoding by now
                for i in range(joins):
                    first, _ = await _stream_raw(reader, writer, address.netloc, prompts[i % len(prompts)], 8)
                    firsts.append(first)
                    await asyncio.sleep(0.25)
            finally:
                writer.close()
                done.set()

        await asyncio.gather(joiner(), *(busy(i) for i in range(background)))

    asyncio.run(run())
    firsts.sort()
    return {"join_p50_ms": statistics.median(firsts) * 1000, "join_max_ms": firsts[-1] * 1000}


def decode_steps(path: Path, reps: int, prompt_tokens: int, row_counts: list[int]) -> list[dict]:
    """One decode step of ``path``'s model at each row count (and a lone request's), timed ``reps`` times."""
    import torch

    from hrmcode.model import fastpath, kernels
    from hrmcode.model.kvcache import BatchKVCache, KVCache
    from hrmcode.quantize import load_quantized

    model = load_quantized(path).model
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    threads = kernels.load().set_threads  # both thread counts within each round, as hrmcode serve splits them
    kernels.use_threads(model, os.cpu_count())

    def prefilled(length: int) -> KVCache:
        single = KVCache(length + reps + 8, getattr(model, "kv_dtype", None))
        model(torch.randint(0, vocab, (1, length), generator=generator), prefix_lens=torch.tensor([length]),
              cache=single)
        return single

    inside = [0.0]
    run_rows, run_one = fastpath._run_q8_rows, fastpath._run_q8

    def timed(run):
        def call(*a):
            started = time.perf_counter()
            out = run(*a)
            inside[0] += time.perf_counter() - started
            return out
        return call

    with torch.no_grad():
        caches: dict = {"alone": prefilled(prompt_tokens)}
        for rows in row_counts:
            batch = BatchKVCache(max(row_counts), getattr(model, "kv_dtype", None))
            for row in range(rows):
                batch.add_row(prefilled(prompt_tokens + row))  # rows of different lengths, as in serving
            caches[rows] = batch
        times: dict = {rows: [] for rows in caches}
        fastpath._run_q8_rows, fastpath._run_q8 = timed(run_rows), timed(run_one)
        try:
            for _ in range(reps + 2):  # the first 2 rounds warm up
                for rows, cache in caches.items():
                    sample = []
                    for count in (1, os.cpu_count()):  # 1 thread: its CPU time is all the work done
                        threads(count)
                        tokens = torch.randint(0, vocab, (1 if rows == "alone" else rows, 1), generator=generator)
                        inside[0] = 0.0
                        wall, cpu = time.perf_counter(), time.thread_time()
                        model(tokens, cache=cache)
                        sample += [time.perf_counter() - wall, inside[0], time.thread_time() - cpu]
                    times[rows].append(sample)
        finally:
            fastpath._run_q8_rows, fastpath._run_q8 = run_rows, run_one
            threads(os.cpu_count())
    out = []
    for rows, samples in times.items():
        _, _, cpu, wall, kernel, _ = (statistics.median(s[i] for s in samples[2:]) * 1000 for i in range(6))
        out.append({"rows": rows, "wall_ms": wall, "kernel_ms": kernel, "cpu_ms": cpu,
                    "tokens_per_s": (1 if rows == "alone" else rows) / wall * 1000,
                    "cpu_tokens_per_s": (1 if rows == "alone" else rows) / cpu * 1000})
    return out


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def measure_server(path: Path, max_concurrency: int, client_counts: list[int], args, prompts: list[str]) -> list[dict]:
    command = [sys.executable, __file__, "--worker", str(path), "--worker-concurrency", str(max_concurrency),
               "--new-tokens", str(args.new_tokens)]
    rows = []
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"server failed:\n{proc.stderr.read()[-3000:]}")
        url = json.loads(line)["url"]
        try:
            for clients in client_counts:
                print(f"  {clients} client(s) ...", file=sys.stderr)
                rows.append({"clients": clients,
                             **load(url, prompts, clients, args.requests, args.new_tokens, proc.pid)})
            if max(client_counts) > 1:
                print(f"  a request joining {max(client_counts) - 1} decoding clients ...", file=sys.stderr)
                rows[-1].update(join_latency(url, prompts, max(client_counts) - 1, args.joins, args.new_tokens))
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)
    for row in rows:
        row["peak_rss_mb"] = rss
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="27m", help="model preset of the random-init models (default 27m)")
    parser.add_argument("--archs", default="hrm,transformer")
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--requests", type=int, default=3, help="requests per client, back to back")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--joins", type=int, default=6,
                        help="requests that join the busiest client count's decoding clients, one at a time")
    parser.add_argument("--step-reps", type=int, default=30, help="rounds of the in-process decode-step timing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-concurrency", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        server(args.worker, args.worker_concurrency, args.new_tokens)
        return

    import torch

    from hrmcode.model.checkpoint import read_config
    from hrmcode.model.tokenizer import CodeTokenizer
    from hrmcode.quantize import QuantSpec, quantize_checkpoint

    client_counts = [int(c) for c in args.clients.split(",")]
    results, steps = {}, {}
    loads = [load_average()]
    with tempfile.TemporaryDirectory(prefix="hrmcode-batching-bench-") as tmp:
        examples = stdlib_examples(stdlib_sources(), 16)
        for arch in args.archs.split(","):
            work = Path(tmp) / arch
            model_path = random_model(work, args.config, arch, 0, examples)
            int8 = quantize_checkpoint(model_path, QuantSpec(), out=work / "int8", heldout=str(work / "examples"),
                                       limit=2, exact_match_limit=0, latency_tokens=2).artifact.path
            tokenizer = CodeTokenizer.load(model_path)
            prompt = read_config(model_path).prompt
            prompts = [tokenizer.decode(prompt.encode(tokenizer, e["input"]["text"], "solve")[: args.prompt_tokens],
                                        skip_special_tokens=False) for e in examples[:8]]
            print(f"{arch} int8, one decode step at 1..{max(client_counts)} rows", file=sys.stderr)
            steps[arch] = decode_steps(int8, args.step_reps, args.prompt_tokens, client_counts)
            for concurrency in (8, 1):
                print(f"{arch} int8, --max-concurrency {concurrency}", file=sys.stderr)
                results[(arch, concurrency)] = measure_server(int8, concurrency, client_counts, args, prompts)

    loads.append(load_average())
    from hrmcode.model import kernels

    print(f"\nload average (1, 5, 15 min) at the start: {loads[0]}; at the end: {loads[1]}")
    print(f"kernels: {kernels.isa()}")
    print(f"\none decode step in-process, median of {args.step_reps} interleaved rounds; 'alone': a lone "
          f"request's step (its own cache). Wall ms with {os.cpu_count()} kernel threads (as served), the part "
          f"inside the fused int8 stack calls, and CPU ms of the same step on 1 thread (all the work, less "
          f"sensitive to other load)\n")
    header = ["arch", "rows", "step ms", "in kernel ms", "tokens/s", "vs alone", "1-thread CPU ms",
              "vs alone (CPU)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for arch, rows in steps.items():
        one = rows[0]  # alone: what one client's request runs
        for row in rows:
            print(f"| {arch} | {row['rows']} | {row['wall_ms']:.2f} | {row['kernel_ms']:.2f} | "
                  f"{row['tokens_per_s']:.0f} | {row['tokens_per_s'] / one['tokens_per_s']:.2f}x | "
                  f"{row['cpu_ms']:.2f} | {row['cpu_tokens_per_s'] / one['cpu_tokens_per_s']:.2f}x |")

    print(f"\nrandom-init {args.config} models, int8 (hrmcode quantize's default); each client streams "
          f"{args.requests} x {args.new_tokens} greedy tokens after ~{args.prompt_tokens} prompt tokens; "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs\n")
    header = ["arch", "server", "clients", "tokens/s", "vs 1 client", "first token p50 ms", "first token p95 ms",
              "peak RSS MB", "server CPU ms/token", "client CPU ms/token"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    checks = []
    for (arch, concurrency), rows in results.items():
        one = rows[0]["tokens_per_s"]
        mode = "batched (8)" if concurrency > 1 else "one at a time"
        for row in rows:
            print(f"| {arch} | {mode} | {row['clients']} | {row['tokens_per_s']:.1f} | "
                  f"{row['tokens_per_s'] / one:.2f}x | {row['first_p50_ms']:.0f} | {row['first_p95_ms']:.0f} | "
                  f"{row['peak_rss_mb']:.0f} | {row['server_cpu_ms']:.2f} | {row['client_cpu_ms']:.2f} |")
        if concurrency > 1 and rows[-1]["clients"] == 8:
            step = next((r for r in steps[arch] if r["rows"] == 8), None)
            ceiling = "" if step is None else (
                f" (in-process on this CPU, an 8-row decode step gives "
                f"{step['tokens_per_s'] / steps[arch][0]['tokens_per_s']:.2f}x a lone request's tokens/s)")
            checks.append((f"{arch}: 8 clients >= 3x one client's tokens/s: "
                           f"{rows[-1]['tokens_per_s'] / one:.2f}x{ceiling}", rows[-1]["tokens_per_s"] >= 3 * one))
    joined = [(key, rows[-1]) for key, rows in results.items() if "join_p50_ms" in rows[-1]]
    if joined:
        print(f"\na request arriving while {joined[0][1]['clients'] - 1} clients decode ({args.joins} requests of 8 "
              f"tokens, one at a time): first token ms\n")
        print("| arch | server | first token p50 ms | first token max ms |")
        print("|---|---|---|---|")
        for (arch, concurrency), row in joined:
            mode = "batched (8)" if concurrency > 1 else "one at a time"
            print(f"| {arch} | {mode} | {row['join_p50_ms']:.0f} | {row['join_max_ms']:.0f} |")
    print()
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")


if __name__ == "__main__":
    main()
