"""Serving speed of one model in fp32 / bf16 / int8 / int8-wo / int4, measured over HTTP, side by side.

    python benchmarks/serve_speed.py                       # random-init 27m HRM, the default variants
    python benchmarks/serve_speed.py --arch transformer    # the transformer baseline of the same size
    python benchmarks/serve_speed.py --threads 1,2         # each variant with 1 and with 2 torch threads
    python benchmarks/serve_speed.py --checkpoint runs/a   # a trained model artifact instead
    python benchmarks/serve_speed.py --config tiny --requests 2 --new-tokens 16   # quick check

Variants: ``fp32`` and ``bf16`` (the float checkpoint), ``int8`` (what ``hrmcode quantize`` makes by
default: int8 weights x dynamic int8 activations, torch backend), ``int8-wo`` (int8 weight-only,
bf16 activations, torch backend), ``int4`` (int4 weight-only, group 128, torch backend) and
``quanto-int8`` (int8 weight-only through optimum-quanto, not run unless named).

For each variant a fresh subprocess loads the model (the quantized ones from the artifact that
``hrmcode quantize`` wrote, with no access to the float weights), splits its threads as
``hrmcode serve --threads`` does, and serves it with ``hrmcode.serve`` on 127.0.0.1; this process
streams ``--requests`` greedy completions from it after one warm-up request. Reported per variant:

- first token: median time from sending the request to the first streamed text (prefill + 1 token)
- tokens/s: median of (completion tokens - 1) / (time from first to last token), i.e. decode speed
- peak RSS: the server subprocess's maximum resident set (Python + torch + model + FastAPI server + KV
  caches); the HTTP client runs in this process
- held-out loss and its change vs fp32, on the same held-out examples (in-process, not over HTTP)

Without ``--checkpoint`` the model is randomly initialised (seeded) and the tokenizer is trained
on Python's standard-library sources, which also provide the held-out examples (function
signature + docstring -> body). Loss deltas of a random-init model say how much quantization
perturbs the logits, not how much quality a trained model loses. Targets (int8): first token
< 50 ms, >= 200 tokens/s, RSS < 300 MB, loss increase <= 1 % (int8) and <= 5 % (int4).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("fp32", "bf16", "int8", "int8-wo", "int4", "quanto-int8")
DEFAULT_VARIANTS = ("fp32", "bf16", "int8", "int8-wo", "int4")
STDLIB_MODULES = ("json.decoder", "json.encoder", "textwrap", "string", "shlex", "fnmatch", "difflib", "heapq",
                  "bisect", "calendar", "csv", "argparse", "glob", "posixpath", "ipaddress", "fractions", "statistics",
                  "pprint", "gettext", "tokenize", "base64", "colorsys", "configparser", "ftplib", "html.parser")


# -- setup (parent process) ------------------------------------------------------------------
def quantized_variants() -> dict:
    from hrmcode.quantize import QuantSpec

    return {"int8": (QuantSpec(), "auto"), "int8-wo": (QuantSpec(activations="none"), "torch"),
            "int4": (QuantSpec(weights="int4"), "torch"), "quanto-int8": (QuantSpec(activations="none"), "quanto")}


def stdlib_sources() -> list[str]:
    import importlib

    return [inspect.getsource(importlib.import_module(name)) for name in STDLIB_MODULES]


def stdlib_examples(sources: list[str], count: int) -> list[dict]:
    """(signature + docstring) -> body pairs from the standard library, as Example records."""
    records = []
    for source in sources:
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef) or not node.body or ast.get_docstring(node) is None:
                continue
            doc, body = node.body[0], node.body[1:]
            if not body or node.end_lineno - body[0].lineno > 12:
                continue
            prompt = "\n".join(lines[node.lineno - 1: doc.end_lineno])
            target = "\n".join(lines[body[0].lineno - 1: node.end_lineno]) + "\n"
            i = len(records)
            records.append({"id": f"bench-{i}", "task_id": f"bench-{i}", "source": "stdlib", "level": "solve",
                            "input": {"text": prompt, "context": {}}, "target": target, "language": "python",
                            "stage": 1, "split": "heldout",
                            "provenance": {"inputs": [], "rule": "bench/stdlib-function", "model_written": False}})
            if len(records) == count:
                return records
    return records


def random_model(workdir: Path, config_name: str, arch: str, seed: int, heldout: list[dict]) -> Path:
    import torch

    from hrmcode.artifacts import ArtifactWriter
    from hrmcode.model import build_model, count_parameters, preset
    from hrmcode.model.checkpoint import save_checkpoint
    from hrmcode.model.tokenizer import CodeTokenizer

    with ArtifactWriter(workdir / "examples", "examples", update_latest=False) as writer:
        writer.write_jsonl("examples.jsonl", heldout)
        examples = writer.finish()
    tokenizer = CodeTokenizer.train(stdlib_sources(), vocab_size=preset(config_name).vocab_size)
    torch.manual_seed(seed)
    model = build_model(preset(config_name, arch, vocab_size=tokenizer.vocab_size))
    print(f"random-init {config_name} {arch}: {count_parameters(model)['total']:,} parameters, "
          f"vocab {tokenizer.vocab_size}", file=sys.stderr)
    with ArtifactWriter(workdir / "model", "model", inputs=[examples], update_latest=False) as writer:
        for name in save_checkpoint(writer.stage, model, tokenizer):
            writer.add(name)
        writer.finish()
    return workdir / "model"


def heldout_loss(path: Path, dtype, examples: list, limit: int) -> float:
    from hrmcode.model.checkpoint import load_checkpoint
    from hrmcode.quantize.measure import encode_examples, heldout_loss as loss

    loaded = load_checkpoint(path, dtype=dtype)
    return loss(loaded.model, encode_examples(loaded, examples)[:limit])


def bf16_size(path: Path, workdir: Path) -> int:
    """Bytes of the checkpoint's tensors saved in bf16 (what a bf16 checkpoint takes on disk)."""
    import torch
    from safetensors.torch import load_file, save_file

    target = workdir / "bf16.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(path / "model.safetensors")).items()}, str(target))
    return target.stat().st_size


# -- one variant: a server subprocess, timed from this process --------------------------------
def server(variant: str, path: str, max_tokens: int) -> None:
    """The worker: load, serve on 127.0.0.1, print {"url", "load_s", "split"}, serve until stdin closes."""
    import torch

    from hrmcode.memory import serve_policy
    from hrmcode.model import kernels
    from hrmcode.model.checkpoint import load_checkpoint
    from hrmcode.quantize import load_quantized
    from hrmcode.serve.app import ServeSettings, create_app
    from hrmcode.serve.model_engine import ModelEngine
    from hrmcode.serve.server import background_server

    serve_policy()  # what `hrmcode serve` does before loading
    started = time.perf_counter()
    if variant in ("fp32", "bf16"):
        loaded = load_checkpoint(path, dtype=torch.bfloat16 if variant == "bf16" else None)
    else:
        loaded = load_quantized(path)
    load_s = time.perf_counter() - started
    threads = int(os.environ.get("BENCH_THREADS", 0)) or os.cpu_count()
    split = kernels.use_threads(loaded.model, threads)  # what `hrmcode serve --threads` does
    engine = ModelEngine(loaded, model_id="bench")
    with background_server(create_app(engine, ServeSettings(max_tokens_cap=max(max_tokens, 16)))) as url:
        print(json.dumps({"url": url, "load_s": load_s, "split": split}), flush=True)
        sys.stdin.read()


def stream_once(client, url: str, prompt: str, new_tokens: int) -> tuple[float | None, float | None, int, int]:
    """One streamed greedy completion: seconds from sending to its first and to its last text (None
    when none came), completion tokens, prompt tokens."""
    body = {"model": "bench", "prompt": prompt, "max_tokens": new_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    sent = time.perf_counter()
    first = last = None
    tokens = prompt_tokens = 0
    with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
                prompt_tokens = chunk["usage"]["prompt_tokens"]
            if any(c.get("text") for c in chunk["choices"]):
                last = time.perf_counter() - sent
                first = first if first is not None else last
    return first, last, tokens, prompt_tokens


def time_requests(url: str, prompts: list[str], new_tokens: int, requests: int) -> dict:
    import httpx

    first_token, speeds, prompt_lengths = [], [], []
    with httpx.Client(timeout=600) as client:
        for i in range(requests + 1):  # the first request warms up and is not counted
            first, last, tokens, prompt_tokens = stream_once(client, url, prompts[i % len(prompts)], new_tokens)
            if i == 0 or first is None:
                continue
            first_token.append(first)
            prompt_lengths.append(prompt_tokens)
            if tokens > 1 and last > first:
                speeds.append((tokens - 1) / (last - first))
    return {"first_token_ms": statistics.median(first_token) * 1000,
            "tokens_per_s": statistics.median(speeds) if speeds else None,
            "prompt_tokens": statistics.median(prompt_lengths)}


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set (VmHWM), read while it still runs."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def run_worker(args, variant: str, path: Path, prompts: list[str], threads: int | None) -> dict:
    """Start the server subprocess, time requests against it, read its peak RSS (the server alone), stop it."""
    command = [sys.executable, __file__, "--worker", variant, "--worker-path", str(path),
               "--new-tokens", str(args.new_tokens)]
    env = dict(os.environ, BENCH_THREADS=str(threads)) if threads else None
    with subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"{variant} server failed:\n{proc.stderr.read()[-3000:]}")
        started = json.loads(line)
        try:
            timing = time_requests(started["url"], prompts, args.new_tokens, args.requests)
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)
    return {"variant": variant, "threads": threads, "split": started["split"], "load_s": started["load_s"], **timing,
            "peak_rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="27m", help="model preset for the random-init model (default 27m)")
    parser.add_argument("--arch", choices=("hrm", "transformer"), default="hrm",
                        help="architecture of the random-init model: the HRM or its transformer baseline (default hrm)")
    parser.add_argument("--checkpoint", help="a trained model artifact (either architecture) instead of a random-init "
                                             "model")
    parser.add_argument("--heldout", help="held-out examples (artifact or JSONL); default: the model's, or stdlib")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--requests", type=int, default=5, help="timed requests per variant (after 1 warm-up)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--heldout-limit", type=int, default=16, help="held-out examples scored for loss")
    parser.add_argument("--prompt-tokens", type=int, default=32,
                        help="prompt length for the timed requests (held-out prompts cut to this many tokens)")
    parser.add_argument("--threads", help="CPU threads for generation in the workers (as `hrmcode serve --threads`), "
                                          "or a comma-separated list to measure each variant at each (default: all "
                                          "cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-path", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        server(args.worker, args.worker_path, args.new_tokens)
        return

    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants: {sorted(unknown)}")
    with tempfile.TemporaryDirectory(prefix="hrmcode-serve-bench-") as tmp:
        measure(args, variants, Path(tmp))


def measure(args, variants: list[str], workdir: Path) -> None:
    import torch

    from hrmcode.quantize import find_heldout, quantize_checkpoint

    if args.checkpoint:
        model_path, what = Path(args.checkpoint), f"trained checkpoint {args.checkpoint}"
        heldout_ref = args.heldout
    else:
        examples = stdlib_examples(stdlib_sources(), 64)
        model_path = random_model(workdir, args.config, args.arch, args.seed, examples)
        what = f"random-init {args.config} {args.arch} (seed {args.seed})"
        heldout_ref = args.heldout or str(workdir / "examples")
    from hrmcode.artifacts import load_artifact

    model_artifact = load_artifact(model_path, "model")
    held = find_heldout(model_artifact, heldout_ref)
    heldout_examples, heldout_where = held.examples, held.where
    from hrmcode.model.checkpoint import read_config
    from hrmcode.model.tokenizer import CodeTokenizer

    tokenizer = CodeTokenizer.load(model_path)
    prompt = read_config(model_path).prompt
    prompts = [tokenizer.decode(prompt.encode(tokenizer, e.input.text, e.level)[: args.prompt_tokens],
                                skip_special_tokens=False) for e in heldout_examples[:8]]

    quantized = quantized_variants()
    rows = {}
    losses = {}
    sizes = {"fp32": (model_path / "model.safetensors").stat().st_size}
    paths = {"fp32": model_path, "bf16": model_path}
    if "bf16" in variants:
        losses["bf16"] = heldout_loss(model_path, torch.bfloat16, heldout_examples, args.heldout_limit)
        sizes["bf16"] = bf16_size(model_path, workdir)
    for variant, (spec, backend) in quantized.items():
        if variant in variants:
            result = quantize_checkpoint(model_path, spec, out=workdir / variant, heldout=heldout_ref,
                                         limit=args.heldout_limit, exact_match_limit=0, latency_tokens=2,
                                         backend_name=backend)
            paths[variant] = result.artifact.path
            losses["fp32"] = result.report["before"]["heldout_loss"]  # the same examples, the same function
            losses[variant] = result.report["after"]["heldout_loss"]
            sizes[variant] = result.report["after"]["size_bytes"]
    if "fp32" not in losses:
        losses["fp32"] = heldout_loss(model_path, None, heldout_examples, args.heldout_limit)
    threads = [int(t) for t in args.threads.split(",")] if args.threads else [None]
    for variant in variants:
        for count in threads:
            print(f"measuring {variant}" + (f" with {count} threads" if count else "") + " ...", file=sys.stderr)
            rows[(variant, count)] = run_worker(args, variant, paths[variant], prompts, count)

    prompt_tokens = statistics.median(r["prompt_tokens"] for r in rows.values())
    print(f"\nmodel: {what}; held-out: {heldout_where} ({args.heldout_limit} max); "
          f"{args.requests} requests x {args.new_tokens} tokens after ~{prompt_tokens:.0f} prompt tokens, greedy, "
          f"streamed over HTTP; "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs\n")
    header = ["variant", "threads", "size MB", "load s", "first token ms", "tokens/s", "peak RSS MB", "held-out loss",
              "loss vs fp32"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for (variant, count), r in rows.items():
        delta = (losses[variant] - losses["fp32"]) / losses["fp32"] * 100
        speed = "n/a" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.1f}"
        print(f"| {variant} | {r['split']} | {sizes[variant] / 1e6:.1f} | {r['load_s']:.2f} | "
              f"{r['first_token_ms']:.1f} | {speed} | {r['peak_rss_mb']:.0f} | {losses[variant]:.4f} | {delta:+.3f}% |")
    checks = []
    for (variant, count), r in rows.items():
        if variant != "int8":
            continue
        label = f"int8 ({r['threads']} threads)"
        checks += [(f"{label} first token < 50 ms", r["first_token_ms"] < 50),
                   (f"{label} >= 200 tokens/s", (r["tokens_per_s"] or 0) >= 200),
                   (f"{label} peak RSS < 300 MB", r["peak_rss_mb"] < 300)]
    if "int8" in losses:
        checks.append(("int8 loss increase <= 1 %", (losses["int8"] - losses["fp32"]) / losses["fp32"] <= 0.01))
    if "int4" in losses:
        checks.append(("int4 loss increase <= 5 %", (losses["int4"] - losses["fp32"]) / losses["fp32"] <= 0.05))
    if checks:
        print("\n" + "\n".join(f"{'met    ' if ok else 'NOT MET'}  {name}" for name, ok in checks))


if __name__ == "__main__":
    main()
