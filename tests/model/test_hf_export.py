"""``hrmcode export model``: transformers loads the export without hrmcode and generates hrmcode's tokens.

The exports are loaded in a subprocess whose imports of ``hrmcode`` fail (a meta-path blocker, from a
directory outside the repository), so the modeling file, the config and the tokenizer are proven
self-contained; the pre-norm transformer is loaded without ``trust_remote_code``, as a standard
``LlamaForCausalLM``. There, greedy ``generate`` (with and without the cache, and two prompts batched with
left padding) and ``apply_chat_template`` run; here, hrmcode's ``generate`` and prompt renderer give the
expected tokens and ids.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
import torch

from hrmcode.artifacts import load_artifact
from hrmcode.errors import CheckpointError, UsageError
from hrmcode.export.huggingface import export_model
from hrmcode.model import build_model
from hrmcode.model.checkpoint import WEIGHTS, save_checkpoint
from hrmcode.model.config import ModelConfig
from hrmcode.model.generate import GenerationConfig, generate

pytest.importorskip("transformers", reason="the hf extra (pip install -e '.[hf]') is not installed")

CHATS = [
    [("user", "def add(a, b):")],
    [("system", "Answer in Python."), ("user", "for i in range(10):")],
    [("user", "class Stack:"), ("assistant", "    def push(self, x):"), ("developer", "go on"), ("user", "more")],
]
LEVELS = ["solve", None, "plan"]  # the chat default, no level token, another level
NEW_TOKENS = 12

# name -> (model config overrides, training steps): the HRM in both modes (act: segments > 1 and a Q head
# that is not exported), the transformer baseline, a PrefixLM whose prompt attends both ways, and the
# pre-norm transformer (exported as Llama).
MODELS = {
    "hrm": (dict(arch="hrm"), 10),
    "hrm-act": (dict(arch="hrm", mode="act", halt_max_steps=2, inference_segments=2), 0),
    "transformer": (dict(arch="transformer"), 10),
    "prefixlm": (dict(arch="transformer", prefix_bidirectional=True), 0),
    "llama": (dict(arch="transformer", norm="pre"), 10),
}

LOADER = r'''
import importlib.abc, json, sys

class NoHrmcode(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hrmcode" or name.startswith("hrmcode."):
            raise ImportError("hrmcode must not be needed to load an export")

sys.meta_path.insert(0, NoHrmcode())
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

jobs = json.loads(sys.argv[1])
report = {}
for name, job in jobs.items():
    tok = AutoTokenizer.from_pretrained(job["dir"], trust_remote_code=job["remote"])
    model = AutoModelForCausalLM.from_pretrained(job["dir"], trust_remote_code=job["remote"]).eval()
    entry = report[name] = {"class": type(model).__name__, "config": type(model.config).__name__,
                            "tokenizer": type(tok).__name__, "template_ids": [],
                            "cached": [], "uncached": [], "batched": [], "logits": []}
    for chat, level in zip(job["chats"], job["levels"]):
        messages = [{"role": role, "content": text} for role, text in chat]
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False,
                                      level=level)
        entry["template_ids"].append(list(ids))
    for ids in job["prompts"]:
        x = torch.tensor([ids])
        with torch.no_grad():
            entry["logits"].append(model(x).logits[0, -1].tolist())
        for key, cache in (("cached", True), ("uncached", False)):
            out = model.generate(x, max_new_tokens=job["new_tokens"], do_sample=False, use_cache=cache)
            entry[key].append(out[0, len(ids):].tolist())
    if job["batch"]:
        tok.padding_side = "left"
        batch = tok.pad({"input_ids": job["prompts"]}, return_tensors="pt")
        out = model.generate(**batch, max_new_tokens=job["new_tokens"], do_sample=False)
        entry["batched"] = [row[batch["input_ids"].shape[1]:].tolist() for row in out]
    if job["remote"] and job["batch"]:  # the last token through the cache of the others, under either name
        from transformers.cache_utils import DynamicCache

        x = torch.tensor([job["prompts"][0]])
        with torch.no_grad():
            full = model(x, use_cache=False).logits[0, -1]
            for arg in ("cache", "past_key_values"):
                kv = DynamicCache()
                model(x[:, :-1], **{arg: kv})
                step = model(x[:, -1:], **{arg: kv})
                entry["cache_" + arg] = {"diff": (step.logits[0, -1] - full).abs().max().item(),
                                         "length": kv.get_seq_length(),
                                         "returned": step.get("cache", step.get("past_key_values")) is kv}
report["hrmcode_imported"] = any(m == "hrmcode" or m.startswith("hrmcode.") for m in sys.modules)
print(json.dumps(report))
'''


def _train(model: torch.nn.Module, config: ModelConfig, tok, texts: list[str], steps: int) -> None:
    """A few optimizer steps on prompt -> code examples in the model's prompt format, so greedy decoding follows
    learned preferences (and ends with EOS), not the near-ties of random weights."""
    if not steps:
        return
    rows = []
    for text in dict.fromkeys(texts):
        prompt, _, target = text.partition("\n")
        ids, prompt_len = config.prompt.encode_example(tok, prompt, target)
        rows.append((ids, [-100] * prompt_len + ids[prompt_len:]))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [tok.pad_id] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([labels + [-100] * (width - len(labels)) for _, labels in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids, labels=labels).loss.backward()
        optimizer.step()
    model.eval()


def _strip_eos(tokens: list[int], eos: int) -> list[int]:
    """hrmcode's ``generate`` stops before EOS; transformers keeps it (and pads after it in a batch)."""
    return tokens[:tokens.index(eos)] if eos in tokens else tokens


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tok, tok_texts):
    root = tmp_path_factory.mktemp("hf")
    made = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope runs before tests.one_thread's fixture: same reason (OpenMP spinning)
    try:
        for name, (overrides, steps) in MODELS.items():
            torch.manual_seed(0)
            config = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_heads=2, h_layers=1, l_layers=1,
                                 n_layers=2, h_cycles=2, l_cycles=2, max_seq_len=96, mlp_multiple=32, **overrides)
            model = build_model(config)
            _train(model, config, tok, tok_texts, steps)
            save_checkpoint(root / f"{name}-ckpt", model, tok)
            result = export_model(root / f"{name}-ckpt", out=root / name)
            made[name] = (model.eval(), config, result)
    finally:
        torch.set_num_threads(threads)
    return root, made


@pytest.fixture(scope="module")
def loaded(exports, tok, tmp_path_factory):
    """What transformers, without hrmcode, makes of each export (one subprocess for all of them)."""
    root, made = exports
    jobs = {}
    for name, (_, config, result) in made.items():
        prompts = [config.prompt.encode_chat(tok, chat, level) for chat, level in zip(CHATS, LEVELS)]
        jobs[name] = {"dir": str(result.artifact.path), "chats": CHATS, "levels": LEVELS, "prompts": prompts,
                      "new_tokens": NEW_TOKENS, "batch": not config.prefix_bidirectional,
                      "remote": config.norm != "pre"}
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = {**os.environ, "HF_HOME": str(elsewhere / "hf-home"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": "",
           "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", LOADER, json.dumps(jobs)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_export_loads_without_hrmcode(loaded):
    assert loaded.pop("hrmcode_imported") is False
    for name, entry in loaded.items():
        llama = name == "llama"
        assert entry["class"] == ("LlamaForCausalLM" if llama else "HrmcodeForCausalLM"), name
        assert entry["config"] == ("LlamaConfig" if llama else "HrmcodeConfig"), name
        assert entry["tokenizer"] in ("PreTrainedTokenizerFast", "TokenizersBackend"), name


@pytest.mark.parametrize("name", list(MODELS))
def test_chat_template_gives_the_renderers_ids(loaded, exports, tok, name):
    config = exports[1][name][1]
    expected = [config.prompt.encode_chat(tok, chat, level) for chat, level in zip(CHATS, LEVELS)]
    assert loaded[name]["template_ids"] == expected


@pytest.mark.parametrize("name", list(MODELS))
def test_greedy_tokens_equal_hrmcode_generate(loaded, exports, tok, name):
    model, config, _ = exports[1][name]
    entry = loaded[name]
    for i, (chat, level) in enumerate(zip(CHATS, LEVELS)):
        ids = config.prompt.encode_chat(tok, chat, level)
        ours = generate(model, tok, ids, GenerationConfig(max_new_tokens=NEW_TOKENS)).token_ids
        assert ours, "hrmcode generated nothing: the comparison would be empty"
        assert _strip_eos(entry["cached"][i], tok.eos_id) == ours, (name, i)
        if not config.prefix_bidirectional:  # a PrefixLM without a cache reads each whole input as the prompt
            assert _strip_eos(entry["uncached"][i], tok.eos_id) == ours, (name, i)
        if entry["batched"]:
            assert _strip_eos(entry["batched"][i], tok.eos_id) == ours, (name, i)
        with torch.no_grad():
            logits = model(torch.tensor([ids]), prefix_lens=torch.tensor([len(ids)])).logits[0, -1]
        assert torch.allclose(torch.tensor(entry["logits"][i]), logits, atol=1e-5), (name, i)


@pytest.mark.parametrize("name", ["hrm", "hrm-act", "transformer"])
def test_the_cache_is_taken_under_both_names(loaded, exports, tok, name):
    """transformers 5.24's generate hands the cache over as ``cache=`` (5.23's as ``past_key_values=``): a model that
    took only ``past_key_values`` restarted from an empty cache at every step and generated garbage. The last token
    run through the cache of the others must give the full pass's logits, and the cache must come back."""
    _, config, _ = exports[1][name]
    prompt = config.prompt.encode_chat(tok, CHATS[0], LEVELS[0])
    for arg in ("cache", "past_key_values"):
        entry = loaded[name]["cache_" + arg]
        assert entry["length"] == len(prompt) and entry["diff"] < 1e-4 and entry["returned"], (arg, entry)


def test_export_is_an_artifact_with_remote_code_and_no_q_head(exports):
    root, made = exports
    artifact = load_artifact(made["hrm-act"][2].artifact.path, "hf-model")
    artifact.verify()
    names = {o["name"] for o in artifact.manifest["outputs"]}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
            "configuration_hrmcode.py", "modeling_hrmcode.py", "README.md"} <= names
    config = json.loads((artifact.path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_hrmcode.HrmcodeForCausalLM"
    assert config["segments"] == 2 and config["hrmcode"]["mode"] == "act"
    from safetensors import safe_open

    with safe_open(str(artifact.path / "model.safetensors"), "pt") as weights:
        keys = set(weights.keys())
    assert "H_init" in keys and not any(k.startswith("q_head") for k in keys)
    for filename in ("modeling_hrmcode.py", "configuration_hrmcode.py"):
        tree = ast.parse((artifact.path / filename).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and not node.level}
        assert imported <= {"math", "torch", "transformers"}, (filename, imported)


def test_prenorm_transformer_is_a_standard_llama_directory(exports):
    model, config, result = exports[1]["llama"]
    assert result.architecture == "llama" and result.parameters == sum(p.numel() for p in model.parameters())
    path = result.artifact.path
    assert not list(path.glob("*.py"))
    hf = json.loads((path / "config.json").read_text())
    assert hf["model_type"] == "llama" and hf["architectures"] == ["LlamaForCausalLM"] and "auto_map" not in hf
    assert (hf["num_key_value_heads"], hf["tie_word_embeddings"], hf["bos_token_id"]) == (2, False, None)
    assert "trust_remote_code" not in (path / "README.md").read_text()
    from safetensors.torch import load_file

    weights = load_file(str(path / "model.safetensors"))
    assert model.lm_head.weight is not model.embed.weight  # untied: folding the scale leaves the head alone
    assert torch.equal(weights["model.embed_tokens.weight"], model.embed.weight * model.config.hidden_size ** 0.5)
    assert torch.equal(weights["lm_head.weight"], model.lm_head.weight)
    q, k, v = (weights[f"model.layers.1.self_attn.{n}_proj.weight"] for n in "qkv")
    assert torch.equal(torch.cat([q, k, v]), model.blocks.layers[1].attn.qkv.weight)
    gate, up = weights["model.layers.0.mlp.gate_proj.weight"], weights["model.layers.0.mlp.up_proj.weight"]
    assert torch.equal(torch.cat([gate, up]), model.blocks.layers[0].mlp.gate_up.weight)
    assert torch.equal(weights["model.layers.0.post_attention_layernorm.weight"],
                       model.blocks.layers[0].mlp_norm.weight)
    assert torch.equal(weights["model.norm.weight"], model.norm.weight)
    assert len(weights) == 3 + 9 * config.n_layers


def test_prenorm_prefixlm_is_refused(tmp_path, tok):
    config = ModelConfig(arch="transformer", norm="pre", prefix_bidirectional=True, vocab_size=tok.vocab_size,
                         hidden_size=32, num_heads=2, n_layers=1, max_seq_len=32, mlp_multiple=32)
    save_checkpoint(tmp_path / "ckpt", build_model(config), tok)
    with pytest.raises(UsageError, match="pre-norm PrefixLM"):
        export_model(tmp_path / "ckpt", out=tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_same_checkpoint_same_weight_bytes_and_bfloat16(exports, tmp_path):
    root, made = exports
    again = export_model(root / "hrm-ckpt", out=tmp_path / "again").artifact.path
    first = made["hrm"][2].artifact.path
    assert (again / "model.safetensors").read_bytes() == (first / "model.safetensors").read_bytes()
    half = export_model(root / "hrm-ckpt", out=tmp_path / "half", dtype="bfloat16")
    assert half.dtype == "bfloat16"
    from safetensors.torch import load_file

    assert load_file(str(half.artifact.path / "model.safetensors"))["embed.weight"].dtype == torch.bfloat16


def test_bad_inputs_are_one_line_errors_and_write_nothing(exports, tmp_path):
    root, _ = exports
    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    (not_a_model / "a.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="has no config.json"):
        export_model(not_a_model, out=tmp_path / "x")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for item in (root / "hrm-ckpt").iterdir():
        (corrupt / item.name).write_bytes(item.read_bytes())
    (corrupt / WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not readable safetensors"):
        export_model(corrupt, out=tmp_path / "y")
    with pytest.raises(UsageError, match="unknown --dtype"):
        export_model(root / "hrm-ckpt", out=tmp_path / "z", dtype="int3")
    assert not any((tmp_path / name).exists() for name in ("x", "y", "z"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging directory left behind


def test_the_model_card_has_the_hub_metadata(exports):
    _, made = exports
    for name, custom in (("hrm", True), ("llama", False)):
        card = (made[name][2].artifact.path / "README.md").read_text()
        head, _, rest = card.removeprefix("---\n").partition("---\n")
        assert card.startswith("---\n") and rest.lstrip().startswith("# ")
        assert "library_name: transformers\n" in head and "pipeline_tag: text-generation\n" in head
        assert ("- custom_code\n" in head) is custom
