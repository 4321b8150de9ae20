"""Shared fixtures: the CLI runner, an isolated workspace, and ../shared for `shared` tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HRMCODE_SHARED", REPO.parent / "shared"))


@pytest.fixture
def shared_dir() -> Path:
    """``../shared`` (or $HRMCODE_SHARED); tests using it are skipped with a reason when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set HRMCODE_SHARED)")
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own artifact workspace and no progress bars."""
    workspace = tmp_path / "workspace"
    monkeypatch.setenv("HRMCODE_HOME", str(workspace))
    monkeypatch.setenv("HRMCODE_NO_PROGRESS", "1")
    monkeypatch.delenv("HRMCODE_DEBUG", raising=False)
    from hrmcode.cli._output import out

    out.configure()  # a previous in-process CLI call may have left --json/--quiet mode set
    return workspace


@pytest.fixture
def workspace(_isolated_workspace: Path) -> Path:
    return _isolated_workspace


class Cli:
    """Runs ``hrmcode`` in-process: ``cli("fetch", "humaneval")`` -> result with exit_code/stdout/stderr."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):
        from hrmcode.cli.app import app

        return self.runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def cli() -> Cli:
    return Cli()
