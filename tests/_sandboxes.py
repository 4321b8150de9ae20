"""The real sandboxes that the hostile corpora run in, for a module-scoped fixture parametrized over
``BACKENDS`` (bubblewrap, and docker where a Docker engine is up), and the corpora's file header."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]


def real_sandbox(backend: str):
    """bubblewrap (``local``) or docker, skipping when it is not there (HRMCODE_REQUIRE_DOCKER=1 makes
    docker's absence fail)."""
    from hrmcode.sandbox import docker_backend, local

    if backend == "local":
        if local.bwrap_path() is None:
            pytest.skip("bubblewrap not installed (apt-get install bubblewrap)")
        return local.BubblewrapSandbox()
    reason = docker_backend.unavailable_reason()
    if reason is not None:
        if os.environ.get("HRMCODE_REQUIRE_DOCKER") == "1":
            pytest.fail(f"docker required (HRMCODE_REQUIRE_DOCKER=1) but unavailable: {reason}")
        pytest.skip(f"docker unavailable: {reason}")
    return docker_backend.DockerSandbox()


def read_attack(path: Path) -> tuple[dict[str, str], list[str]]:
    """An attack file's ``# key: value`` header lines, and the lines after them."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = {}
    while lines and lines[0].startswith("# ") and ":" in lines[0]:
        key, _, value = lines.pop(0)[2:].partition(":")
        header[key.strip()] = value.strip()
    return header, lines
