"""The docker backend's housekeeping: what ``clean`` may remove on a host shared by several runs."""

from __future__ import annotations

import os
import subprocess

import pytest

from hrmcode.sandbox import docker_backend

pytestmark = pytest.mark.docker


def _gone_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_clean_removes_only_containers_whose_process_is_gone(docker_sandbox):
    client = docker_sandbox.client
    made = {}
    for owner, pid in (("live", os.getpid()), ("crashed", _gone_pid())):
        container = client.containers.create(
            docker_sandbox.image, command=["true"], network_mode="none",
            labels={docker_backend.LABEL: "1", docker_backend.OWNER_LABEL: str(pid)})
        made[owner] = container
    try:
        removed = docker_backend.clean()
        assert made["crashed"].name in removed
        assert made["live"].name not in removed
        assert docker_backend.labelled_containers(owner_pid=os.getpid()) == [made["live"].name]
    finally:
        import docker

        for container in made.values():
            try:
                container.remove(force=True)
            except docker.errors.NotFound:  # clean() already removed it
                pass
