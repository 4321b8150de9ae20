"""Does HRM help? The pre-registered experiment of docs/model-science.md, run end to end.

Seven arms built from hrmcode's own model classes (same post-norm block, same width) learn the
program-execution tasks of ``hrmcode.data.depth_tasks`` (train depth <= 5, test depth 1-8, 500
examples per depth) with the SAME TRAINING FLOPs each: transformers of 4, 8 and 12 layers, the
looped transformer (``ut``), HRM-fixed with HRM-Text's back-prop warm-up, HRM-act and TRM (act).
Per arm, the learning rate is picked from a grid at one third of the budget (on a validation set
of depths 1-5, disjoint from the test set), then 3 seeds train at the full budget. The verdict
is computed here by the pre-registered rule. Each arm is also trained briefly on real Python
source (the standard library, byte-level) and its held-out loss reported, so a gain on the tasks
that costs plain next-token modelling would show.

Training FLOPs are counted, not assumed: a hook on every transformer block adds, per call,
``tokens x block FLOPs`` for the forward (calls without gradient included) and twice that again
when the call has gradient (its backward); an arm trains until its count reaches the budget.
Embeddings, LM head and Q head are left out (the same for every arm, or tiny). The learning rate
follows warm-up + cosine (``hrmcode.train.loop.lr_factor``) over the fraction of the budget spent.

Kill-safe: every finished run is appended to ``runs.jsonl`` in ``--out`` as it ends, and a rerun
skips finished runs; the report (table, plots, verdict) is drawn from whatever runs exist and
names the missing ones.

    python benchmarks/model_science.py --smoke                  # every arm a few steps (seconds)
    python benchmarks/model_science.py --config cpu --jobs 2    # docs/model-science.md's CPU run
    PYTHONPATH=. python benchmarks/model_science.py --config cuda --device cuda --jobs 4 --deadline-min 4
                                                               # a lent GPU: at most ~5 minutes
    python benchmarks/model_science.py --config cpu --report-only   # the report from runs.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import random
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrmcode.data import depth_tasks as DT  # noqa: E402
from hrmcode.jsonl import AppendLog  # noqa: E402
from hrmcode.model import build_model  # noqa: E402
from hrmcode.model.base import IGNORE  # noqa: E402
from hrmcode.model.config import ModelConfig  # noqa: E402
from hrmcode.model.layers import Block  # noqa: E402
from hrmcode.train.loop import WeightEMA, bp_steps_at, gradient_span, lr_factor, make_optimizer  # noqa: E402
from hrmcode.train.options import TrainOptions  # noqa: E402

ARMS = ("transformer-4", "transformer-8", "transformer-12", "looped", "hrm-fixed", "hrm-act", "trm")
RECURRENT_ARMS = ("hrm-fixed", "hrm-act", "trm")
CONTROLS = ("transformer-12", "looped")  # what a recurrent arm must beat (the rule)
ADAPTIVE_ARMS = ("hrm-act", "trm")  # accuracy vs inference segments 1-8
TRAIN_MAX_DEPTH = 5
RULE_DEPTHS = (5, 6, 7, 8)
SEQ_LEN = 80  # the longest task (a straight-line program of depth 8) is 77 tokens with <bos>
SCHEDULE_STEPS = 1000  # lr_factor's resolution over the budget fraction
SOURCE_VOCAB = 256  # the code corpus is byte-level


@dataclass
class Scale:
    """One configuration of the experiment (``CONFIGS``)."""

    width: int
    heads: int
    batch: int
    budget_steps: float  # the budget, in optimizer steps of transformer-12 at this batch
    lr_grid: tuple[float, ...]
    seeds: tuple[int, ...]
    test_per_depth: int = 500
    valid_per_depth: int = 100
    segment_curve_per_depth: int = 100  # examples per depth for accuracy vs segments (act arms, first seed)
    code_steps: float = 0.0  # code-corpus budget, in transformer-12 steps (0: skipped)
    code_batch: int = 8
    code_seq: int = 128
    ema_decay: float = 0.999  # the most the EMA decay ramps up to, (1 + step) / (10 + step) before


CONFIGS = {
    "smoke": Scale(width=16, heads=2, batch=4, budget_steps=1, lr_grid=(1e-3, 3e-3), seeds=(0,), test_per_depth=3,
                   valid_per_depth=2, segment_curve_per_depth=1, code_steps=1, code_batch=2, code_seq=16,
                   ema_decay=0.9),
    "cpu": Scale(width=64, heads=2, batch=32, budget_steps=200, lr_grid=(1e-3, 2e-3, 4e-3), seeds=(0, 1, 2),
                 segment_curve_per_depth=50, code_steps=150, code_batch=8, code_seq=128),
    # One GPU, about 5 minutes with --jobs 4 --deadline-min 4 (launch-bound at this width: 4 processes share it)
    "cuda": Scale(width=256, heads=4, batch=128, budget_steps=600, lr_grid=(5e-4, 1e-3, 2e-3), seeds=(0, 1, 2),
                  code_steps=100, code_batch=32, code_seq=256),
}


def arm_config(arm: str, scale: Scale, vocab_size: int, seq_len: int) -> ModelConfig:
    """The arm's model: every one built of the same blocks (width ``scale.width``); the HRM has 2+2
    layers, 2 H cycles of 2 L cycles: 12 block applications per token and segment."""
    base = dict(vocab_size=vocab_size, hidden_size=scale.width, num_heads=scale.heads, expansion=4.0,
                h_layers=2, l_layers=2, h_cycles=2, l_cycles=2, max_seq_len=seq_len, mlp_multiple=64)
    if arm.startswith("transformer-"):
        return ModelConfig(arch="transformer", n_layers=int(arm.split("-")[1]), **base)
    if arm == "looped":
        return ModelConfig(arch="ut", n_layers=4, loops=3, **base)
    if arm == "hrm-fixed":
        return ModelConfig(arch="hrm", mode="fixed", bp_steps=5, train_segments=1, inference_segments=1, **base)
    if arm == "hrm-act":
        return ModelConfig(arch="hrm", mode="act", halt_max_steps=4, **base)
    if arm == "trm":
        return ModelConfig(arch="trm", mode="act", n_layers=2, halt_max_steps=4, **base)
    raise ValueError(arm)


# -- FLOPs -------------------------------------------------------------------------------------
def block_flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """Forward FLOPs of one block on one token: 2 per weight, plus causal attention's QK^T and AV
    (2 x d x T/2 multiply-adds each, on average over positions)."""
    d, inner = config.hidden_size, config.mlp_hidden
    weights = 4 * d * d + 3 * d * inner
    return 2 * weights + 2 * d * seq_len


class FlopCounter:
    """Training FLOPs of the model's blocks: forward per call, backward (2x) when it has gradient."""

    def __init__(self, model: torch.nn.Module, seq_len: int):
        self.per_token = block_flops_per_token(model.config, seq_len)
        self.total = 0.0
        self.active = True  # off while evaluating or probing: those FLOPs are not training
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, Block)]

    def _hook(self, module, inputs, output) -> None:
        if not self.active:
            return
        tokens = output.shape[0] * output.shape[1]
        self.total += tokens * self.per_token * (3 if torch.is_grad_enabled() else 1)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


# -- data --------------------------------------------------------------------------------------
def task_batch(tasks: list[DT.DepthTask], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded to the longest; labels only on the answer (the last token of each example)."""
    encoded = [DT.encode(t) for t in tasks]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(tasks), width), DT.PAD, dtype=torch.long)
    labels = torch.full((len(tasks), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, :len(e)] = torch.tensor(e)
        labels[row, len(e) - 1] = e[-1]
    return ids.to(device), labels.to(device)


def prompt_mask(labels: torch.Tensor) -> torch.Tensor:
    """Each row's prompt, the positions before its answer: all an act arm's Q head may read when it decides to
    halt (``hrmcode.model.halting``). Without it the Q head pooled the whole row, answer and padding included
    (fixed after the 2026-12-01 CPU run: docs/model-science.md says what that changes)."""
    answer_at = (labels != IGNORE).float().argmax(1)
    return torch.arange(labels.shape[1], device=labels.device)[None, :] < answer_at[:, None]


def source_corpus() -> tuple[bytes, bytes]:
    """Real Python code: the standard library's own sources, sorted by path; the held-out part is
    a fixed set of whole files (every 10th), never trained on."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py"))
    train, held = [], []
    for index, path in enumerate(files):
        (held if index % 10 == 0 else train).append(path.read_bytes())
    return b"\n".join(train), b"\n".join(held)


# -- one run -----------------------------------------------------------------------------------
@dataclass
class Job:
    kind: str  # "lr" (grid point, a third of the budget), "final" (a seed at the full budget), "code"
    arm: str
    lr: float
    seed: int
    fraction: float  # of the budget

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.arm}/lr={self.lr:g}/seed={self.seed}"


def evaluate(model, tasks: list[DT.DepthTask], device, segments: int | None = None, chunk: int = 250) -> dict:
    """Teacher-forced answer accuracy per depth (and segments used, for act arms)."""
    model.eval()
    right: dict[int, int] = {}
    count: dict[int, int] = {}
    used: list[float] = []
    extra = {"segments": segments} if segments is not None else {}
    by_kind = sorted(tasks, key=lambda t: (t.kind, t.depth))  # similar lengths share a batch
    with torch.no_grad():
        for start in range(0, len(by_kind), chunk):
            part = by_kind[start:start + chunk]
            ids, labels = task_batch(part, device)
            out = model(ids, labels=labels, prefix_mask=prompt_mask(labels), **extra)
            answer_at = (labels != IGNORE).float().argmax(1)
            rows = torch.arange(len(part), device=device)
            predicted = out.logits[rows, answer_at - 1].argmax(-1)
            hits = (predicted == labels[rows, answer_at]).tolist()
            for task, hit in zip(part, hits):
                right[task.depth] = right.get(task.depth, 0) + int(hit)
                count[task.depth] = count.get(task.depth, 0) + 1
            if getattr(out, "segments", None) is not None:
                used += out.segments.float().tolist()
    model.train()
    depths = sorted(count)
    result = {"acc": {str(d): right[d] / count[d] for d in depths}, "n": {str(d): count[d] for d in depths}}
    if used:
        result["segments_used"] = sum(used) / len(used)
    return result


def train_run(job: Job, scale: Scale, budget: float, device: torch.device, sets: dict) -> dict:
    torch.manual_seed(job.seed)
    code = job.kind == "code"
    vocab, seq_len = (SOURCE_VOCAB, scale.code_seq) if code else (len(DT.VOCAB), SEQ_LEN)
    config = arm_config(job.arm, scale, vocab, seq_len)
    model = build_model(config).to(device)
    model.train()
    options = TrainOptions(lr=job.lr, max_steps=SCHEDULE_STEPS, warmup_steps=SCHEDULE_STEPS // 20, weight_decay=0.1)
    optimizer = make_optimizer(model, options, device)
    ema = WeightEMA(model, scale.ema_decay) if scale.ema_decay else None
    counter = FlopCounter(model, seq_len)
    limit = budget * job.fraction
    stream = DT.train_stream(TRAIN_MAX_DEPTH, job.seed, exclude=sets["exclude"])
    rng = random.Random(job.seed)
    warmup_steps = None
    step, started, losses, eval_s = 0, time.perf_counter(), [], 0.0
    checkpoints = [] if job.kind != "final" else [limit * q for q in (0.25, 0.5, 0.75)]
    curve = []  # (train FLOPs, train seconds, accuracy per depth on the curve subset)
    while counter.total < limit:
        if checkpoints and counter.total >= checkpoints[0]:
            while checkpoints and counter.total >= checkpoints[0]:
                checkpoints.pop(0)
            counter.active = False
            with (ema.applied(model) if ema is not None else contextlib.nullcontext()):
                curve.append({"train_flops": counter.total, "train_s": time.perf_counter() - started - eval_s,
                              "acc": evaluate(model, sets["curve"], device)["acc"]})
            eval_s = time.perf_counter() - started - curve[-1]["train_s"]
            counter.active = True
        factor = lr_factor(min(int(SCHEDULE_STEPS * counter.total / limit), SCHEDULE_STEPS - 1), options)
        for group in optimizer.param_groups:
            group["lr"] = job.lr * factor
        if code:
            text = sets["code_train"]
            rows = []
            for _ in range(scale.code_batch):
                at = rng.randrange(len(text) - seq_len)
                rows.append(list(text[at:at + seq_len]))
            ids = torch.tensor(rows, device=device)
            labels = ids
        else:
            ids, labels = task_batch([next(stream) for _ in range(scale.batch)], device)
        span = contextlib.nullcontext()
        if job.arm == "hrm-fixed":
            if warmup_steps is None:  # a third of the run's steps, as counted at the final span
                counter.active = False
                warmup_steps = max(1, round(steps_estimate(model, ids, labels, limit) / 3))
                counter.active = True
            span = gradient_span(model, bp_steps_at(step, warmup_steps, config.bp_steps))
        before = counter.total
        with span:
            out = model(ids, labels=labels, prefix_mask=None if code else prompt_mask(labels))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:  # the decay ramps up with the steps taken, so a short run never averages in its start
            ema.decay = min(scale.ema_decay, (1 + step) / (10 + step))
            ema.update(model)
        losses.append(float(out.loss.detach()))
        last_step_flops = counter.total - before
        step += 1
    seconds = time.perf_counter() - started - eval_s
    counter.active = False
    counter.close()
    record = {"key": job.key, **asdict(job), "steps": step, "train_flops": counter.total,
              "flops_per_step": counter.total / max(step, 1), "last_step_flops": last_step_flops, "train_s": seconds,
              "final_train_loss": sum(losses[-20:]) / max(len(losses[-20:]), 1),
              "params": sum(p.numel() for p in model.parameters()),
              "block_applications_per_token": config.layer_applications_per_token(),
              "bp_warmup_steps": warmup_steps}
    with (ema.applied(model) if ema is not None else contextlib.nullcontext()):
        if code:
            record["code_heldout_loss"] = code_loss(model, sets["code_held"], seq_len, device)
        elif job.kind == "lr":
            record["valid"] = evaluate(model, sets["valid"], device)
        else:
            record["test"] = evaluate(model, sets["test"], device)
            curve.append({"train_flops": counter.total, "train_s": seconds,
                          "acc": evaluate(model, sets["curve"], device)["acc"]})
            record["curve"] = curve
            if job.arm in ADAPTIVE_ARMS and job.seed == scale.seeds[0]:
                record["by_segments"] = {str(k): evaluate(model, sets["curve"], device, segments=k)["acc"]
                                         for k in range(1, 9)}
    record["wall_s"] = time.perf_counter() - started
    return record


def steps_estimate(model, ids, labels, limit: float) -> float:
    """Steps the budget buys at the model's final gradient span: one forward+backward, counted."""
    probe = FlopCounter(model, ids.shape[1])
    model(ids, labels=labels).loss.backward()
    model.zero_grad(set_to_none=True)
    probe.close()
    return limit / probe.total


def code_loss(model, held: bytes, seq_len: int, device) -> float:
    """Mean next-byte loss (nats) over the held-out files, in consecutive windows."""
    model.eval()
    total, count = 0.0, 0
    windows = [list(held[i:i + seq_len]) for i in range(0, len(held) - seq_len, seq_len)][:256]
    with torch.no_grad():
        for start in range(0, len(windows), 32):
            ids = torch.tensor(windows[start:start + 32], device=device)
            out = model(ids, labels=ids)
            total += float(out.loss_sum)
            count += out.loss_count
    model.train()
    return total / max(count, 1)


# -- the experiment ----------------------------------------------------------------------------
def budget_flops(scale: Scale) -> float:
    """The training budget of every arm: ``budget_steps`` steps of transformer-12 (12 blocks,
    forward and backward, ``batch`` rows of SEQ_LEN tokens), counted the way FlopCounter counts."""
    config = arm_config("transformer-12", scale, len(DT.VOCAB), SEQ_LEN)
    return scale.budget_steps * 12 * 3 * scale.batch * SEQ_LEN * block_flops_per_token(config, SEQ_LEN)


def code_budget_flops(scale: Scale) -> float:
    config = arm_config("transformer-12", scale, SOURCE_VOCAB, scale.code_seq)
    return scale.code_steps * 12 * 3 * scale.code_batch * scale.code_seq * block_flops_per_token(config, scale.code_seq)


def datasets(scale: Scale) -> dict:
    test = [t for d in range(1, 9) for t in DT.test_set(d, scale.test_per_depth, seed=0)]
    valid = [t for d in range(1, TRAIN_MAX_DEPTH + 1) for t in DT.test_set(d, scale.valid_per_depth, seed=1)]
    curve = [t for d in range(1, 9)
             for t in DT.test_set(d, scale.test_per_depth, seed=0)[:scale.segment_curve_per_depth]]
    code_train, code_held = source_corpus() if scale.code_steps else (b"", b"")
    return {"test": test, "valid": valid, "curve": curve, "code_train": code_train, "code_held": code_held,
            "exclude": frozenset(t.program for t in test + valid)}


_WORKER: dict = {}


def _init_worker(scale: Scale, device: str, threads: int, deadline: float | None) -> None:
    torch.set_num_threads(threads)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    _WORKER.update(scale=scale, device=torch.device(device), sets=datasets(scale), deadline=deadline)


def _run_job(job: Job) -> dict | None:
    """The run's record; None when the deadline has passed (the run is left for a rerun)."""
    if _WORKER["deadline"] is not None and time.time() > _WORKER["deadline"]:
        return None
    scale = _WORKER["scale"]
    budget = code_budget_flops(scale) if job.kind == "code" else budget_flops(scale)
    return train_run(job, scale, budget, _WORKER["device"], _WORKER["sets"])


def read_runs(path: Path) -> dict[str, dict]:
    """The finished runs by key (a line torn by a kill is dropped: ``hrmcode.jsonl.AppendLog``)."""
    if not path.exists():
        return {}
    with AppendLog(path, key="key") as log:
        return dict(log.records)


def valid_score(record: dict) -> float:
    acc = record["valid"]["acc"]
    return sum(acc.values()) / len(acc)


def chosen_lr(arm: str, scale: Scale, runs: dict) -> float | None:
    """The grid point with the best validation accuracy (depths 1-5, mean over depths); None
    until every grid point of the arm has run."""
    grid = [runs.get(Job("lr", arm, lr, scale.seeds[0], 1 / 3).key) for lr in scale.lr_grid]
    if any(r is None for r in grid):
        return None
    return max(grid, key=valid_score)["lr"]


def run_jobs(jobs: list[Job], path: Path, runs: dict, pool, log) -> None:
    todo = [j for j in jobs if j.key not in runs]
    if not todo:
        return
    finished = None  # one line per finished run, fsynced: a killed rerun skips it (opened at the first one)
    try:
        for record in pool.imap_unordered(_run_job, todo):
            if record is None:
                continue
            runs[record["key"]] = record
            finished = finished or AppendLog(path, key="key")
            finished.append(record)
            log(f"done {record['key']}: {record['steps']} steps, {record['train_flops']:.3g} FLOPs, "
                f"{record['wall_s']:.0f} s")
    finally:
        if finished is not None:
            finished.close()


def run_experiment(scale: Scale, out: Path, device: str, jobs: int, threads: int, log=print,
                   deadline: float | None = None, name: str = "cpu") -> dict:
    """Every run not yet in ``out/runs.jsonl``; runs not started by ``deadline`` (a time.time()) are
    left out, for the report to name and a rerun to do."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "runs.jsonl"
    runs = read_runs(path)
    marker = out / "config.txt"  # runs of two configurations never mix in one runs.jsonl
    if marker.exists() and marker.read_text(encoding="utf-8").strip() != name:
        raise SystemExit(f"{out} holds runs of --config {marker.read_text(encoding='utf-8').strip()}, not "
                         f"{name}: give another --out")
    marker.write_text(name + "\n", encoding="utf-8")
    budget = budget_flops(scale)
    log(f"budget per arm {budget:.3g} training FLOPs ({scale.budget_steps:g} transformer-12 steps of "
        f"{scale.batch} x {SEQ_LEN} tokens); LR grid {scale.lr_grid} at 1/3 of it; seeds {scale.seeds}")
    for arm in ARMS:
        config = arm_config(arm, scale, len(DT.VOCAB), SEQ_LEN)
        log(f"  {arm:<15} {config.arch:<11} block applications per token at inference "
            f"{config.layer_applications_per_token():>3}")
    if jobs == 1:  # in this process (the smoke test; a debugger)
        _init_worker(scale, device, threads, deadline)
        pool = contextlib.nullcontext(type("Serial", (), {"imap_unordered": staticmethod(map)}))
    else:  # forked after the imports: every worker runs the code this process loaded
        pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_init_worker,
                                                         initargs=(scale, device, threads, deadline))
    with pool as pool:
        grid = [Job("lr", arm, lr, scale.seeds[0], 1 / 3) for arm in ARMS for lr in scale.lr_grid]
        run_jobs(grid, path, runs, pool, log)
        ready = [arm for arm in ARMS if chosen_lr(arm, scale, runs) is not None]  # its whole grid ran
        finals = [Job("final", arm, chosen_lr(arm, scale, runs), seed, 1.0) for seed in scale.seeds for arm in ready]
        code = [Job("code", arm, chosen_lr(arm, scale, runs), scale.seeds[0], 1.0) for arm in ready] \
            if scale.code_steps else []
        # the last seed after the code runs: a run cut short still has two seeds of every arm and the code losses
        last = len(ready) * (len(scale.seeds) - 1) if len(scale.seeds) > 1 else len(finals)
        run_jobs(finals[:last] + code + finals[last:], path, runs, pool, log)
    return runs


# -- the report --------------------------------------------------------------------------------
def mean_se(per_seed: list[float], n_examples: int) -> tuple[float, float]:
    """Mean over seeds and its standard error: the larger of the seed-to-seed one (sample std /
    sqrt(seeds)) and the binomial one of all the examples pooled, so one or two seeds that happen
    to agree never give a zero error."""
    n = len(per_seed)
    mean = sum(per_seed) / n
    seed_se = math.sqrt(sum((x - mean) ** 2 for x in per_seed) / (n - 1) / n) if n > 1 else 0.0
    binomial = math.sqrt(max(mean * (1 - mean), 0.0) / max(n * n_examples, 1))
    return mean, max(seed_se, binomial)


def rule_accuracy(record: dict) -> tuple[float, int]:
    """One run's accuracy over the rule's depths (5-8) pooled, and how many examples that is."""
    acc, n = record["test"]["acc"], record["test"]["n"]
    examples = sum(n[str(d)] for d in RULE_DEPTHS)
    return sum(acc[str(d)] * n[str(d)] for d in RULE_DEPTHS) / examples, examples


def finals_of(arm: str, runs: dict) -> list[dict]:
    return sorted((r for r in runs.values() if r["kind"] == "final" and r["arm"] == arm), key=lambda r: r["seed"])


def verdict(runs: dict) -> dict:
    """The pre-registered rule: a recurrent arm helps only if its accuracy at depth >= 5 beats BOTH
    transformer-12 and the looped transformer by more than two standard errors of the difference,
    at equal training FLOPs (every arm had the same budget). Missing runs: no verdict."""
    stats = {}
    for arm in ARMS:
        finals = finals_of(arm, runs)
        if finals:
            values = [rule_accuracy(r) for r in finals]
            mean, se = mean_se([v for v, _ in values], values[0][1])
            stats[arm] = {"mean": mean, "se": se, "seeds": len(finals)}
    comparisons, helps = [], []
    for arm in RECURRENT_ARMS:
        wins = []
        for control in CONTROLS:
            if arm not in stats or control not in stats:
                comparisons.append({"arm": arm, "control": control, "result": "missing"})
                wins.append(None)
                continue
            diff = stats[arm]["mean"] - stats[control]["mean"]
            se = math.sqrt(stats[arm]["se"] ** 2 + stats[control]["se"] ** 2)
            win = diff > 2 * se
            comparisons.append({"arm": arm, "control": control, "difference": diff, "se": se, "beats": win})
            wins.append(win)
        if all(w is True for w in wins):
            helps.append(arm)
    missing = [c for c in comparisons if c["result" if "result" in c else "arm"] == "missing"]
    complete = not missing and all(stats.get(a, {}).get("seeds", 0) >= 3 for a in ARMS)
    if helps:
        text = f"HRM (or TRM) helps: {', '.join(helps)} beat(s) transformer-12 and the looped transformer at depth >= 5"
    else:
        text = "No: no HRM/TRM arm beats both transformer-12 and the looped transformer at depth >= 5 by > 2 SE"
    if not complete:
        text += " (INCOMPLETE: fewer than 3 seeds for some arm; provisional)"
    return {"stats": stats, "comparisons": comparisons, "helps": helps, "complete": complete, "text": text}


def constant_digit(record: dict) -> str | None:
    """A diagnostic outside the rule: the digit a run answers with at every depth, when its accuracy
    at each depth 1-8 is exactly that digit's share of the test answers (a constant predictor); else
    None. Answer digits are not exactly uniform (at depths 5-8 from 8.7 % to 11.5 %), so a constant
    predictor can differ from another by more than its binomial error."""
    acc, n = record["test"]["acc"], record["test"]["n"]
    shares = {str(d): [t.answer for t in DT.test_set(d, n[str(d)], seed=0)] for d in range(1, 9)}
    for digit in "0123456789":
        if all(abs(acc[str(d)] - shares[str(d)].count(digit) / n[str(d)]) < 1e-9 for d in range(1, 9)):
            return digit
    return None


def depth_table(runs: dict) -> list[str]:
    lines = ["| arm | seeds | LR | " + " | ".join(f"depth {d}" for d in range(1, 9))
             + " | depth 5-8 | one digit? |", "|---|---|---|" + "---|" * 10]
    for arm in ARMS:
        finals = finals_of(arm, runs)
        if not finals:
            lines.append(f"| {arm} | 0 | – |" + " missing |" * 10)
            continue
        cells = []
        for d in range(1, 9):
            mean, se = mean_se([r["test"]["acc"][str(d)] for r in finals], finals[0]["test"]["n"][str(d)])
            cells.append(f"{mean:.3f} ± {se:.3f}")
        values = [rule_accuracy(r) for r in finals]
        mean, se = mean_se([v for v, _ in values], values[0][1])
        constant = ",".join(constant_digit(r) or "no" for r in finals)
        lines.append(f"| {arm} | {len(finals)} | {finals[0]['lr']:g} | " + " | ".join(cells)
                     + f" | {mean:.3f} ± {se:.3f} | {constant} |")
    return lines


def cost_table(runs: dict) -> list[str]:
    lines = ["| arm | params | blocks/token (inference) | train FLOPs | FLOPs/step | steps | train s (mean) | "
             "act segments used (test) | code held-out loss (nats/byte) |", "|---|---|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        finals = finals_of(arm, runs)
        code = [r for r in runs.values() if r["kind"] == "code" and r["arm"] == arm]
        code_cell = f"{code[0]['code_heldout_loss']:.3f}" if code else "missing"
        if not finals:
            lines.append(f"| {arm} | | | | | | | | {code_cell} |")
            continue
        r = finals[0]
        seconds = sum(f["train_s"] for f in finals) / len(finals)
        used = [f["test"].get("segments_used") for f in finals if f["test"].get("segments_used") is not None]
        used_cell = f"{sum(used) / len(used):.2f}" if used else "–"
        lines.append(f"| {arm} | {r['params']:,} | {r['block_applications_per_token']} | {r['train_flops']:.3g} | "
                     f"{r['flops_per_step']:.3g} | {r['steps']} | {seconds:.0f} | {used_cell} | {code_cell} |")
    return lines


def lr_table(runs: dict, scale: Scale) -> list[str]:
    lines = ["| arm | " + " | ".join(f"LR {lr:g}" for lr in scale.lr_grid) + " | chosen |",
             "|---|" + "---|" * (len(scale.lr_grid) + 1)]
    for arm in ARMS:
        cells = []
        for lr in scale.lr_grid:
            r = runs.get(Job("lr", arm, lr, scale.seeds[0], 1 / 3).key)
            cells.append(f"{valid_score(r):.3f}" if r else "missing")
        chosen = chosen_lr(arm, scale, runs)
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {chosen:g} |" if chosen else f"| {arm} | " +
                     " | ".join(cells) + " | – |")
    return lines


def segments_table(runs: dict) -> list[str]:
    lines = ["| arm | depths | " + " | ".join(f"k={k}" for k in range(1, 9)) + " |", "|---|---|" + "---|" * 8]
    for arm in ADAPTIVE_ARMS:
        curve = next((r["by_segments"] for r in finals_of(arm, runs) if "by_segments" in r), None)
        if curve is None:
            lines.append(f"| {arm} | | " + "missing | " * 8)
            continue
        for label, depths in (("1-5", range(1, 6)), ("6-8", range(6, 9))):
            cells = [sum(curve[str(k)][str(d)] for d in depths) / len(depths) for k in range(1, 9)]
            lines.append(f"| {arm} | {label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return lines


def plots(runs: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, arm in enumerate(ARMS):
        finals = finals_of(arm, runs)
        if not finals:
            continue
        points = [mean_se([r["test"]["acc"][str(d)] for r in finals], finals[0]["test"]["n"][str(d)])
                  for d in range(1, 9)]
        shift = (index - (len(ARMS) - 1) / 2) * 0.05  # side by side, so equal results stay visible
        ax.errorbar([d + shift for d in range(1, 9)], [m for m, _ in points], yerr=[2 * s for _, s in points], label=arm, capsize=3,
                    marker="o", markersize=3)
    ax.axvline(TRAIN_MAX_DEPTH + 0.5, color="grey", linestyle=":")
    ax.axhline(0.1, color="grey", linestyle="--", linewidth=0.8)
    ax.set(xlabel="depth (trained on <= 5; dashed: chance)", ylabel="answer accuracy (error bars: 2 SE)",
           title="Accuracy vs depth at equal training FLOPs")
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "accuracy_vs_depth.png"))

    for axis, name, label in (("train_flops", "accuracy_vs_flops.png", "training FLOPs"),
                              ("train_s", "accuracy_vs_wallclock.png", "training seconds (one CPU thread)")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for arm in ARMS:
            finals = [r for r in finals_of(arm, runs) if "curve" in r]
            if not finals:
                continue
            length = min(len(r["curve"]) for r in finals)
            xs = [sum(r["curve"][i][axis] for r in finals) / len(finals) for i in range(length)]
            ys = [sum(sum(r["curve"][i]["acc"][str(d)] for d in RULE_DEPTHS) / len(RULE_DEPTHS) for r in finals)
                  / len(finals) for i in range(length)]
            ax.plot(xs, ys, marker="o", label=arm)
        ax.set(xlabel=label, ylabel="accuracy at depth 5-8 (curve subset)", title=f"Accuracy vs {label}")
        ax.legend(fontsize=7)
        written.append(_save(fig, out / name))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm in ADAPTIVE_ARMS:
        curve = next((r["by_segments"] for r in finals_of(arm, runs) if "by_segments" in r), None)
        if curve is None:
            continue
        for label, depths, style in (("depth 1-5", range(1, 6), "-"), ("depth 6-8", range(6, 9), "--")):
            ax.plot(range(1, 9), [sum(curve[str(k)][str(d)] for d in depths) / len(depths) for k in range(1, 9)],
                    style, marker="o", label=f"{arm} {label}")
    ax.set(xlabel="inference segments k (segments=k)", ylabel="answer accuracy",
           title="Act arms: accuracy vs inference segments (trained with at most 4)")
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "accuracy_vs_segments.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def report(runs: dict, scale: Scale, out: Path, config_name: str) -> str:
    result = verdict(runs)
    expected = [Job("lr", a, lr, scale.seeds[0], 1 / 3).key for a in ARMS for lr in scale.lr_grid]
    expected += [f"final/{a}/seed={s}" for a in ARMS for s in scale.seeds]
    have = {k.split("/lr=")[0] + "/" + k.split("/")[-1] if k.startswith("final/") else k for k in runs}
    missing = [k for k in expected if k not in have]
    lines = [f"# model_science.py --config {config_name}: {len(runs)} runs", "",
             f"Budget per arm: {budget_flops(scale):.3g} training FLOPs (block FLOPs, forward + backward).", "",
             "## Test accuracy by depth (mean ± SE over seeds; trained on depth <= 5)", "", *depth_table(runs), "",
             "## Cost", "", *cost_table(runs), "",
             "## Learning-rate grid (validation accuracy, depths 1-5, 1/3 budget)", "", *lr_table(runs, scale), "",
             "## Act arms: accuracy vs inference segments (first seed, curve subset)", "",
             *segments_table(runs), "", "## Verdict (the pre-registered rule, computed)", ""]
    for c in result["comparisons"]:
        if "difference" in c:
            lines.append(f"- {c['arm']} vs {c['control']}: difference {c['difference']:+.3f}, 2 SE "
                         f"{2 * c['se']:.3f} -> {'beats' if c['beats'] else 'does not beat'}")
        else:
            lines.append(f"- {c['arm']} vs {c['control']}: missing runs")
    lines += ["", f"**{result['text']}**", ""]
    lines.append("Missing runs: " + (", ".join(missing) if missing else "none"))
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "verdict.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if any(r["kind"] == "final" for r in runs.values()):
        plots(runs, out)
    return text


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--smoke", action="store_true", help="--config smoke: every arm a few steps, seconds")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", type=Path, default=None, help="runs.jsonl, report.md, verdict.json, plots "
                                                                 "(default docs/model-science/<config>)")
    parser.add_argument("--report-only", action="store_true", help="no training: the report from runs.jsonl")
    parser.add_argument("--deadline-min", type=float, default=None,
                        help="start no run after this many minutes (the report names what is missing)")
    args = parser.parse_args(argv)
    name = "smoke" if args.smoke else args.config
    scale = CONFIGS[name]
    out = args.out or Path(__file__).resolve().parents[1] / "docs" / "model-science" / name
    started = time.perf_counter()
    if args.report_only:
        runs = read_runs(out / "runs.jsonl")
    else:
        deadline = time.time() + 60 * args.deadline_min if args.deadline_min else None
        runs = run_experiment(scale, out, args.device, args.jobs, args.threads,
                              log=lambda m: print(m, flush=True), deadline=deadline, name=name)
    text = report(runs, scale, out, name)
    print(text)
    print(f"wall time {time.perf_counter() - started:.0f} s; written to {out}")
    return text


if __name__ == "__main__":
    main()
