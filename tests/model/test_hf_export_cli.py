"""``hrmcode export model`` from the command line: a model artifact in, an ``hf-model`` artifact out; bad input
(a quantized model, another kind of artifact, a corrupt checkpoint, an ``-o`` holding a user's files) is a
one-line error that writes nothing."""

from __future__ import annotations

import json

from hrmcode.artifacts import ArtifactWriter, load_artifact
from tests.quantize.tiny import make_tiny_model


def _one_line_error(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_export_model_artifact_from_the_cli(cli, tmp_path):
    model = make_tiny_model(tmp_path / "src", arch="transformer", max_seq_len=64)
    result = cli("--json", "export", "model", str(model), "-o", str(tmp_path / "hf"))
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["arch"] == "transformer" and payload["parameters"] > 0 and payload["dtype"] == "float32"
    assert payload["architecture"] == "hrmcode"  # post-norm: trust_remote_code (norm pre would be llama)
    artifact = load_artifact(payload["artifact"], "hf-model")
    artifact.verify()
    assert [i["kind"] for i in artifact.manifest["inputs"]] == ["model"]
    config = json.loads((artifact.path / "config.json").read_text())
    assert config["arch"] == "transformer" and config["max_position_embeddings"] == 64
    # Exporting again over the earlier export is allowed; over a user's files it is not.
    assert cli("export", "model", str(model), "-o", str(tmp_path / "hf")).exit_code == 0


def test_export_refuses_what_it_cannot_export(cli, tmp_path):
    model = make_tiny_model(tmp_path / "src")
    with ArtifactWriter(tmp_path / "int8", "quantized-model", inputs=[load_artifact(model, "model")],
                        update_latest=False) as writer:
        writer.write_json("quantization.json", {"backend": "torch"})
        writer.finish()
    _one_line_error(cli("export", "model", str(tmp_path / "int8"), "-o", str(tmp_path / "a")), 2,
                    "is a quantized model", f"hrmcode export model {model}")
    _one_line_error(cli("export", "model", str(tmp_path / "src" / "examples"), "-o", str(tmp_path / "b")), 1,
                    "is a 'examples' artifact")
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    _one_line_error(cli("export", "model", str(model), "-o", str(tmp_path / "c")), 1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    fresh = make_tiny_model(tmp_path / "fresh")
    _one_line_error(cli("export", "model", str(fresh), "-o", str(mine)), 2, "--force")
    assert (mine / "notes.txt").read_text() == "keep me"
    _one_line_error(cli("export", "model", str(fresh), "-o", str(tmp_path / "d"), "--dtype", "int3"), 2, "--dtype")
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_export_by_workspace_name_writes_a_workspace_version(cli, tmp_path):
    workspace = tmp_path / "ws"
    make_tiny_model(workspace / "train" / "toy")
    (workspace / "train" / "toy" / "LATEST").write_text("model\n")
    result = cli("--json", "--workspace", str(workspace), "export", "model", "toy", "--dtype", "bfloat16")
    assert result.exit_code == 0, result.stderr
    name = load_artifact("toy", "model", workspace).name + "-hf"  # the default: <model name>-hf
    exported = load_artifact(name, "hf-model", workspace)
    assert str(exported.path) == json.loads(result.stdout)["artifact"]
    assert exported.path.parent == workspace / "export" / name
    assert json.loads((exported.path / "config.json").read_text())["torch_dtype"] == "bfloat16"
