"""``hrmcode quantize``: a checkpoint -> a ``quantized-model`` artifact, and loading one back.

The artifact holds ``model.safetensors`` (quantized weights, scales, and the float tensors that
stay float: embeddings, norms), ``quantization.json`` (backend, spec, per-layer map, source
checkpoint), ``config.json``, ``tokenizer.json`` and the manifest (written last, with the
before/after report in ``stats``).

Guarantees:
- ``load_quantized`` needs only the artifact: the model is built with its parameters on the
  meta device and the quantized tensors are loaded into it, never the float weights.
- The "after" numbers are measured on the model reloaded from the files just written, so they
  describe what ``load_quantized``/``hrmcode serve`` will run, not the in-memory model.
- The held-out examples come from ``--heldout`` or from the examples artifact named in the
  model artifact's manifest (its ``heldout`` split); for a model pretrained on a corpus alone, from
  the corpus's held-out documents (loss and latency; no exact match). None found is an error, not
  a silent skip.
- ``--fail-over-loss PCT`` raises ``ThresholdNotMet`` after the artifact is written.
- The same checkpoint, spec and examples give the same ``model.safetensors`` bytes.
Not guaranteed: speed-ups everywhere. The default (``torch`` backend, int8 weights with
dynamic int8 activations on hrmcode's own kernels) is the fast CPU path; weight-only int8/int4 use PyTorch's
bf16 kernels; quanto's other combinations dequantize on the fly and are slower than float.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.overrides import TorchFunctionMode

from hrmcode.artifacts import MANIFEST, Artifact, ArtifactWriter, load_artifact, output_location
from hrmcode.data.examples import Example, parse_example
from hrmcode.errors import ArtifactError, CheckpointError, InputError, ThresholdNotMet, UsageError
from hrmcode.jsonl import read_jsonl
from hrmcode.memory import release_freed
from hrmcode.model import build_model, kernels
from hrmcode.model.checkpoint import LoadedModel, load_checkpoint, read_config, require_file
from hrmcode.model.tokenizer import CodeTokenizer
from hrmcode.quantize import measure
from hrmcode.quantize.backend import QuantBackend, QuantSpec
from hrmcode.quantize.quanto_backend import QuantoBackend
from hrmcode.quantize.torch_backend import TorchBackend
from hrmcode.reporting import reporter
from hrmcode.train.data import corpus_is_heldout, read_corpus

WEIGHTS = "model.safetensors"
QUANT_MAP = "quantization.json"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
EXAMPLE_FILES = {"validated-examples": "accepted.jsonl", "examples": "examples.jsonl"}
BACKENDS = {"torch": TorchBackend, "quanto": QuantoBackend}


@dataclass
class QuantizeResult:
    artifact: Artifact
    report: dict


class _SkipInitOnMeta(TorchFunctionMode):
    """Make in-place ops (``normal_``, ``uniform_``, ``zero_`` ...) on meta tensors no-ops.

    There is nothing to initialise on the meta device, and torch routes some of them (``normal_``)
    through its Python references (``torch._refs``), whose first use imports torch._dynamo and
    sympy: ~80 MB of resident memory and ~2 s, for nothing.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.startswith("_"):
            target = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
            if target is not None and target.is_meta:
                return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build modules whose parameters live on the meta device (no memory, no initialisation).

    Unlike ``with torch.device("meta")`` this leaves every other tensor a module makes (rotary
    tables, buffers) on the CPU, so models that compute such tensors in ``__init__`` still work.
    Initialisers are skipped (see ``_SkipInitOnMeta``). Not thread-safe: it swaps
    ``nn.Module.register_parameter`` for the duration.
    """
    register = torch.nn.Module.register_parameter

    def on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    torch.nn.Module.register_parameter = on_meta
    try:
        with _SkipInitOnMeta():
            yield
    finally:
        torch.nn.Module.register_parameter = register


# safetensors dtype names -> torch dtypes (those a checkpoint or quanto can produce).
_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


class SafetensorsFile:
    """A safetensors file read one tensor at a time into freshly allocated (aligned) tensors.

    ``safetensors.torch.load_file`` maps the file and hands out views at arbitrary offsets;
    torch's int8pack/int4 CPU kernels crash (SIGSEGV) on such unaligned memory, and copying
    them would hold the file and the copies at once. ``pop`` reads one tensor when it is needed,
    so a backend can pack each layer and let its file copy go before reading the next: loading
    never holds the whole file in memory beside the model.
    """

    def __init__(self, path: Path):
        self.path = path
        with path.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) != 8:
                raise self._corrupt("file too short")
            (self.header_len,) = struct.unpack("<Q", prefix)
            if self.header_len > 100_000_000:
                raise self._corrupt("header length out of range")
            try:
                header = json.loads(fh.read(self.header_len))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise self._corrupt(f"bad header: {exc}") from None
        if not isinstance(header, dict):
            raise self._corrupt("bad header")
        self.entries = {name: info for name, info in header.items() if name != "__metadata__"}

    def _corrupt(self, why: str) -> CheckpointError:
        return CheckpointError(f"{self.path} is not readable safetensors ({why})",
                               "the artifact is corrupt; rerun `hrmcode quantize`")

    def pop(self, name: str) -> torch.Tensor:
        """Read ``name`` and forget it (``KeyError`` when absent)."""
        info = self.entries.pop(name)
        try:
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            start, end = info["data_offsets"]
            tensor = torch.empty(info["shape"], dtype=dtype)
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise self._corrupt(f"bad entry for {name}") from None
        raw = tensor.reshape(-1).view(torch.uint8)
        if raw.numel() != end - start:
            raise self._corrupt(f"{name} has {end - start} bytes for {raw.numel()}")
        with self.path.open("rb") as fh:
            fh.seek(8 + self.header_len + start)
            if fh.readinto(raw.numpy()) != raw.numel():
                raise self._corrupt(f"{name} is cut short")
        return tensor

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """Read every tensor not popped yet."""
        return [(name, self.pop(name)) for name in list(self.entries)]


def get_backend(name: str, spec: QuantSpec | None = None) -> QuantBackend:
    """The backend called ``name``; ``auto`` is ``torch`` unless ``spec`` needs ``quanto``."""
    if name == "auto":
        name = "quanto" if spec is not None and (spec.weights == "float8" or spec.activations == "int8") else "torch"
    if name not in BACKENDS:
        raise UsageError(f"unknown quantization backend '{name}'", f"use one of: auto, {', '.join(BACKENDS)}")
    return BACKENDS[name]()


# -- loading -------------------------------------------------------------------------------
def _read_quant_map(directory: Path) -> dict:
    path = require_file(directory, QUANT_MAP, "rerun `hrmcode quantize CHECKPOINT`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        QuantSpec.from_dict(data["spec"])
        missing = [key for key in ("backend", "layers") if key not in data]
        if missing:
            raise KeyError(missing[0])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a valid quantization map ({type(exc).__name__}: {exc})",
                              "rerun `hrmcode quantize CHECKPOINT`") from None
    return data


def load_quantized_dir(directory: Path | str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a quantized model from a directory with the artifact's files (manifest not required)."""
    directory = Path(directory)
    qmap = _read_quant_map(directory)
    spec = QuantSpec.from_dict(qmap["spec"])
    backend = get_backend(qmap["backend"])
    backend.check(spec, loading=True)
    config = read_config(directory)
    tokenizer = CodeTokenizer.load(directory / TOKENIZER)
    weights = require_file(directory, WEIGHTS, "the artifact is incomplete; rerun `hrmcode quantize`")
    state = SafetensorsFile(weights)
    with parameters_on_meta():
        skeleton = build_model(config)
    model = backend.restore(skeleton, state, {"layers": qmap["layers"], "library": qmap.get("library")}, spec,
                            str(device))
    release_freed()  # the file copies of the layers, freed as they were packed
    return LoadedModel(model=model, tokenizer=tokenizer, config=config, path=directory)


def load_quantized(path: Path | str, device: str | torch.device = "cpu") -> LoadedModel:
    """A ``quantized-model`` artifact (directory or workspace name) -> ``LoadedModel``."""
    artifact = load_artifact(path, "quantized-model")
    return load_quantized_dir(artifact.path, device=device)


def load_any(ref: Path | str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> LoadedModel:
    """A model or quantized-model artifact (path or workspace name), or a bare checkpoint directory.

    It lives here, not in ``hrmcode.model.checkpoint``, so the model package knows nothing of quantization.
    ``dtype`` applies to float models only.
    """
    path = Path(ref)
    if path.is_dir() and not (path / MANIFEST).is_file():
        return load_checkpoint(path, device=device, dtype=dtype)
    try:
        artifact = load_artifact(ref, ("model", "quantized-model"))
        artifact.verify()  # the weights are read by path below
    except ArtifactError as exc:
        raise CheckpointError(exc.message, exc.hint) from None
    if artifact.kind == "quantized-model":
        return load_quantized(artifact.path, device=device)
    return load_checkpoint(artifact.path, device=device, dtype=dtype)


# -- the step ------------------------------------------------------------------------------
def _resolve_checkpoint(ref: Path | str, workspace: Path | str | None) -> tuple[Path, Artifact | None]:
    path = Path(ref)
    if path.is_dir() and not (path / MANIFEST).is_file():
        return path, None  # a bare checkpoints/step-* directory
    artifact = load_artifact(ref, "model", workspace)
    artifact.verify()  # the weights are read by path
    return artifact.path, artifact


def _examples_from_artifact(artifact: Artifact, heldout_only: bool) -> list[Example]:
    data = artifact.file(EXAMPLE_FILES[artifact.kind])
    examples = [parse_example(r, f"{data}:{i}") for i, r in enumerate(read_jsonl(data), 1)]
    return [e for e in examples if e.split == "heldout"] if heldout_only else examples


@dataclass
class Heldout:
    """What the before/after numbers are measured on: held-out examples, or (for a model pretrained on a corpus
    alone) the corpus's held-out documents, which have no target to match exactly."""

    examples: list[Example]
    documents: list[str]
    artifact: Artifact | None
    where: str


def find_heldout(model_artifact: Artifact | None, heldout: Path | str | None,
                 workspace: Path | str | None = None) -> Heldout:
    """``--heldout``'s examples, else the held-out split of the examples the model was trained on, else that of the
    corpus it was pretrained on (``hrmcode.train.data.corpus_is_heldout``, the split train held out)."""
    if heldout is not None:
        path = Path(heldout)
        if path.is_file():
            records = [parse_example(r, f"{path}:{i}") for i, r in enumerate(read_jsonl(path), 1)]
            return Heldout(records, [], None, str(path))
        artifact = load_artifact(heldout, tuple(EXAMPLE_FILES), workspace)
        examples = _examples_from_artifact(artifact, heldout_only=True)
        if not examples:
            raise InputError(f"{artifact.path} has no examples with split 'heldout'",
                             "pass a JSONL file of held-out examples to --heldout")
        return Heldout(examples, [], artifact, f"{artifact.path} (heldout split)")
    if model_artifact is not None:
        inputs = model_artifact.manifest.get("inputs", [])
        for ref in sorted(inputs, key=lambda r: r.get("kind") == "corpus"):  # examples first: what SFT measured
            if ref.get("kind") not in (*EXAMPLE_FILES, "corpus"):
                continue
            try:
                artifact = load_artifact(ref["path"], ref["kind"])
            except ArtifactError as exc:
                raise InputError(f"the model's training data is gone: {exc.message}",
                                 "pass held-out examples with --heldout") from None
            if artifact.kind == "corpus":
                documents = [r["text"] for r in read_corpus(artifact) if corpus_is_heldout(r)]
                if documents:
                    return Heldout([], documents, artifact, f"{artifact.path} (held-out corpus documents)")
                continue
            examples = _examples_from_artifact(artifact, heldout_only=True)
            if examples:
                return Heldout(examples, [], artifact, f"{artifact.path} (heldout split)")
    where = model_artifact.path if model_artifact is not None else "a bare checkpoint directory"
    raise InputError(f"no held-out examples found for {where}",
                     "pass --heldout EXAMPLES (an examples/validated-examples artifact or a JSONL file)")


def _measure(label: str, loaded, encoded, em_encoded, latency_tokens: int) -> dict:
    reporter().log(f"measuring the {label} model on {len(encoded)} held-out examples ...")
    loss = measure.heldout_loss(loaded.model, encoded)
    em = measure.exact_match(loaded.model, loaded.tokenizer, em_encoded)
    with kernels.threads_for(loaded.model, os.cpu_count() or 1):  # timed with the threads `hrmcode serve` would use
        timing = measure.latency(loaded.model, encoded, new_tokens=latency_tokens)
    return {"heldout_loss": loss, "exact_match": em,
            "first_token_ms": None if timing is None else timing[0] * 1000.0,
            "ms_per_token": None if timing is None else timing[1] * 1000.0}


def quantize_checkpoint(
    checkpoint: Path | str,
    spec: QuantSpec,
    *,
    out: Path | str | None = None,
    workspace: Path | str | None = None,
    name: str | None = None,
    heldout: Path | str | None = None,
    limit: int = 64,
    exact_match_limit: int = 16,
    calibration_examples: int = 32,
    latency_tokens: int = 32,
    fail_over_loss: float | None = None,
    backend_name: str = "auto",
    force: bool = False,
) -> QuantizeResult:
    """Quantize ``checkpoint`` into a new ``quantized-model`` artifact and report before/after.

    ``out`` holding anything but an earlier quantized model is refused unless ``force``."""
    source_dir, model_artifact = _resolve_checkpoint(checkpoint, workspace)
    backend = get_backend(backend_name, spec)
    backend.check(spec)  # refuses what it cannot do (or builds quanto's int4 extension) before any long work
    original = load_checkpoint(source_dir, device="cpu")
    held = find_heldout(model_artifact, heldout, workspace)
    examples_artifact, examples_where = held.artifact, held.where
    if held.examples:
        encoded_all = measure.encode_examples(original, held.examples)
    else:
        encoded_all = measure.encode_documents(original, held.documents)
    if not encoded_all:
        count = len(held.examples) or len(held.documents)
        raise InputError(f"none of the {count} held-out items from {examples_where} fits the model's context of "
                         f"{original.config.max_seq_len} tokens",
                         "pass shorter examples with --heldout")
    encoded = encoded_all[:limit]
    em_encoded = encoded[:exact_match_limit] if held.examples else []  # a document's continuation is not an answer
    calibration: list[measure.Encoded] = []
    calibration_overlaps = False
    if spec.calibrated:
        calibration = encoded_all[limit:limit + calibration_examples]
        if not calibration:  # every held-out example is measured: calibrate on the first ones anyway, and say so
            calibration, calibration_overlaps = encoded[:calibration_examples], True
            reporter().warn("calibrating on examples that are also measured (pass --limit lower or more examples)")

    artifact_name = name or f"{model_artifact.name if model_artifact else source_dir.name}-{spec.weights}"
    params = {"checkpoint": str(source_dir), "backend": backend.name, **spec.to_dict(), "heldout": examples_where,
              "limit": limit, "exact_match_limit": exact_match_limit, "calibration_examples": len(calibration),
              "latency_tokens": latency_tokens, "fail_over_loss": fail_over_loss}
    out_dir, update_latest = output_location("quantize", artifact_name, out, workspace, params, replace=force)
    inputs = [a for a in (model_artifact, examples_artifact) if a is not None]

    before = _measure("original", original, encoded, em_encoded, latency_tokens)
    before["size_bytes"] = (source_dir / WEIGHTS).stat().st_size

    model = original.model.to(spec.torch_dtype)
    reporter().log(f"quantizing: weights {spec.weights}, activations {spec.activations}, dtype {spec.dtype} ...")
    started = time.perf_counter()
    backend.quantize(model, spec, (lambda m: measure.forward_examples(m, calibration)) if calibration else None)
    state, qmap = backend.serialize(model)
    quantize_seconds = time.perf_counter() - started
    del model, original

    with ArtifactWriter(out_dir, "quantized-model", name=artifact_name, params=params, inputs=inputs,
                        update_latest=update_latest, replace=force) as writer:
        # One metadata key only: safetensors writes a metadata map in hash order, so two keys may swap places
        # between runs and the same weights would not give the same bytes.
        save_file(state, str(writer.path(WEIGHTS)), metadata={"format": "pt"})
        writer.add(WEIGHTS)
        del state
        writer.write_json(QUANT_MAP, {"backend": backend.name, "library": qmap.get("library"), "spec": spec.to_dict(),
                                      "source": {"path": str(source_dir),
                                                 "manifest_sha256": model_artifact.manifest_sha256()
                                                 if model_artifact else None},
                                      "layers": qmap["layers"]})
        shutil.copyfile(source_dir / CONFIG, writer.path(CONFIG))
        writer.add(CONFIG)
        shutil.copyfile(source_dir / TOKENIZER, writer.path(TOKENIZER))
        writer.add(TOKENIZER)
        reloaded = load_quantized_dir(writer.stage)
        after = _measure("quantized", reloaded, encoded, em_encoded, latency_tokens)
        after["size_bytes"] = writer.path(WEIGHTS).stat().st_size
        loss_increase_pct = _increase_pct(before["heldout_loss"], after["heldout_loss"])
        report = {
            "before": before, "after": after,
            "loss_increase_pct": loss_increase_pct,
            "size_ratio": after["size_bytes"] / before["size_bytes"],
            "examples_measured": len(encoded), "examples_exact_match": len(em_encoded),
            "calibration_examples": len(calibration), "calibration_overlaps_measurement": calibration_overlaps,
            "quantized_layers": len(qmap["layers"]), "quantize_seconds": quantize_seconds,
            "heldout": examples_where,
        }
        artifact = writer.finish(report)
    result = QuantizeResult(artifact=artifact, report=report)
    if fail_over_loss is not None and loss_increase_pct > fail_over_loss:
        error = ThresholdNotMet(
            f"held-out loss rose {loss_increase_pct:.2f}%, over --fail-over-loss {fail_over_loss}% "
            f"(the artifact was written to {artifact.path})",
            "try --weights int8, a smaller --group-size, or --dtype float32",
        )
        error.result = result  # the caller still shows what was measured
        raise error
    return result


def _increase_pct(before: float, after: float) -> float:
    if before == 0:
        return 0.0 if after == 0 else float("inf")
    return (after - before) / before * 100.0


__all__ = ["QuantSpec", "QuantizeResult", "find_heldout", "get_backend", "load_any", "load_quantized",
           "load_quantized_dir", "parameters_on_meta", "quantize_checkpoint"]
