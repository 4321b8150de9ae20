"""The CLI contract: registered commands = README = --help snapshots; exit codes; error lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hrmcode.cli.app import app

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
