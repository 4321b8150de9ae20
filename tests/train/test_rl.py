"""`hrmcode train --stage rl`: expert iteration and GRPO with the sandbox verdict as the reward.

The reward (``hrmcode.eval.rewards.FunctionTaskReward``) runs in the real bubblewrap sandbox; the
hostile corpora of the verdict issue (``tests/eval/hostile/he_*``, ``tests/synth/fixtures/hostile/he_*``)
are fed through it and must earn nothing, while honest answers earn 1.0. The model is a very small
HRM trained for two steps here, so the run mechanics (rounds, records, resume, the artifact) are
what is tested; benchmarks/rl.py measures whether the rounds help.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from hrmcode.artifacts import ArtifactWriter, load_artifact
from hrmcode.data.function_tasks import function_tasks
from hrmcode.data.sources import fetch
from hrmcode.data.sources._common import iter_jsonl_lines
from hrmcode.data.sources.humaneval import package_data_file, to_task
from hrmcode.data.synthesize import synthesize
from hrmcode.data.synthesize.pipeline import split_key, split_of
from hrmcode.eval.rewards import FunctionTaskReward, completion_of
from hrmcode.jsonl import AppendLog, read_jsonl
from hrmcode.model.base import IGNORE, ModelOutput
from hrmcode.model.checkpoint import load_checkpoint
from hrmcode.train import data as D
from hrmcode.train.loggers import rl_scalar_records
from hrmcode.train.loop import train
from hrmcode.train.options import resolve_options
from hrmcode.train.rl import (ROUNDS, Group, _examples, answer_batch, fine_tune, group_advantages, grpo_loss,
                              grpo_update, read_tasks, sample_and_reward, solve_prompt, token_logprobs, train_rl)
from tests._sandboxes import read_attack, real_sandbox

TESTS = Path(__file__).resolve().parents[1]
EVAL_CORPUS = sorted((TESTS / "eval/hostile").glob("he_*.py"))
VALIDATE_CORPUS = sorted((TESTS / "synth/fixtures/hostile").glob("he_*.reply"))
SMALL = {"hidden_size": 32, "num_heads": 2, "h_layers": 1, "l_layers": 1, "h_cycles": 1, "l_cycles": 1}
RL = ["--stage", "rl", "--rl-samples", "2", "--rl-steps", "2", "--rl-max-new-tokens", "24", "--rl-rounds", "2"]


def _whole(code: str) -> str:
    return f"solution.py\n```python\n{code}```\n"


@pytest.fixture(scope="module")
def sandbox():
    return real_sandbox("local")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sandbox):
    """(tasks artifact of 3 training + 2 held-out function tasks, a small model trained 2 steps on them)."""
    root = tmp_path_factory.mktemp("rl")
    tasks = function_tasks(seed=0, families=2)
    picked = [t for t in tasks if t.metadata["split"] == "train"][:3] + \
             [t for t in tasks if t.metadata["split"] == "heldout"][:2]
    (root / "tasks.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in picked), encoding="utf-8")
    tasks_art = fetch("tasks", from_path=root / "tasks.jsonl", out=root / "tasks").artifact
    examples = synthesize(str(tasks_art.path), out=root / "examples", levels=("solve",), heldout_fraction=0.0,
                          workspace=root / "ws")
    config = root / "small.json"
    config.write_text(json.dumps({"preset": "tiny", "model": SMALL}), encoding="utf-8")
    options = resolve_options(str(config), {"max_steps": 2, "seq_len": 192, "vocab_size": 300, "batch_size": 2,
                                            "eval_every": 0, "logger": "none"})
    model = train(options, str(examples.artifact.path), out=root / "model", workspace=root / "ws")
    return root, tasks_art, model.out_dir, config


def test_generated_tasks_are_seeded_split_and_in_humaneval_shape():
    tasks = function_tasks(seed=3)
    assert [t.model_dump() for t in tasks] == [t.model_dump() for t in function_tasks(seed=3)]
    other = function_tasks(seed=4)
    assert [t.id for t in tasks] == [t.id for t in other] and [t.tests for t in tasks] != [t.tests for t in other]
    held = {t.id for t in tasks if t.metadata["split"] == "heldout"}
    assert 10 <= len(held) < len(tasks) // 2 and len({t.id for t in tasks}) == len(tasks) == 80
    # synthesize's split: its held-out examples are exactly these tasks'
    assert held == {t.id for t in tasks if split_of(split_key(t.model_dump()), 3, 0.25) == "heldout"}
    task = tasks[0]
    assert task.kind == "function" and task.files["solution.py"] == task.prompt and task.editable == ["solution.py"]
    assert task.tests.files["test.py"].count("assert candidate(") == 3


def test_fetch_function_tasks(cli, tmp_path):
    result = cli("fetch", "function-tasks", "--limit", "16", "-o", str(tmp_path / "tasks"))
    assert result.exit_code == 0, result.stderr
    records = list(read_jsonl(tmp_path / "tasks/tasks.jsonl"))
    assert [r["id"] for r in records] == [t.id for t in function_tasks(seed=0)[:16]]  # two whole families
    _one_line_error(cli("fetch", "function-tasks", "--from", str(tmp_path), "-o", str(tmp_path / "x")), 2, "no --from")


def test_hostile_corpus_earns_no_reward_and_honest_answers_do(sandbox):
    humaneval = {r["task_id"]: to_task(r, "HumanEval").model_dump() for _, r in iter_jsonl_lines(package_data_file())}
    pairs, names = [], []
    for path in EVAL_CORPUS:  # completions after the prompt, as eval's corpus holds them
        header, lines = read_attack(path)
        task = humaneval[header["task"]]
        pairs.append((task, _whole(task["prompt"] + "".join(lines))))
        names.append(path.name)
    for path in VALIDATE_CORPUS:  # whole-file replies to HumanEval/0, conftest.py and all
        pairs.append((humaneval["HumanEval/0"], path.read_text(encoding="utf-8")))
        names.append(path.name)
    generated = function_tasks(seed=0)[0].model_dump()
    hostile_generated = {
        "loop forever": _whole(generated["prompt"] + "    while True:\n        pass\n"),
        "exit 0 and print a pass": _whole("import os\nprint('passed')\nos._exit(0)\n" + generated["prompt"]),
        "test file beside it": _whole(generated["prompt"] + "    return x\n") + "\ntest.py\n```python\n"
                                                                               "def check(candidate):\n    pass\n```\n",
        "the stub": _whole(generated["prompt"]),
    }
    pairs += [(generated, reply) for reply in hostile_generated.values()]
    names += list(hostile_generated)
    honest = [(humaneval["HumanEval/0"], _whole(humaneval["HumanEval/0"]["solution"]["files"]["solution.py"])),
              (generated, _whole(generated["solution"]["files"]["solution.py"]))]
    rewards = FunctionTaskReward(sandbox, timeout_s=2.0)(pairs + honest)
    assert len(EVAL_CORPUS) >= 20 and len(VALIDATE_CORPUS) >= 8
    earned = [name for name, r in zip(names, rewards) if r != 0.0]
    assert not earned, f"hostile replies earned reward: {earned}"
    assert rewards[len(pairs):] == [1.0, 1.0]


def test_only_the_solution_file_of_a_reply_is_taken():
    task = function_tasks(seed=0)[0]
    assert completion_of(task, "no fenced file here") is None
    reply = _whole(task.solution.files["solution.py"]) + "\nconftest.py\n```python\nimport os\n```\n"
    assert completion_of(task, reply) == task.solution.files["solution.py"][len(task.prompt):]


def test_one_round_from_the_cli_then_resume_after_it(cli, runs):
    root, tasks_art, model_dir, config = runs
    out = root / "rl"
    args = ["train", str(tasks_art.path), "--config", str(config), *RL, "--from", str(model_dir), "-o", str(out)]
    first = cli(*args, "--stop-after", "1")
    assert first.exit_code == 0, first.stderr
    assert "held-out passed" in first.stdout and "rerun to continue" in first.stderr
    records = list(read_jsonl(out / ROUNDS))
    assert [r["round"] for r in records] == [0, 1] and not (out / "manifest.json").exists()
    assert records[1]["samples"] == 3 * 2 and records[0]["heldout_tasks"] == 2
    before = (out / ROUNDS).read_text(encoding="utf-8")

    second = cli(*args)
    assert second.exit_code == 0, second.stderr
    assert "resuming after round 1 of 2" in second.stderr and "round 2/2" in second.stderr
    records = list(read_jsonl(out / ROUNDS))
    assert [r["round"] for r in records] == [0, 1, 2]
    assert (out / ROUNDS).read_text(encoding="utf-8").startswith(before)  # finished rounds kept as they were
    artifact = load_artifact(out, "model")
    assert artifact.manifest["stats"]["stage"] == "rl" and artifact.manifest["stats"]["rounds"] == 2
    assert _logged(out) == _expected_scalars(records)  # both invocations' rounds, each once
    assert "curves.png" in {o["name"] for o in artifact.manifest["outputs"]}
    loaded = load_checkpoint(out)  # a normal model artifact: eval, quantize and serve load it like this
    assert loaded.config.to_dict() == load_checkpoint(model_dir).config.to_dict()

    finished = (out / ROUNDS).read_text(encoding="utf-8")
    again = cli("--json", *args)  # rerunning a finished run trains nothing more
    assert again.exit_code == 0, again.stderr
    payload = json.loads(again.stdout)
    assert payload["completed"] and payload["train_tasks"] == 3 and payload["heldout_tasks"] == 2
    assert [r["round"] for r in payload["rounds"]] == [0, 1, 2]
    assert (out / ROUNDS).read_text(encoding="utf-8") == finished


def _logged(run: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def _expected_scalars(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for scalars in rl_scalar_records(record):
            for key, value in scalars.items():
                if key not in ("step", "split"):
                    expected.setdefault(f"{scalars['split']}/{key}", []).append((scalars["step"], float(value)))
    return expected


def test_a_round_logged_but_not_recorded_is_logged_once_after_the_rerun(runs, monkeypatch):
    """Killed between logging round 2 and appending it to rounds.jsonl: the rerun redoes round 2, and TensorBoard
    shows the rerun's round 2 alone (the killed run's reward is all 1.0, the rerun's all 0.0)."""
    root, tasks_art, model_dir, config = runs
    options = resolve_options(str(config), {"stage": "rl", "rl_rounds": 2, "rl_samples": 2, "rl_steps": 1,
                                            "rl_max_new_tokens": 8, "batch_size": 2})
    out = root / "killed"
    append = AppendLog.append

    def killed_at_round_2(self, record):
        if record["round"] == 2:
            raise KeyboardInterrupt
        append(self, record)

    monkeypatch.setattr(AppendLog, "append", killed_at_round_2)
    with pytest.raises(KeyboardInterrupt):
        train_rl(options, str(tasks_art.path), init_from=str(model_dir), reward=lambda pairs: [1.0] * len(pairs),
                 out=out)
    monkeypatch.setattr(AppendLog, "append", append)
    assert _logged(out)["train/mean_reward"] == [(1, 1.0), (2, 1.0)]
    result = train_rl(options, str(tasks_art.path), init_from=str(model_dir), reward=lambda pairs: [0.0] * len(pairs),
                      out=out)
    assert result.completed and [r["mean_reward"] for r in result.rounds] == [None, 1.0, 0.0]
    logged = _logged(out)
    assert logged == _expected_scalars(result.rounds) and logged["train/mean_reward"] == [(1, 1.0), (2, 0.0)]

    train_rl(options.model_copy(update={"logger": "none"}), str(tasks_art.path), init_from=str(model_dir),
             reward=lambda pairs: [0.0] * len(pairs), out=out, redo=True, stop_after=0)
    assert not (out / "tensorboard").exists() and not (out / "curves.png").exists()  # --redo, then round 0 only


def test_fine_tuning_on_rewarded_answers_moves_the_model(runs):
    root, tasks_art, model_dir, config = runs
    train_tasks, heldout = read_tasks(tasks_art)
    assert {t["metadata"]["split"] for t in heldout} == {"heldout"}
    loaded = load_checkpoint(model_dir)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    kept = [{"task_id": t["id"], "target": _whole(t["solution"]["files"]["solution.py"])} for t in train_tasks]
    examples = _examples(kept, {t["id"]: t for t in train_tasks})
    assert examples[0].input.text == solve_prompt(train_tasks[0])
    options = resolve_options(str(config), {"stage": "rl", "rl_steps": 2, "batch_size": 2})
    loss = fine_tune(loaded.model, loaded.tokenizer, examples, options, 1, {})
    assert loss is not None and loss > 0
    assert any(not torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())


def _one_line_error(result, code: int, *words: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    line = result.stderr.strip().splitlines()[-1]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in line, line


def test_bad_input_is_one_line(cli, runs, tmp_path):
    root, tasks_art, model_dir, config = runs
    base = ["train", "--config", str(config), *RL, "-o", str(tmp_path / "run")]
    _one_line_error(cli(*base[:1], str(tmp_path / "nothing"), *base[1:], "--from", str(model_dir)), 1, "no artifact")
    _one_line_error(cli(*base[:1], str(tasks_art.path), *base[1:], "--from", str(tasks_art.path)), 1,
                    "'tasks' artifact, expected 'model'")
    _one_line_error(cli(*base[:1], str(tasks_art.path), *base[1:]), 2, "--from MODEL is missing")
    _one_line_error(cli("train", str(tasks_art.path), "--from", str(model_dir)), 2, "--stage rl")
    _one_line_error(cli(*base[:1], str(tasks_art.path), *base[1:], "--from", str(model_dir), "--resume", "auto"), 2,
                    "--resume does not apply")
    with ArtifactWriter(tmp_path / "bad", "tasks", name="bad", update_latest=False) as writer:
        writer.write_jsonl("tasks.jsonl", [{"id": "x/1", "source": "x"}])
        writer.finish({})
    _one_line_error(cli(*base[:1], str(tmp_path / "bad"), *base[1:], "--from", str(model_dir)), 1,
                    "not a valid hrmcode task")
    exercise = {"id": "x/2", "source": "x", "language": "python", "kind": "exercise", "prompt": "p"}
    with ArtifactWriter(tmp_path / "exercises", "tasks", name="ex", update_latest=False) as writer:
        writer.write_jsonl("tasks.jsonl", [exercise])
        writer.finish({})
    _one_line_error(cli(*base[:1], str(tmp_path / "exercises"), *base[1:], "--from", str(model_dir)), 1,
                    "no function tasks with tests")
    if importlib.util.find_spec("wandb") is None:  # refused as the supervised stage refuses it, before any round
        _one_line_error(cli(*base[:1], str(tasks_art.path), *base[1:], "--from", str(model_dir), "--logger", "wandb"),
                        2, "needs the wandb package")
    assert not (tmp_path / "run").exists()


# -- GRPO -------------------------------------------------------------------------------------
def test_group_advantages():
    third = math.sqrt(3)
    assert group_advantages([1.0, 0.0, 0.0, 0.0]) == pytest.approx([third, -1 / third, -1 / third, -1 / third], 1e-5)
    assert group_advantages([1.0, 1.0, 0.0, 0.0]) == pytest.approx([1.0, 1.0, -1.0, -1.0], 1e-5)
    assert group_advantages([0.0, 0.0, 0.0]) == [0.0, 0.0, 0.0] and group_advantages([1.0, 1.0]) == [0.0, 0.0]


class _TableLM(torch.nn.Module):
    """Logits that are a learned table per position: a gradient on a row is a gradient on that position."""

    def __init__(self, length: int, vocab: int):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(length, vocab, generator=torch.Generator().manual_seed(0)))

    def forward(self, input_ids, **_):
        return ModelOutput(logits=self.table[None].expand(input_ids.shape[0], -1, -1))


def test_grpo_loss_touches_the_answer_tokens_only_and_an_equal_group_nothing():
    doc = D.Doc(ids=[5, 6, 7, 8, 9, 10], prompt_len=3)  # prompt 5 6 7, answer 8 9 10
    batch = answer_batch([doc, doc], 8, 0)
    assert batch.labels[0].tolist() == [IGNORE] * 3 + [8, 9, 10] + [IGNORE] * 2
    lm = _TableLM(8, 12)
    with torch.no_grad():
        old, mask = token_logprobs(lm, batch)
    logp, mask = token_logprobs(lm, batch)
    grpo_loss(logp, old, None, mask, torch.tensor([1.0, -0.5]), 0.0).backward()
    touched = [bool(row.abs().sum() > 0) for row in lm.table.grad]
    assert touched == [False, False, True, True, True, False, False, False]  # positions 2-4 predict 8 9 10
    lm.table.grad = None
    logp, mask = token_logprobs(lm, batch)
    grpo_loss(logp, old, old, mask, torch.tensor([0.0, 0.0]), 0.5).backward()  # no advantage, KL at its minimum
    assert not lm.table.grad.abs().sum()


def _answer_logprob(model, tokenizer, task: dict, answer: str) -> float:
    [example] = _examples([{"task_id": task["id"], "target": answer}], {task["id"]: task})
    doc = D.encode_example(example, tokenizer, model.config.prompt)
    with torch.no_grad():
        logp, mask = token_logprobs(model.train(), answer_batch([doc], len(doc.ids), tokenizer.pad_id))
    return float((logp * mask).sum() / mask.sum())


def test_a_grpo_round_raises_the_rewarded_answer(runs):
    root, tasks_art, model_dir, config = runs
    train_tasks, _ = read_tasks(tasks_art)
    loaded = load_checkpoint(model_dir)
    task = train_tasks[0]
    good, bad = _whole("def f(x):\n    return x\n"), _whole("def f(x):\n    pass\n")
    # a fake reward that rewards one fixed string
    groups = [Group(task, [good, bad, bad, good], [1.0, 0.0, 0.0, 1.0]), Group(train_tasks[1], [bad, bad], [0.0, 0.0])]
    before = [_answer_logprob(loaded.model, loaded.tokenizer, task, a) for a in (good, bad)]
    reference = load_checkpoint(model_dir).model.requires_grad_(False)
    options = resolve_options(str(config), {"stage": "rl", "rl_method": "grpo", "rl_steps": 3, "batch_size": 4,
                                            "lr": 3e-3})
    loss = grpo_update(loaded.model, loaded.tokenizer, groups, options, 1, reference)
    after = [_answer_logprob(loaded.model, loaded.tokenizer, task, a) for a in (good, bad)]
    assert loss is not None and after[0] > before[0] and after[0] - after[1] > before[0] - before[1]
    assert grpo_update(loaded.model, loaded.tokenizer, groups[1:], options, 2, reference) is None  # no signal


def test_grpo_hostile_answers_earn_no_advantage(sandbox):
    task = function_tasks(seed=0)[0].model_dump()
    replies = [_whole("import os\nprint('passed')\nos._exit(0)\n" + task["prompt"]), _whole(task["prompt"]),
               _whole(task["prompt"] + "    return x\n") + "\ntest.py\n```python\ndef check(c):\n    pass\n```\n",
               _whole(task["solution"]["files"]["solution.py"])]  # three hostile replies, then the honest one

    class Replies:
        def answer(self, task, temperature, seed):
            return replies.pop(0)

    options = resolve_options("tiny", {"stage": "rl", "rl_method": "grpo", "rl_samples": 4})
    [group] = sample_and_reward(Replies(), FunctionTaskReward(sandbox, timeout_s=2.0), [task], options, 1)
    assert group.rewards == [0.0, 0.0, 0.0, 1.0]
    assert group_advantages(group.rewards) == pytest.approx([-1 / math.sqrt(3)] * 3 + [math.sqrt(3)], 1e-5)


def test_grpo_from_the_cli_resumes_and_keeps_its_method(cli, runs):
    root, tasks_art, model_dir, config = runs
    out = root / "grpo"
    args = ["train", str(tasks_art.path), "--config", str(config), *RL, "--rl-method", "grpo", "--from",
            str(model_dir), "-o", str(out)]
    first = cli(*args, "--stop-after", "1")
    assert first.exit_code == 0, first.stderr
    [zero, one] = list(read_jsonl(out / ROUNDS))
    assert one["samples"] == 6 and 0 <= one["groups_with_signal"] <= 3 and 0.0 <= one["mean_reward"] <= 1.0
    _one_line_error(cli(*args[:-6], "--from", str(model_dir), "-o", str(out)), 2, "option rl_method was 'grpo'")
    second = cli(*args)
    assert second.exit_code == 0, second.stderr
    assert "resuming after round 1 of 2" in second.stderr
    assert [r["round"] for r in read_jsonl(out / ROUNDS)] == [0, 1, 2]
    assert load_artifact(out, "model").manifest["stats"]["method"] == "grpo"
    _one_line_error(cli(*args[:-6], "--rl-kl", "0.1", "--from", str(model_dir), "-o", str(root / "x")), 2,
                    "--rl-kl applies only to --rl-method grpo")


def test_grpo_refuses_an_act_model(cli, runs):
    root, tasks_art, model_dir, config = runs
    examples = load_artifact(root / "examples", "examples")
    options = resolve_options(str(config), {"mode": "act", "max_steps": 1, "seq_len": 192, "batch_size": 2,
                                            "eval_every": 0, "logger": "none"})
    act = train(options, str(examples.path), tokenizer_path=model_dir, out=root / "act", workspace=root / "ws")
    _one_line_error(cli("train", str(tasks_art.path), "--config", str(config), *RL, "--rl-method", "grpo",
                        "--from", str(act.out_dir), "-o", str(root / "act-rl")), 2, "does not train an act model")
