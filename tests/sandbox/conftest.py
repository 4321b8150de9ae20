"""Sandbox fixtures: a backend per test parameter, skipping (or failing) with a reason."""

from __future__ import annotations

import os

import pytest


def _docker_or_skip():
    from hrmcode.errors import HrmcodeError
    from hrmcode.sandbox import docker_backend

    reason = docker_backend.unavailable_reason()
    if reason is not None:
        if os.environ.get("HRMCODE_REQUIRE_DOCKER") == "1":
            pytest.fail(f"docker required (HRMCODE_REQUIRE_DOCKER=1) but unavailable: {reason}")
        pytest.skip(f"docker unavailable: {reason}")
    try:
        return docker_backend.DockerSandbox()
    except HrmcodeError as exc:
        if os.environ.get("HRMCODE_REQUIRE_DOCKER") == "1":
            pytest.fail(f"docker required but not usable: {exc}")
        pytest.skip(f"docker not usable: {exc}")


def _local_or_skip():
    from hrmcode.sandbox import local

    if local.bwrap_path() is None:
        pytest.skip("bubblewrap not installed (apt-get install bubblewrap)")
    return local.BubblewrapSandbox()


@pytest.fixture
def local_sandbox():
    return _local_or_skip()


@pytest.fixture
def docker_sandbox():
    return _docker_or_skip()


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox(request):
    """Each hostile test runs once per backend."""
    return _local_or_skip() if request.param == "local" else _docker_or_skip()
