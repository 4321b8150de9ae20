"""The CLI contract: registered commands = README = --help snapshots; exit codes; error lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hrmcode.cli.app import app, hoist_global_options

REPO = Path(__file__).resolve().parents[1]
SNAPSHOTS = REPO / "tests" / "snapshots"
HELP_ENV = {"COLUMNS": "100", "TERMINAL_WIDTH": "100", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}


def registered_commands() -> list[list[str]]:
    """Every command path, e.g. ["fetch"], ["eval", "polyglot"]."""
    paths = [[c.name or c.callback.__name__] for c in app.registered_commands]
    for group in app.registered_groups:
        sub = group.typer_instance
        paths.append([group.name])
        paths.extend([group.name, c.name or c.callback.__name__] for c in sub.registered_commands)
    return paths


def test_readme_lists_every_registered_command_and_no_other():
    readme = (REPO / "README.md").read_text()
    top_level = {p[0] for p in registered_commands()}
    global_options = r"(?:(?:--json|--quiet|-q|--no-progress)\s+|--workspace\s+\S+\s+)*"
    mentioned = set(re.findall(rf"^(?:\S+=\S+\s+)*\s*hrmcode\s+{global_options}([a-z][a-z-]*)", readme, re.M))
    assert top_level <= mentioned, f"commands missing from README: {sorted(top_level - mentioned)}"
    assert mentioned <= top_level, f"README mentions unregistered commands: {sorted(mentioned - top_level)}"
    for path in registered_commands():
        if len(path) == 2:
            assert f"hrmcode {path[0]} {path[1]}" in readme, f"README lacks an example of `hrmcode {' '.join(path)}`"


@pytest.mark.parametrize("path", [[]] + registered_commands(), ids=lambda p: " ".join(p) or "hrmcode")
def test_help_matches_snapshot(cli, monkeypatch, path):
    for key, value in HELP_ENV.items():
        monkeypatch.setenv(key, value)
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.stdout
    name = "_".join(path) or "hrmcode"
    snapshot = SNAPSHOTS / f"help_{name}.txt"
    text = "\n".join(line.rstrip() for line in result.stdout.splitlines()) + "\n"
    if os.environ.get("HRMCODE_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert snapshot.exists(), f"no snapshot for `hrmcode {' '.join(path)} --help`: run with HRMCODE_UPDATE_SNAPSHOTS=1"
    assert text == snapshot.read_text(), f"`hrmcode {' '.join(path)} --help` changed: review, then update snapshots"


def test_every_command_has_examples_epilog():
    for path in registered_commands():
        if len(path) == 1 and any(g.name == path[0] for g in app.registered_groups):
            continue
        snapshot = SNAPSHOTS / f"help_{'_'.join(path)}.txt"
        assert "Examples" in snapshot.read_text(), f"`hrmcode {' '.join(path)}` has no examples epilog"


def test_version_and_json(cli):
    result = cli("version")
    assert result.exit_code == 0 and result.stdout.startswith("hrmcode ")
    result = cli("--json", "version")
    assert '"hrmcode"' in result.stdout


def test_unknown_command_is_usage_error(cli):
    result = cli("frobnicate")
    assert result.exit_code == 2


def test_error_is_one_line_and_debug_shows_traceback(tmp_path):
    missing = tmp_path / "nope"
    cmd = [sys.executable, "-m", "hrmcode", "analyze", str(missing)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HRMCODE_DEBUG": ""})
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HRMCODE_DEBUG": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr


# -- options generated from the library --------------------------------------------------------
def _click_command(*path: str):
    import typer.main

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def test_train_options_are_the_library_fields():
    from hrmcode.cli.train import HELP_ORDER
    from hrmcode.train.options import PRESET_OPTIONS, TrainOptions

    params = {p.name: p for p in _click_command("train").params}
    generated = [name for name in HELP_ORDER if name in TrainOptions.model_fields]
    assert len(generated) >= 20
    for name in generated:
        field, param = TrainOptions.model_fields[name], params[name]
        assert param.opts[0] == "--" + name.replace("_", "-"), name
        assert param.default is None, f"--{name}: unset must mean the preset's or the library's default"
        note = "Preset default." if name in PRESET_OPTIONS else "Default:"
        assert param.help.startswith(field.description) and note in param.help, name
    assert [p.name for p in _click_command("train").params if p.name in TrainOptions.model_fields] == generated


@pytest.mark.parametrize("bench", ["polyglot", "humaneval", "livecodebench"])
def test_eval_shared_options_are_the_library_fields(bench):
    import dataclasses

    from hrmcode.eval.api import EvalConfig

    params = {p.name: p for p in _click_command("eval", bench).params}
    fields = [f for f in dataclasses.fields(EvalConfig) if f.metadata.get("help")]
    assert len(fields) >= 15
    for field in fields:
        param = params[field.name]
        assert param.help == field.metadata["help"], field.name
        flags = field.metadata["flags"] or ("--" + field.name.replace("_", "-"),)
        assert tuple(param.opts + param.secondary_opts) == tuple(flags), field.name
        if field.default is dataclasses.MISSING:
            assert param.required, field.name
        else:
            assert param.default == field.default, field.name


def test_presets_have_one_vocabulary():
    from hrmcode.model.config import preset
    from hrmcode.presets import PRESETS
    from hrmcode.train.options import resolve_options

    for name in PRESETS:
        assert preset(name).vocab_size == resolve_options(name).vocab_size == PRESETS[name]["vocab_size"]
    assert PRESETS["27m"]["vocab_size"] == 4096  # docs/serve.md's sizes (31.7 MB int8) are measured at it


# -- --workspace --------------------------------------------------------------------------------
def test_workspace_reaches_the_library_without_the_environment(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("HRMCODE_HOME")
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "elsewhere"
    result = cli("--workspace", root, "fetch", "humaneval", "--limit", "3")
    assert result.exit_code == 0, result.stdout
    assert "HRMCODE_HOME" not in os.environ
    assert (root / "fetch" / "humaneval" / "LATEST").is_file()
    result = cli("--workspace", root, "analyze", "humaneval")  # a name, found in --workspace
    assert result.exit_code == 0, result.stdout
    assert (root / "analyze" / "humaneval" / "LATEST").is_file()
    assert "HRMCODE_HOME" not in os.environ and not (tmp_path / "hrmcode-artifacts").exists()


def test_exit_codes_come_from_the_error_classes():
    from hrmcode import errors
    from hrmcode.cli._errors import render

    assert render(errors.UsageError("x")) == errors.UsageError.exit_code == 2
    assert render(errors.ThresholdNotMet("x")) == errors.HrmcodeError.exit_code == 1
    assert render(FileNotFoundError(2, "gone", "f")) == 1


def test_validate_options_are_the_library_fields(cli, monkeypatch):
    import hrmcode.cli.validate as validate_command
    from hrmcode.data.validate import ValidateOptions
    from hrmcode.errors import UsageError

    seen = {}

    def fake_validate(examples, **kwargs):
        seen.update(kwargs)
        raise UsageError("stopped before any work")

    monkeypatch.setattr(validate_command, "run_validate", fake_validate)
    cli("validate", "some-examples", "--no-exec", "--min-score", "0.7")
    assert seen["exec_checks"] is False and seen["min_score"] == 0.7
    assert seen["dedup_threshold"] == ValidateOptions.dedup_threshold
    assert seen["exec_timeout_s"] == ValidateOptions.exec_timeout_s
    seen.clear()
    cli("validate", "some-examples")
    assert seen["exec_checks"] is True


def test_synthesize_options_are_the_library_fields():
    import dataclasses

    from hrmcode.data.synthesize import SynthesizeOptions

    params = {p.name: p for p in _click_command("synthesize").params}
    for field in dataclasses.fields(SynthesizeOptions):
        param = params[field.name]
        assert param.help == field.metadata["help"] and param.default == field.default, field.name


def test_the_command_line_starts_without_the_heavy_libraries():
    """``hrmcode --help``, every command's parsing and an eval's options without a compute budget import no
    torch, libcst, transformers, datasets or ray: commands load them when they run (start-up stays fast)."""
    code = ("import sys, hrmcode.cli.app; from hrmcode.eval.api import EvalConfig; EvalConfig(model='oracle'); "
            "print(' '.join(m for m in ('torch', 'libcst', 'transformers', 'datasets', 'ray') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_global_options_may_follow_the_command(cli, tmp_path):
    assert cli("version", "--json").stdout == cli("--json", "version").stdout
    root = tmp_path / "ws"
    result = cli("fetch", "humaneval", "--limit", "2", "--workspace", str(root), "--quiet")
    assert result.exit_code == 0, result.stdout
    assert list((root / "fetch" / "humaneval").iterdir())  # the workspace given after the command was used
    assert cli("version", "--workspace").exit_code == 2  # a missing value is still a usage error
    assert hoist_global_options(["eval", "x", "--", "--json"]) == ["eval", "x", "--", "--json"]
