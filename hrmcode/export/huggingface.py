"""``hrmcode export model``: a trained model as a directory Hugging Face ``transformers`` loads.

The export (an ``hf-model`` artifact) holds ``model.safetensors``, ``config.json``, ``tokenizer.json``
(hrmcode's, as is) with a ``tokenizer_config.json`` whose chat template renders the checkpoint's
prompt format, ``generation_config.json`` (EOS, pad, greedy) and a ``README.md``. So
``AutoModelForCausalLM.from_pretrained(dir)`` and ``AutoTokenizer.from_pretrained(dir)`` work without
hrmcode, and ``apply_chat_template(messages, add_generation_prompt=True)`` gives the ids hrmcode's
renderer gives (``level=None`` or another level name as a template argument; the default is a chat's).

Which architecture the directory declares depends on the model:

- the transformer baseline trained with ``norm="pre"`` (``hrmcode train --norm pre``) is a standard
  ``LlamaForCausalLM`` (``model_type`` ``llama``, no ``auto_map``, no code files): its blocks are
  Llama's, its rotary embeddings Llama's default (rotate-half, ``inv_freq = 1/theta^(2i/d)``), its
  fused projections are split into Llama's (``qkv`` rows -> ``q_proj``, ``k_proj``, ``v_proj``;
  ``gate_up`` rows -> ``gate_proj``, ``up_proj``), and hrmcode's sqrt(hidden) embedding scale is
  folded into ``model.embed_tokens`` (the LM head is a separate matrix, so it is unaffected);
- the HRM and the post-norm transformer (the default) load through ``trust_remote_code``:
  ``config.json`` has an ``auto_map`` to ``configuration_hrmcode.py`` and ``modeling_hrmcode.py``
  (copied from ``templates/``; they import torch and transformers only) and the weights keep
  hrmcode's names (the ACT Q head, unused at inference, is left out). Post-norm blocks (a
  parameterless RMSNorm of each residual sum) over embeddings scaled by sqrt(hidden), with no final
  norm, are computed by no architecture in ``transformers`` (Llama, Qwen2, Mistral and GPT-NeoX are
  pre-norm; OLMo2, Gemma2 and HyperCLOVAX normalise the sublayer's output, not the sum), so a
  conversion to one of them would change the model's outputs.

Guarantees: the export is staged and renamed into place with its manifest last (the artifact
contract of ``hrmcode.artifacts``); the same checkpoint and options give the same
``model.safetensors`` bytes. Refused with a one-line error: a quantized model (transformers
cannot run hrmcode's int8/int4 layers: export the float model it came from), anything that is not
a model artifact or checkpoint directory, a corrupt checkpoint, an unknown prompt format, an arch
the exported modeling code does not implement (trm, ut), a pre-norm PrefixLM (Llama attends causally
only).
Not guaranteed: that greedy tokens match hrmcode's where two logits are nearly tied (float
rounding differs between hrmcode's fused CPU kernels and plain torch, and Llama computes its rotary
table in float32 where hrmcode rounds a float64 one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from hrmcode.artifacts import MANIFEST, Artifact, ArtifactWriter, load_artifact, output_location
from hrmcode.errors import UsageError
from hrmcode.export.options import DTYPES
from hrmcode.model.checkpoint import load_checkpoint
from hrmcode.model.config import ModelConfig
from hrmcode.model.prompt import CHAT_LEVEL, DEFAULT_FORMAT
from hrmcode.model.tokenizer import LEVEL_TOKENS

TEMPLATES = Path(__file__).parent / "templates"
REMOTE_CODE = ("configuration_hrmcode.py", "modeling_hrmcode.py")
LEFT_OUT = ("q_head.",)  # the ACT Q head: training-time halting only


def _chat_template(levels: tuple[str, ...]) -> str:
    """hrmcode-v1 (``hrmcode.model.prompt``) as Jinja: ``<|LEVEL|>`` then one role token per message
    (system/developer -> ``<|system|>``), assistant turns closed by ``<|eos|>``, then ``<|assistant|>``."""
    names = ", ".join(f"'{name}'" for name in levels)
    return (
        f"{{%- set level = level if level is defined else '{CHAT_LEVEL}' -%}}"
        f"{{%- if level is not none and level not in [{names}] -%}}"
        "{{- raise_exception('unknown level ' ~ level) -}}{%- endif -%}"
        "{%- if level is not none -%}{{- '<|' ~ level ~ '|>' -}}{%- endif -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] in ['system', 'developer'] -%}{{- '<|system|>' ~ message['content'] -}}"
        "{%- elif message['role'] == 'user' -%}{{- '<|user|>' ~ message['content'] -}}"
        "{%- elif message['role'] == 'assistant' -%}{{- '<|assistant|>' ~ message['content'] ~ '<|eos|>' -}}"
        "{%- else -%}{{- raise_exception(\"messages with role '\" ~ message['role'] ~ \"' are not supported\") -}}"
        "{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}{%- endif -%}"
    )


# The chat template of each prompt format hrmcode knows (``ModelConfig.prompt_format``).
CHAT_TEMPLATES = {DEFAULT_FORMAT: _chat_template(tuple(token[2:-2] for token in LEVEL_TOKENS))}


@dataclass
class HFExportResult:
    artifact: Artifact
    arch: str
    parameters: int
    dtype: str
    architecture: str = "hrmcode"  # llama: a standard LlamaForCausalLM; hrmcode: trust_remote_code


def _source(ref: Path | str, workspace: Path | str | None) -> tuple[Path, Artifact | None]:
    """The checkpoint directory behind ``ref`` and its artifact (None for a bare checkpoints/step-* directory)."""
    path = Path(ref)
    if path.is_dir() and not (path / MANIFEST).is_file():
        return path, None
    artifact = load_artifact(ref, ("model", "quantized-model"), workspace)
    if artifact.kind == "quantized-model":
        sources = [i["path"] for i in artifact.manifest.get("inputs", []) if i.get("kind") == "model"]
        raise UsageError(f"{artifact.path} is a quantized model; transformers cannot run hrmcode's quantized layers",
                         f"export the float model it was quantized from: hrmcode export model "
                         f"{sources[0] if sources else 'MODEL'}")
    artifact.verify()  # the weights are read by path below
    return artifact.path, artifact


def _shared_fields(config: ModelConfig, dtype: str) -> dict:
    """What every exported ``config.json`` says the same way: cache, untied head, special ids, dtype, and
    hrmcode's own config under ``hrmcode``."""
    return {"use_cache": True, "tie_word_embeddings": False, "bos_token_id": None, "eos_token_id": 1,
            "pad_token_id": 0, "torch_dtype": dtype, "hrmcode": config.to_dict()}


def hf_config(config: ModelConfig, dtype: str) -> dict:
    """``config.json`` for ``configuration_hrmcode.HrmcodeConfig``, with hrmcode's own config kept under ``hrmcode``."""
    return {
        "architectures": ["HrmcodeForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_hrmcode.HrmcodeConfig",
                     "AutoModelForCausalLM": "modeling_hrmcode.HrmcodeForCausalLM"},
        "model_type": "hrmcode",
        "arch": config.arch,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.mlp_hidden,
        "h_layers": config.h_layers,
        "l_layers": config.l_layers,
        "n_layers": config.n_layers,
        "h_cycles": config.h_cycles,
        "l_cycles": config.l_cycles,
        "segments": config.segments,
        "max_position_embeddings": config.max_seq_len,
        "prefix_bidirectional": config.prefix_bidirectional,
        "rope_theta": config.rope_theta,
        "rms_norm_eps": config.rms_eps,
        **_shared_fields(config, dtype),
    }


def llama_config(config: ModelConfig, dtype: str) -> dict:
    """``config.json`` for transformers' ``LlamaConfig`` (a pre-norm transformer), hrmcode's own config kept under
    ``hrmcode``."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.mlp_hidden,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.rms_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        **_shared_fields(config, dtype),
    }


def llama_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A pre-norm ``Transformer``'s weights under transformers' ``LlamaForCausalLM`` names."""
    state = model.state_dict()  # embed and lm_head are separate matrices (CausalLM): scaling one leaves the other
    out = {"model.embed_tokens.weight": state["embed.weight"] * model.embed_scale,
           "model.norm.weight": state["norm.weight"], "lm_head.weight": state["lm_head.weight"]}
    for i in range(model.config.n_layers):
        ours, theirs = f"blocks.layers.{i}.", f"model.layers.{i}."
        q, k, v = state[ours + "attn.qkv.weight"].chunk(3, dim=0)
        gate, up = state[ours + "mlp.gate_up.weight"].chunk(2, dim=0)
        out.update({
            theirs + "self_attn.q_proj.weight": q, theirs + "self_attn.k_proj.weight": k,
            theirs + "self_attn.v_proj.weight": v, theirs + "self_attn.o_proj.weight": state[ours + "attn.o.weight"],
            theirs + "mlp.gate_proj.weight": gate, theirs + "mlp.up_proj.weight": up,
            theirs + "mlp.down_proj.weight": state[ours + "mlp.down.weight"],
            theirs + "input_layernorm.weight": state[ours + "attn_norm.weight"],
            theirs + "post_attention_layernorm.weight": state[ours + "mlp_norm.weight"],
        })
    return out


def tokenizer_config(config: ModelConfig) -> dict:
    if config.prompt_format not in CHAT_TEMPLATES:
        raise UsageError(f"no chat template for prompt format {config.prompt_format!r}",
                         f"this hrmcode exports {', '.join(CHAT_TEMPLATES)}")
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|eos|>",
        "pad_token": "<|pad|>",
        "model_max_length": config.max_seq_len,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATES[config.prompt_format],
    }


def _readme(name: str, config: ModelConfig, llama: bool) -> str:
    how = ("It is a standard `LlamaForCausalLM` (a pre-norm transformer), so transformers loads it as it is:"
           if llama else "Its code is in `modeling_hrmcode.py` (torch and transformers only), so load it with "
                         "`trust_remote_code`:")
    tags = "".join(f"- {tag}\n" for tag in ("hrmcode", "code", *(() if llama else ("custom_code",))))
    return (  # the metadata block the Hub reads (library, task, tags; custom_code: it runs code from the repo)
        f"---\nlibrary_name: transformers\npipeline_tag: text-generation\ntags:\n{tags}---\n\n"
        f"# {name}\n\n"
        f"An hrmcode `{config.arch}` model exported for Hugging Face transformers by `hrmcode export model`.\n"
        f"{how}\n\n"
        "```python\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        "tok = AutoTokenizer.from_pretrained(path)\n"
        f"model = AutoModelForCausalLM.from_pretrained(path{'' if llama else ', trust_remote_code=True'})\n"
        "ids = tok.apply_chat_template([{\"role\": \"user\", \"content\": \"Write add(a, b).\"}],\n"
        "                              add_generation_prompt=True, return_tensors=\"pt\", return_dict=True)\n"
        "out = model.generate(**ids, max_new_tokens=64, do_sample=False)\n"
        "print(tok.decode(out[0, ids[\"input_ids\"].shape[1]:], skip_special_tokens=True))\n"
        "```\n\n"
        f"The chat template renders hrmcode's `{config.prompt_format}` prompt format; pass `level=None` (no level "
        f"token) or another level name to `apply_chat_template` to change the default `{CHAT_LEVEL}`.\n"
    )


def export_model(ref: Path | str, *, out: Path | str | None = None, workspace: Path | str | None = None,
                 force: bool = False, name: str | None = None, dtype: str = "float32") -> HFExportResult:
    """Export the model artifact or checkpoint directory ``ref`` as an ``hf-model`` artifact."""
    if dtype not in DTYPES:
        raise UsageError(f"unknown --dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
    source, artifact = _source(ref, workspace)
    loaded = load_checkpoint(source)
    config = loaded.config
    if config.arch not in ("hrm", "transformer"):
        raise UsageError(f"the Hugging Face export implements arch hrm and transformer, not {config.arch}",
                         "serve or evaluate this model with hrmcode itself (hrmcode serve, hrmcode eval)")
    llama = config.norm == "pre"
    architecture = "llama" if llama else "hrmcode"
    if llama and config.prefix_bidirectional:
        raise UsageError("a pre-norm PrefixLM (prefix_bidirectional) has no standard architecture: Llama attends "
                         "causally only", "train the pre-norm transformer without prefix_bidirectional")
    tok_config = tokenizer_config(config)  # refuses an unknown prompt format before anything is written
    name = name or f"{artifact.name if artifact else source.name}-hf"
    params = {"source": str(source), "dtype": dtype}
    out_dir, update_latest = output_location("export", name, out, workspace, params, replace=force)
    weights = llama_state(loaded.model) if llama else loaded.model.state_dict()
    state = {key: value.detach().to(getattr(torch, dtype)).contiguous()
             for key, value in weights.items() if not key.startswith(LEFT_OUT)}
    parameters = sum(value.numel() for key, value in state.items() if not key.endswith("_init"))
    with ArtifactWriter(out_dir, "hf-model", name=name, params=params, inputs=[artifact] if artifact else [],
                        update_latest=update_latest, replace=force) as writer:
        save_file(state, str(writer.path("model.safetensors")), metadata={"format": "pt"})
        writer.add("model.safetensors")
        writer.write_json("config.json", llama_config(config, dtype) if llama else hf_config(config, dtype))
        writer.write_json("generation_config.json", {"bos_token_id": None, "eos_token_id": 1, "pad_token_id": 0,
                                                     "do_sample": False})
        writer.write_text("tokenizer.json", loaded.tokenizer.to_json())
        writer.write_json("tokenizer_config.json", tok_config)
        for filename in () if llama else REMOTE_CODE:
            writer.write_text(filename, (TEMPLATES / f"{filename}.tmpl").read_text(encoding="utf-8"))
        writer.write_text("README.md", _readme(name, config, llama))
        exported = writer.finish({"arch": config.arch, "architecture": architecture,
                                  "parameters": parameters, "dtype": dtype,
                                  "prompt_format": config.prompt_format, "source": str(source)})
    return HFExportResult(artifact=exported, arch=config.arch, parameters=parameters, dtype=dtype,
                          architecture=architecture)
