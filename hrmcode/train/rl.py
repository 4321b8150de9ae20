"""``hrmcode train --stage rl``: improve a model with the sandbox verdict as the reward, by expert
iteration (``--rl-method expert``, rejection-sampling fine-tuning) or GRPO (``--rl-method grpo``,
group relative policy optimization, DeepSeekMath's policy gradient).

Each round samples ``--rl-samples`` answers per training task at ``--rl-temperature`` (seeded per
round, task and sample) and scores every distinct answer with the reward the caller gives (the CLI
gives ``hrmcode.eval.rewards.FunctionTaskReward``: ``eval humaneval``'s strict grader, the task's
``check`` in a trusted process calling the candidate across a process boundary; train may not
import eval, so the reward is passed in). Then:

- expert: keeps the answers that earn 1.0 (one per distinct text and task) and fine-tunes the
  model on every answer kept so far with the training loop's ``Trainer`` (``--rl-steps`` optimizer
  steps, a fresh AdamW and schedule per round);
- grpo: gives each answer the advantage ``(r - mean) / (std + 1e-6)`` of its task's group of
  ``--rl-samples`` (population std; a group whose rewards are all equal gives zeros and is left
  out) and takes ``--rl-steps`` AdamW steps (fresh per round, the same warmup and cosine schedule)
  on ``--batch-size`` answers each, cycling through the round's answers in a seeded order, on
  ``-mean over answers of (1/|answer|) sum over its tokens of [min(ratio * A, clip(ratio, 0.8, 1.2)
  * A) - rl_kl * k3]``: ``ratio`` is the token's probability now over before the round's first
  step, ``k3 = exp(ref - logp) - (ref - logp) - 1`` the KL estimate to the starting model
  (``--rl-kl``, 0: off). Log-probs come from the model's training forward (the one SFT trains) on
  the answer as SFT encodes it (synthesize's ``solve`` prompt, no loss, then the answer text
  re-encoded and ``<|eos|>``); only those answer tokens carry loss. An ``act`` model is refused
  (its training forward is ACT's deep-supervision loss).

Then it scores the held-out tasks (the tasks' ``metadata.split``, else synthesize's seeded split)
by one greedy answer each, through the same reward. Round 0 is the starting model's held-out
score. The prompt is synthesize's ``solve`` input for the task, so a model fine-tuned on ``solve``
examples answers in the format the reward reads.

Resumable: each finished round writes its weights to ``rounds/round-NNN/`` and then its record
(samples, rewarded, groups with signal, mean reward, held-out pass rate, seconds, the distinct
rewarded answers) to ``rounds.jsonl``; a rerun with the same ``-o`` continues after the last
finished round (``--redo`` starts over; a changed option other than ``--rl-rounds``, the method
included, is refused). The artifact root ends as a normal ``model`` artifact (weights, config,
tokenizer, hyperparameters) that eval, quantize and serve load, with ``curves.png`` (loss, mean reward
and held-out pass rate per round, drawn from ``rounds.jsonl``).

``--logger`` mirrors each round to TensorBoard (``<run>/tensorboard``, the default), Weights & Biases or
nowhere, at step = round (``loggers.rl_scalar_records``: ``train/mean_reward``, ``train/loss``, ...,
``heldout/pass_rate``). A round is logged just before its record is appended, and a rerun's TensorBoard
writer drops what was logged from its first round on, so each round shows once even after a kill.

Not guaranteed: that the rounds improve the model (the benchmark ``benchmarks/rl.py`` measures it);
the same numbers on another machine or torch version; that GRPO's ratio is against the sampling
distribution itself (the answers are sampled at ``--rl-temperature``, the ratio's denominator is the
model's own distribution at temperature 1 before the round's first step, as DeepSeekMath's is).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hrmcode.artifacts import MANIFEST, Artifact, ArtifactWriter, load_artifact, output_location
from hrmcode.data.examples import Example
from hrmcode.data.schema import parse_task
from hrmcode.data.synthesize.draft import problem_and_files
from hrmcode.data.synthesize.pipeline import split_key, split_of
from hrmcode.errors import InputError, UsageError
from hrmcode.jsonl import AppendLog, read_jsonl
from hrmcode.model.base import model_device, shifted_token_loss
from hrmcode.model.checkpoint import HYPERPARAMETERS, WEIGHTS, load_checkpoint, load_weights, save_checkpoint
from hrmcode.model.generate import GenerationConfig, generate
from hrmcode.reporting import reporter
from hrmcode.train import data as D
from hrmcode.train.distributed import setup, teardown
from hrmcode.train.loggers import (CURVES, TENSORBOARD_DIR, NoLogger, check_logger, open_logger, plot_curves,
                                   rl_scalar_records)
from hrmcode.train.loop import Phase, Trainer, check_compatible, lr_factor, make_optimizer
from hrmcode.train.options import TrainOptions

ROUNDS = "rounds.jsonl"
ROUND_DIRS = "rounds"
HELDOUT_FRACTION = 0.1  # synthesize's default (seed 0), for tasks that carry no split of their own
EDITABLE = "solution.py"
CLIP = 0.2  # GRPO: the ratio's clip range, PPO's 1 +- 0.2
ADVANTAGE_EPS = 1e-6

# 1.0 or 0.0 for each (task record, reply), in order
Reward = Callable[[Sequence[tuple[dict, str]]], list[float]]


@dataclass
class RLResult:
    out_dir: Path
    rounds: list[dict]
    completed: bool
    artifact: Artifact | None = None
    heldout_tasks: int = 0
    train_tasks: int = 0
    elapsed_s: float = 0.0

    def payload(self) -> dict[str, Any]:
        return {"out": str(self.out_dir), "completed": self.completed, "train_tasks": self.train_tasks,
                "heldout_tasks": self.heldout_tasks, "elapsed_s": round(self.elapsed_s, 2),
                "rounds": [{k: v for k, v in r.items() if k != "kept"} for r in self.rounds]}


# -- tasks and the reward ---------------------------------------------------------------------
def solve_prompt(task: dict) -> str:
    """What the model is shown: synthesize's ``solve`` input for the task (its SFT examples' format)."""
    files = task.get("files") or {}
    return problem_and_files(task, "solve", {p: files[p] for p in task.get("editable") or [] if files.get(p)})


def read_tasks(artifact: Artifact) -> tuple[list[dict], list[dict]]:
    """(training tasks, held-out tasks): the function tasks with tests of a tasks artifact."""
    path = artifact.file("tasks.jsonl")
    tasks = [parse_task(record, f"{path}:{i}").model_dump() for i, record in enumerate(read_jsonl(path), 1)]
    usable = [t for t in tasks if t["kind"] == "function" and t["tests"]["entry_point"] and t["tests"]["files"]
              and t["editable"] == [EDITABLE]]
    if not usable:
        raise InputError(f"{path}: no function tasks with tests ({len(tasks)} tasks of other kinds)",
                         "fetch generated ones with `hrmcode fetch function-tasks`")

    def split(task: dict) -> str:
        return task["metadata"].get("split") or split_of(split_key(task), 0, HELDOUT_FRACTION)

    train = [t for t in usable if split(t) == "train"]
    heldout = [t for t in usable if split(t) == "heldout"]
    if not train or not heldout:
        raise InputError(f"{path}: {len(train)} training and {len(heldout)} held-out function tasks",
                         "RL needs both: give the tasks metadata.split train/heldout")
    return train, heldout


# -- one round ------------------------------------------------------------------------------
def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


@dataclass
class Policy:
    model: torch.nn.Module
    tokenizer: Any
    max_new_tokens: int

    def answer(self, task: dict, temperature: float, seed: int) -> str:
        prompt_ids = self.model.config.prompt.encode(self.tokenizer, solve_prompt(task), "solve")
        budget = min(self.max_new_tokens, self.model.config.max_seq_len - len(prompt_ids) - 1)
        if budget < 1:
            return ""  # the prompt fills the context: no answer, no reward
        cfg = GenerationConfig(max_new_tokens=budget, temperature=temperature, seed=seed)
        return generate(self.model, self.tokenizer, prompt_ids, cfg).text


def pass_rate(policy: Policy, reward: Reward, tasks: list[dict]) -> int:
    """Held-out tasks passed by one greedy answer each."""
    return int(sum(reward([(task, policy.answer(task, 0.0, 0)) for task in tasks])))


@dataclass
class Group:
    """One training task's answers of a round and their rewards, in sampling order."""
    task: dict
    replies: list[str]
    rewards: list[float]


def sample_and_reward(policy: Policy, reward: Reward, tasks: list[dict], options: TrainOptions,
                      round_no: int) -> list[Group]:
    """``--rl-samples`` answers per task, each distinct (task, answer) scored once."""
    groups = []
    with reporter().task(f"round {round_no}: sample", len(tasks)) as bar:
        for task in tasks:
            groups.append(Group(task, [policy.answer(task, options.rl_temperature,
                                                     _seed(options.seed, round_no, task["id"], j))
                                       for j in range(options.rl_samples)], []))
            bar.advance()
    distinct = {(g.task["id"], reply): (g.task, reply) for g in groups for reply in g.replies}
    scores = dict(zip(distinct, reward(list(distinct.values()))))
    for g in groups:
        g.rewards = [scores[(g.task["id"], reply)] for reply in g.replies]
    return groups


def rewarded(groups: list[Group]) -> list[dict]:
    """The distinct answers that earned 1.0, as {task_id, target}."""
    found = {(g.task["id"], reply): None for g in groups for reply, r in zip(g.replies, g.rewards) if r == 1.0}
    return [{"task_id": task_id, "target": reply} for task_id, reply in found]


def _examples(kept: list[dict], tasks: dict[str, dict]) -> list[Example]:
    return [Example(id=f"rl/{i}", task_id=k["task_id"], source=tasks[k["task_id"]]["source"], level="solve",
                    input={"text": solve_prompt(tasks[k["task_id"]])}, target=k["target"], language="python",
                    stage=1, split="train", provenance={"rule": "rl/rewarded-sample", "model_written": True})
            for i, k in enumerate(kept)]


def fine_tune(model: torch.nn.Module, tokenizer: Any, examples: list[Example], options: TrainOptions,
              round_no: int, hyper: dict) -> float | None:
    """``--rl-steps`` steps of the training loop's ``Trainer`` on ``examples``; the last loss."""
    seq_len = model.config.max_seq_len
    docs = D.encode_examples(examples, tokenizer, seq_len, model.config.prompt)
    if not docs.docs:
        return None
    round_options = _round_options(options, round_no, seq_len)
    dist, device = setup(options.device)
    try:
        trainer = Trainer(round_options, dist, device, model, tokenizer, [Phase("sft", docs, D.EncodedSet())], hyper)
        record: dict = {}
        while trainer.step < options.rl_steps:
            record = trainer.train_step()
    finally:
        teardown(dist)
    return record.get("loss")


def _round_options(options: TrainOptions, round_no: int, seq_len: int) -> TrainOptions:
    steps = options.rl_steps
    return options.model_copy(update={
        "max_steps": steps, "warmup_steps": min(options.warmup_steps, steps // 5), "seq_len": seq_len,
        "seed": _seed(options.seed, round_no, "fine-tune"), "ema_decay": 0.0, "eval_every": 0})


# -- GRPO -------------------------------------------------------------------------------------
def group_advantages(rewards: Sequence[float]) -> list[float]:
    """``(r - mean) / (std + eps)`` within one group (population std); all equal: all 0."""
    r = torch.tensor(rewards, dtype=torch.float64)
    if bool((r == r[0]).all()):
        return [0.0] * len(rewards)
    return ((r - r.mean()) / (r.std(unbiased=False) + ADVANTAGE_EPS)).tolist()


def answer_batch(docs: list[D.Doc], seq_len: int, pad_id: int) -> D.Batch:
    """One document per row, padded to ``seq_len``; labels on the answer tokens only."""
    return D.collate([D.pack([doc], seq_len, pad_id)[0] for doc in docs])


def token_logprobs(model: torch.nn.Module, batch: D.Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Each label's log-probability [B, T-1] under the model's training forward (0 off the answer), and
    the answer mask (float)."""
    out = model(batch.input_ids, prefix_mask=batch.prefix_mask, doc_ids=batch.doc_ids)
    ce, valid, _ = shifted_token_loss(out.logits, batch.labels)
    return -ce, valid.float()


def grpo_loss(logp: torch.Tensor, old: torch.Tensor, ref: torch.Tensor | None, mask: torch.Tensor,
              advantages: torch.Tensor, kl: float) -> torch.Tensor:
    """``-mean over answers of (1/|answer|) sum_t [min(ratio A, clip(ratio) A) - kl * k3]`` (module docstring)."""
    ratio = torch.exp(logp - old)
    a = advantages[:, None]
    objective = torch.minimum(ratio * a, ratio.clamp(1 - CLIP, 1 + CLIP) * a)
    if ref is not None and kl:
        log_ratio = ref - logp
        objective = objective - kl * (torch.exp(log_ratio) - log_ratio - 1)
    return -((objective * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def grpo_update(model: torch.nn.Module, tokenizer: Any, groups: list[Group], options: TrainOptions, round_no: int,
                reference: torch.nn.Module | None) -> float | None:
    """``--rl-steps`` GRPO steps on the answers of ``groups`` with a nonzero advantage; the last loss
    (None: no group had signal)."""
    picked = [(g.task, reply, a) for g in groups for reply, a in zip(g.replies, group_advantages(g.rewards)) if a]
    examples = _examples([{"task_id": t["id"], "target": reply} for t, reply, _ in picked],
                         {t["id"]: t for t, _, _ in picked})
    docs, advantages = [], []
    for example, (_, _, a) in zip(examples, picked):
        doc = D.encode_example(example, tokenizer, model.config.prompt)
        if len(doc.ids) <= model.config.max_seq_len:
            docs.append(doc)
            advantages.append(a)
    if not docs:
        return None
    device = model_device(model)
    seq_len = max(len(doc.ids) for doc in docs)
    size = options.batch_size
    answers = answer_batch(docs, seq_len, tokenizer.pad_id).to(device)
    batches = [answers.rows(slice(i, i + size)) for i in range(0, len(docs), size)]
    model.train()
    with torch.no_grad():  # the policy before this round's steps, and the starting model
        old = torch.cat([token_logprobs(model, b)[0] for b in batches])
        ref = torch.cat([token_logprobs(reference, b)[0] for b in batches]) if reference is not None else None
    adv = torch.tensor(advantages, dtype=torch.float32, device=device)
    round_options = _round_options(options, round_no, seq_len)
    optimizer = make_optimizer(model, round_options, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, round_options))
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(round_options.seed)).tolist()
    loss = None
    for step in range(options.rl_steps):
        pick = torch.tensor([order[(step * size + i) % len(order)] for i in range(min(size, len(order)))],
                            device=device)
        logp, mask = token_logprobs(model, answers.rows(pick))
        loss = grpo_loss(logp, old[pick], None if ref is None else ref[pick], mask, adv[pick], options.rl_kl)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), options.clip_grad)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return None if loss is None else float(loss.detach())


# -- the run --------------------------------------------------------------------------------
def _check_options(options: TrainOptions, init_from: str | None) -> None:
    if init_from is None:
        raise UsageError("--stage rl starts from a model: --from MODEL is missing", "pass --from <model artifact>")
    for name in ("qat", "ema_decay", "grad_accum", "curriculum", "compile"):
        if getattr(options, name) != TrainOptions.model_fields[name].default:
            raise UsageError(f"--{name.replace('_', '-')} does not apply to --stage rl", "drop it")
    if options.rl_method == "expert" and options.rl_kl != TrainOptions.model_fields["rl_kl"].default:
        raise UsageError("--rl-kl applies only to --rl-method grpo", "add --rl-method grpo, or drop --rl-kl")
    check_logger(options.logger)  # before the run directory is made


def train_rl(options: TrainOptions, tasks_ref: str, *, init_from: str | None, reward: Reward,
             out: Path | None = None, name: str | None = None, redo: bool = False, stop_after: int | None = None,
             workspace: Path | None = None) -> RLResult:
    """Run ``options.rl_rounds`` rounds of ``options.rl_method`` from the model ``init_from`` on the
    function tasks of ``tasks_ref``, scored by ``reward`` (see the module docstring); ``stop_after``
    ends this invocation after that many rounds (a rerun continues)."""
    started = time.perf_counter()
    _check_options(options, init_from)
    tasks_art = load_artifact(tasks_ref, "tasks", workspace)
    model_art = load_artifact(init_from, "model", workspace)
    train_tasks, heldout_tasks = read_tasks(tasks_art)
    by_id = {t["id"]: t for t in train_tasks + heldout_tasks}
    loaded = load_checkpoint(model_art.path, device=options.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    grpo = options.rl_method == "grpo"
    if grpo and loaded.config.mode == "act":
        raise UsageError(f"--rl-method grpo does not train an act model ({init_from}): its training forward is "
                         "ACT's deep-supervision loss, not per-token log-probs", "use --rl-method expert")
    reference = None
    if grpo and options.rl_kl:
        reference = load_checkpoint(model_art.path, device=options.device).model.requires_grad_(False)
    params = options.model_dump(mode="json")
    run_dir, update_latest = output_location("train", name or f"{model_art.name}-rl", out, workspace, params)
    if redo:
        shutil.rmtree(run_dir / ROUND_DIRS, ignore_errors=True)
        shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)
        for stale in (ROUNDS, WEIGHTS, CURVES, MANIFEST):
            (run_dir / stale).unlink(missing_ok=True)
    hyper = {"train": params, "model": loaded.config.to_dict(), "data": [tasks_art.ref(), model_art.ref()],
             "world_size": 1}
    writer = ArtifactWriter(run_dir, "model", name=name or f"{model_art.name}-rl", params=params, seed=options.seed,
                            inputs=[tasks_art, model_art], resumable=True, update_latest=update_latest)
    policy = Policy(model, tokenizer, options.rl_max_new_tokens)
    with AppendLog(run_dir / ROUNDS, key="round") as rounds:
        done = sorted(int(k) for k in rounds.records)
        if done and done[-1] > 0:
            resume_dir = run_dir / ROUND_DIRS / f"round-{done[-1]:03d}"
            check_compatible(json.loads((resume_dir / HYPERPARAMETERS).read_text(encoding="utf-8")), options, run_dir)
            load_weights(model, resume_dir / WEIGHTS)
            reporter().log(f"resuming after round {done[-1]} of {options.rl_rounds}")
        upcoming = done[-1] + 1 if done else 0  # the first round this invocation records
        first = max(upcoming, 1)
        last = options.rl_rounds if stop_after is None else min(options.rl_rounds, first - 1 + stop_after)
        logger = open_logger(options.logger, run_dir, params, next_step=upcoming) if upcoming <= last else NoLogger()

        def record_round(record: dict) -> None:
            # logged first: a kill in between leaves TensorBoard a round the rerun redoes and its writer purges
            for scalars in rl_scalar_records(record):
                logger.log(scalars)
            rounds.append(record)

        try:
            if not done:
                t0 = time.perf_counter()
                passed = pass_rate(policy, reward, heldout_tasks)
                record_round({"round": 0, "samples": 0, "rewarded": 0, "groups_with_signal": 0, "mean_reward": None,
                              "heldout_passed": passed, "heldout_tasks": len(heldout_tasks), "loss": None,
                              "seconds": round(time.perf_counter() - t0, 2), "kept": []})
            kept = [k for r in sorted(rounds.records.values(), key=lambda r: r["round"]) for k in r["kept"]]
            for round_no in range(first, last + 1):
                t0 = time.perf_counter()
                torch.manual_seed(_seed(options.seed, round_no))
                groups = sample_and_reward(policy, reward, train_tasks, options, round_no)
                new = rewarded(groups)
                if grpo:
                    loss = grpo_update(model, tokenizer, groups, options, round_no, reference)
                else:
                    known = {(k["task_id"], k["target"]) for k in kept}
                    kept += [k for k in new if (k["task_id"], k["target"]) not in known]
                    loss = fine_tune(model, tokenizer, _examples(kept, by_id), options, round_no, hyper)
                passed = pass_rate(policy, reward, heldout_tasks)
                save_checkpoint(run_dir / ROUND_DIRS / f"round-{round_no:03d}", model, tokenizer, hyper)
                all_rewards = [r for g in groups for r in g.rewards]
                record = {"round": round_no, "samples": len(all_rewards), "rewarded": len(new),
                          "groups_with_signal": sum(len(set(g.rewards)) > 1 for g in groups),
                          "mean_reward": round(sum(all_rewards) / len(all_rewards), 4), "heldout_passed": passed,
                          "heldout_tasks": len(heldout_tasks), "loss": loss,
                          "seconds": round(time.perf_counter() - t0, 2), "kept": new}
                record_round(record)
                reporter().log(f"round {round_no}/{options.rl_rounds}: {len(new)} distinct answers of "
                               f"{record['samples']} samples rewarded, {record['groups_with_signal']} groups with "
                               f"signal, held-out {passed}/{len(heldout_tasks)} passed ({record['seconds']:.0f} s)")
        finally:
            logger.close()
        records = sorted(rounds.records.values(), key=lambda r: r["round"])
    result = RLResult(out_dir=run_dir, rounds=records, completed=records[-1]["round"] >= options.rl_rounds,
                      heldout_tasks=len(heldout_tasks), train_tasks=len(train_tasks))
    if result.completed:
        for file_name in save_checkpoint(run_dir, model, tokenizer, hyper):
            writer.add(file_name)
        writer.add(ROUNDS)
        final = records[-1]
        title = f"{loaded.config.label}, {options.rl_method} RL, {final['round']} rounds"
        if plot_curves(records, run_dir / CURVES, title) is not None:
            writer.add(CURVES)
        result.artifact = writer.finish({
            "stage": "rl", "method": options.rl_method, "rounds": final["round"], "train_tasks": len(train_tasks),
            "heldout_tasks": len(heldout_tasks), "heldout_passed": [r["heldout_passed"] for r in records],
            "rewarded": [r["rewarded"] for r in records], "elapsed_s": round(time.perf_counter() - started, 2)})
    else:
        reporter().log(f"stopped after round {records[-1]['round']} of {options.rl_rounds}; rerun to continue")
    result.elapsed_s = time.perf_counter() - started
    return result
