"""`train` on multi-turn agent trajectories: the loss is exactly on the assistant turns, failed
trajectories are masked or weighted by reward, and the loop trajectories -> synthesize -> train ->
checkpoint closes on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from hrmcode.data.examples import parse_example
from hrmcode.data.synthesize import synthesize
from hrmcode.errors import InputError, UsageError
from hrmcode.jsonl import read_jsonl
from hrmcode.model import build_model, preset
from hrmcode.model.base import IGNORE, shifted_token_loss
from hrmcode.model.checkpoint import load_checkpoint
from hrmcode.model.generate import GenerationConfig, generate
from hrmcode.model.prompt import DEFAULT_FORMAT, prompt_format
from hrmcode.model.tokenizer import CodeTokenizer
from hrmcode.train import data as D
from hrmcode.train.loop import train
from hrmcode.train.options import resolve_options
from tests._agent_runs import default_records, trajectory_record, write_swe_run

FORMAT = prompt_format(DEFAULT_FORMAT)
SEQ = 512


def _example(record: dict, n: int = 0) -> dict:
    """A ``tool/from-agent-run`` example as synthesize writes it (checked against synthesize below)."""
    messages = record["messages"]
    return {"id": f"t/{n}#tool-0", "task_id": f"t/{n}", "source": "eval-swe", "level": "tool",
            "input": {"text": messages[1]["content"], "context": {"model": record["model"]}},
            "target": messages[2]["content"], "language": "python", "stage": 4, "split": "train",
            "provenance": {"inputs": [], "rule": "tool/from-agent-run", "model_written": True},
            "messages": messages, "reward": record["reward"]}


@pytest.fixture(scope="module")
def tok() -> CodeTokenizer:
    texts = [m["content"] for r in default_records() for m in r["messages"]]
    return CodeTokenizer.train(texts * 3, vocab_size=300)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return build_model(preset("tiny", vocab_size=tok.vocab_size, max_seq_len=SEQ)).eval()


def _assistant_positions(tok, messages) -> list[bool]:
    """Independently of the code under test: which token of the rendered chat an assistant wrote."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    flags = [False] * len(tok.encode("<|solve|>"))
    for m in messages[:last + 1]:
        flags += [False] * len(tok.encode(f"<|{m['role']}|>"))
        end = "<|eos|>" if m["role"] == "assistant" else ""
        flags += [m["role"] == "assistant"] * len(tok.encode(m["content"] + end))
    return flags


def test_loss_mask_is_exactly_the_assistant_turns_token_by_token(tok, model):
    record = trajectory_record(0, resolved=True, model="m")
    record["messages"] = record["messages"][:6]  # system, task, reply, observation, reply, observation: 2 turns
    example = parse_example(_example(record))
    encoded = D.encode_examples([example], tok, SEQ, FORMAT)
    (doc,) = encoded.docs
    expected = _assistant_positions(tok, record["messages"])
    assert doc.ids == tok.encode(FORMAT.render_chat(
        [(m["role"], m["content"]) for m in record["messages"][:5]]).removesuffix("<|assistant|>"))
    ids, labels, _docs, prefix = D.pack(encoded.docs, SEQ, tok.pad_id)[0]
    for position, (token, label, learned) in enumerate(zip(ids, labels, expected)):
        assert label == (token if learned else IGNORE), position
    assert labels[len(expected):] == [IGNORE] * (SEQ - len(expected))  # padding
    assert sum(expected) == len(tok.encode(record["messages"][2]["content"])) + len(
        tok.encode(record["messages"][4]["content"])) + 2  # both replies and their <|eos|>
    assert prefix[:expected.index(True)] == [True] * expected.index(True) and not any(prefix[expected.index(True):])
    # On the tiny model: the loss is the mean cross entropy of predicting exactly those tokens.
    batch = D.collate([(ids, labels, _docs, prefix)])
    with torch.no_grad():
        out = model(batch.input_ids, labels=batch.labels, prefix_mask=batch.prefix_mask, doc_ids=batch.doc_ids)
        log_probs = torch.log_softmax(out.logits[0].float(), -1)
    by_hand = -sum(log_probs[t - 1, ids[t]] for t in range(1, len(expected)) if expected[t])
    assert out.loss_count == sum(expected) - (1 if expected[0] else 0)
    assert float(out.loss_sum) == pytest.approx(float(by_hand), rel=1e-5)


def _batch_loss(model, docs, weighted=False):
    batch = D.collate(D.pack(docs, SEQ, 0, weighted=weighted))
    with torch.no_grad():
        out = model(batch.input_ids, labels=batch.labels, prefix_mask=batch.prefix_mask, doc_ids=batch.doc_ids)
    return out, batch


def test_mask_leaves_failed_trajectories_out_of_the_loss(tok, model):
    ok, failed = (parse_example(_example(r, n)) for n, r in enumerate(default_records()[1:3]))
    assert (ok.reward, failed.reward) == (1.0, 0.0)
    masked = D.encode_examples([ok, failed], tok, SEQ, FORMAT, reward_weighting="mask")
    assert masked.masked_by_reward == 1 and len(masked.docs) == 1
    alone = D.encode_examples([ok], tok, SEQ, FORMAT, reward_weighting="none")
    everything = D.encode_examples([ok, failed], tok, SEQ, FORMAT, reward_weighting="none")
    assert len(everything.docs) == 2 and everything.masked_by_reward == 0
    masked_out, masked_batch = _batch_loss(model, masked.docs)
    alone_out, _ = _batch_loss(model, alone.docs)
    all_out, _ = _batch_loss(model, everything.docs)
    assert masked_batch.weights is None
    assert float(D.step_loss_sum(masked_out, masked_batch)) == float(alone_out.loss_sum)  # zero from the failed one
    assert masked_out.loss_count == alone_out.loss_count < all_out.loss_count
    # Examples without a reward (every single-turn example) are never masked.
    plain = parse_example({**_example(default_records()[2]), "messages": None, "reward": None})
    assert len(D.encode_examples([plain], tok, SEQ, FORMAT, reward_weighting="mask").docs) == 1


def test_weight_scales_a_failed_trajectory_loss_by_the_stated_rule(tok, model):
    records = default_records()
    ok, failed = parse_example(_example(records[0], 0)), parse_example(_example(records[2], 1))
    half = parse_example({**_example(records[3], 2), "reward": 0.5})
    weighted = D.encode_examples([ok, failed, half], tok, SEQ, FORMAT, reward_weighting="weight", failed_weight=0.25)
    assert [d.weight for d in weighted.docs] == [1.0, 0.25, 0.25 + 0.75 * 0.5]
    out, batch = _batch_loss(model, weighted.docs, weighted=True)
    assert batch.weights is not None
    # The same packed rows, unweighted: per-token cross entropy, split by the document each label is in
    # (documents in packing order: (row, doc id) pairs that hold a label).
    ce, valid, _ = shifted_token_loss(out.logits, batch.labels)
    docs = batch.doc_ids[:, 1:]
    spans = [(row, i) for row in range(docs.shape[0]) for i in docs[row].unique_consecutive().tolist()
             if bool(valid[row][docs[row] == i].any())]
    assert len(spans) == 3
    per_doc = [float(ce[row][(docs[row] == i) & valid[row]].sum()) for row, i in spans]
    assert all(loss > 0 for loss in per_doc)
    expected = per_doc[0] + 0.25 * per_doc[1] + 0.625 * per_doc[2]
    assert float(D.step_loss_sum(out, batch)) == pytest.approx(expected, rel=1e-5)
    assert float(out.loss_sum) == pytest.approx(sum(per_doc), rel=1e-5)  # the model's own loss is unweighted
    none = D.encode_examples([ok, failed, half], tok, SEQ, FORMAT, reward_weighting="none")
    assert [d.weight for d in none.docs] == [1.0, 1.0, 1.0] and D.collate(D.pack(none.docs, SEQ, 0)).weights is None


def test_weighting_is_refused_where_the_loss_is_per_sequence(tmp_path, workspace):
    run = write_swe_run(tmp_path / "run")
    examples = synthesize(str(run), out=tmp_path / "ex", heldout_fraction=0.0).artifact
    options = resolve_options("tiny", {"seq_len": SEQ, "mode": "act", "reward_weighting": "weight", "max_steps": 2})
    with pytest.raises(UsageError, match="ACT training's loss is per sequence"):
        train(options, str(examples.path), out=tmp_path / "run-act")
    with pytest.raises(UsageError, match="failed_weight"):
        resolve_options("tiny", {"failed_weight": 1.5})


def _fast(**changes):
    return resolve_options("tiny", {"seq_len": SEQ, "batch_size": 2, "max_steps": 4, "warmup_steps": 1,
                                    "eval_every": 0, "log_every": 1, "save_every": 2, "vocab_size": 300, **changes})


@pytest.mark.parametrize("weighting", ["mask", "weight"])
def test_trajectories_to_synthesize_to_train_to_a_checkpoint(tmp_path, workspace, weighting):
    run = write_swe_run(tmp_path / "run")
    examples = synthesize(str(run), out=tmp_path / "ex", heldout_fraction=0.0).artifact
    written = [json.loads(line) for line in examples.file("examples.jsonl").read_text().splitlines()]
    assert [{k: e[k] for k in ("messages", "reward", "target")} for e in written] == [
        {k: _example(r)[k] for k in ("messages", "reward", "target")} for r in default_records()[:4]]
    result = train(_fast(reward_weighting=weighting, failed_weight=0.25), str(examples.path), out=tmp_path / "model")
    assert result.completed and result.step == 4
    losses = [r["loss"] for r in read_jsonl(tmp_path / "model/metrics.jsonl") if r["split"] == "train"]
    assert len(losses) == 4 and all(0 < loss < 20 for loss in losses)
    hyper = json.loads((tmp_path / "model/hyperparameters.json").read_text())
    assert hyper["train"]["reward_weighting"] == weighting and hyper["train"]["failed_weight"] == 0.25
    loaded = load_checkpoint(tmp_path / "model")
    assert loaded.config.prompt.name == DEFAULT_FORMAT
    # The checkpoint acts: prompted with the first turn's chat exactly as eval swe's checkpoint backend does.
    first = [(m["role"], m["content"]) for m in default_records()[0]["messages"][:2]]
    reply = generate(loaded.model, loaded.tokenizer, loaded.config.prompt.encode_chat(loaded.tokenizer, first),
                     GenerationConfig(max_new_tokens=8))
    assert reply.completion_tokens > 0


def test_only_failed_trajectories_under_mask_is_one_clear_error(tmp_path, workspace):
    run = write_swe_run(tmp_path / "run", [trajectory_record(2, resolved=False, model="stub")])
    examples = synthesize(str(run), out=tmp_path / "ex", heldout_fraction=0.0).artifact
    with pytest.raises(InputError, match="no sft training documents"):
        train(_fast(), str(examples.path), out=tmp_path / "model")
    assert train(_fast(reward_weighting="none", max_steps=1), str(examples.path), out=tmp_path / "m2").completed


def test_train_command_takes_the_reward_options(cli, tmp_path, workspace):
    run = write_swe_run(tmp_path / "run")
    assert cli("synthesize", "--source", str(run), "-o", str(tmp_path / "ex"), "--heldout-fraction", "0").exit_code == 0
    result = cli("--json", "train", str(tmp_path / "ex"), "--seq-len", str(SEQ), "--batch-size", "2", "--max-steps", "2",
                 "--vocab-size", "300", "--reward-weighting", "weight", "--failed-weight", "0.5", "-o",
                 str(tmp_path / "model"))
    assert result.exit_code == 0, result.stderr
    bad = cli("train", str(tmp_path / "ex"), "--reward-weighting", "sometimes")
    assert bad.exit_code == 2 and "reward_weighting: Input should be 'mask', 'weight' or 'none'" in bad.stderr


# -- the real loop: eval swe acts in the sandbox, its run is learned from ----------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A real `eval swe` run on bugs injected into examples/demo-repo: oracle and stub routed 1:1."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from tests._sandboxes import real_sandbox

    real_sandbox("local")  # skips without bubblewrap
    root = tmp_path_factory.mktemp("loop")
    repo = root / "demo"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples/demo-repo", repo)
    env = {**os.environ, "HRMCODE_NO_PROGRESS": "1", "HRMCODE_HOME": str(root / "ws"),
           "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "demo"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    for args in (["synthesize", "--source", f"repo:{repo}", "--test-cmd", "python -m pytest -q tests", "--max-bugs", "3",
                  "--levels", "plan"],
                 ["eval", "swe", "--tasks", f"repo-{repo.name}", "--model", "oracle", "--model", "stub",
                  "--out", str(root / "run")]):
        done = subprocess.run([sys.executable, "-m", "hrmcode", *args], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr
    return root / "run"


@pytest.mark.integration
def test_a_real_eval_swe_run_is_learned_from(demo_run, tmp_path, workspace):
    results = {r["id"]: r for r in read_jsonl(demo_run / "results.jsonl")}
    trajectories = {t["id"]: t for t in read_jsonl(demo_run / "trajectories.jsonl")}
    assert {r["model"] for r in results.values()} == {"oracle", "stub"}
    assert {r["resolved"] for r in results.values()} == {True, False}  # the oracle's resolve, the stub's do not
    examples = synthesize(str(demo_run), out=tmp_path / "ex", heldout_fraction=0.0).artifact
    written = list(read_jsonl(examples.file("examples.jsonl")))
    assert len(written) == len(trajectories) == len(results)
    # The stub changed no file and was not graded: its language comes from the run's input tasks artifact.
    assert {e["language"] for e in written} == {"python"}
    for example in written:
        record_id = example["input"]["context"]["record_id"]
        assert example["messages"] == trajectories[record_id]["messages"]
        assert example["reward"] == (1.0 if results[record_id]["resolved"] else 0.0) == trajectories[record_id]["reward"]
        assert example["input"]["context"]["model"] == results[record_id]["model"]
        assert example["provenance"]["model_written"] is True
    result = train(_fast(seq_len=4096, batch_size=1, max_steps=2, reward_weighting="weight", failed_weight=0.25),
                   str(examples.path), out=tmp_path / "model")
    assert result.completed and load_checkpoint(tmp_path / "model").config.max_seq_len == 4096


def test_a_weighted_run_resumes_exactly(tmp_path, workspace):
    run = write_swe_run(tmp_path / "run")
    examples = str(synthesize(str(run), out=tmp_path / "ex", heldout_fraction=0.0).artifact.path)
    options = _fast(reward_weighting="weight", failed_weight=0.25, batch_size=1)
    train(options, examples, out=tmp_path / "whole")
    assert not train(options, examples, out=tmp_path / "split", stop_after=2).completed
    assert train(options, examples, out=tmp_path / "split", resume="auto").completed
    losses = [[r["loss"] for r in read_jsonl(tmp_path / d / "metrics.jsonl") if r["split"] == "train"]
              for d in ("whole", "split")]
    assert losses[0] == losses[1] and len(losses[0]) == 4
    # Some step saw only a failed trajectory: its loss is the weight times its token loss, exactly.
    records = [r for r in read_jsonl(tmp_path / "whole/metrics.jsonl") if r["split"] == "train"]
    assert any(r["loss"] == pytest.approx(0.25 * r["lm_loss"], rel=1e-5) for r in records)
    assert (tmp_path / "split/model.safetensors").read_bytes() == (tmp_path / "whole/model.safetensors").read_bytes()
