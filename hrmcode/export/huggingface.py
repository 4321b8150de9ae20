"""``hrmcode export model``: a trained model as a directory Hugging Face ``transformers`` loads.

The export (an ``hf-model`` artifact) holds ``model.safetensors`` (the float weights under
hrmcode's own names; the ACT Q head, unused at inference, is left out), ``config.json`` with an
``auto_map`` to ``configuration_hrmcode.py`` and ``modeling_hrmcode.py`` (copied from
``templates/``; they import torch and transformers only), ``tokenizer.json`` (hrmcode's, as is)
with a ``tokenizer_config.json`` whose chat template renders the checkpoint's prompt format,
``generation_config.json`` (EOS, pad, greedy) and a ``README.md``. So
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` and
``AutoTokenizer.from_pretrained(dir)`` work without hrmcode, and
``apply_chat_template(messages, add_generation_prompt=True)`` gives the ids hrmcode's renderer
gives (``level=None`` or another level name as a template argument; the default is a chat's).

Both arms load through ``trust_remote_code``, the transformer baseline too: its blocks are
post-norm (a parameterless RMSNorm of each residual sum) over embeddings scaled by sqrt(hidden),
with no final norm, and no architecture in ``transformers`` computes that (Llama, Qwen2, Mistral
and GPT-NeoX are pre-norm; OLMo2, Gemma2 and HyperCLOVAX normalise the sublayer's output, not
the sum), so a conversion to one of them would change the model's outputs.

Guarantees: the export is staged and renamed into place with its manifest last (the artifact
contract of ``hrmcode.artifacts``); the same checkpoint and options give the same
``model.safetensors`` bytes. Refused with a one-line error: a quantized model (transformers
cannot run hrmcode's int8/int4 layers: export the float model it came from), anything that is not
a model artifact or checkpoint directory, a corrupt checkpoint, an unknown prompt format, an arch
the exported modeling code does not implement (trm, ut).
Not guaranteed: that greedy tokens match hrmcode's where two logits are nearly tied (float
rounding differs between hrmcode's fused CPU kernels and plain torch).
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
        "use_cache": True,
        "tie_word_embeddings": False,
        "bos_token_id": None,
        "eos_token_id": 1,
        "pad_token_id": 0,
        "torch_dtype": dtype,
        "hrmcode": config.to_dict(),
    }


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


def _readme(name: str, config: ModelConfig) -> str:
    return (
        f"# {name}\n\n"
        f"An hrmcode `{config.arch}` model exported for Hugging Face transformers by `hrmcode export model`.\n"
        "Its code is in `modeling_hrmcode.py` (torch and transformers only), so load it with `trust_remote_code`:\n\n"
        "```python\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        "tok = AutoTokenizer.from_pretrained(path)\n"
        "model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)\n"
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
    tok_config = tokenizer_config(config)  # refuses an unknown prompt format before anything is written
    name = name or f"{artifact.name if artifact else source.name}-hf"
    params = {"source": str(source), "dtype": dtype}
    out_dir, update_latest = output_location("export", name, out, workspace, params, replace=force)
    state = {key: value.detach().to(getattr(torch, dtype)).contiguous()
             for key, value in loaded.model.state_dict().items() if not key.startswith(LEFT_OUT)}
    parameters = sum(value.numel() for key, value in state.items() if not key.endswith("_init"))
    with ArtifactWriter(out_dir, "hf-model", name=name, params=params, inputs=[artifact] if artifact else [],
                        update_latest=update_latest, replace=force) as writer:
        save_file(state, str(writer.path("model.safetensors")), metadata={"format": "pt"})
        writer.add("model.safetensors")
        writer.write_json("config.json", hf_config(config, dtype))
        writer.write_json("generation_config.json", {"bos_token_id": None, "eos_token_id": 1, "pad_token_id": 0,
                                                     "do_sample": False})
        writer.write_text("tokenizer.json", loaded.tokenizer.to_json())
        writer.write_json("tokenizer_config.json", tok_config)
        for filename in REMOTE_CODE:
            writer.write_text(filename, (TEMPLATES / f"{filename}.tmpl").read_text(encoding="utf-8"))
        writer.write_text("README.md", _readme(name, config))
        exported = writer.finish({"arch": config.arch, "parameters": parameters, "dtype": dtype,
                                  "prompt_format": config.prompt_format, "source": str(source)})
    return HFExportResult(artifact=exported, arch=config.arch, parameters=parameters, dtype=dtype)
