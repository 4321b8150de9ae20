"""What a SIGKILLed hrmcode leaves behind, and who reclaims it.

A run's tmpfs and cgroup (local) or container (docker) outlive an hrmcode killed mid-run; the next
sandbox start must reclaim them, judging owners by pid *and* start time, and never touch a live
owner's. Checked from the host: /proc/self/mounts, the cgroup tree, the Docker engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrmcode.sandbox import _cgroup, docker_backend, hostpaths, local, runs
from hrmcode.sandbox.base import Limits

needs_mounts = pytest.mark.skipif(os.geteuid() != 0 or local.bwrap_path() is None,
                                  reason="per-run tmpfs mounts exist only when hrmcode runs as root with bwrap")


def _gone_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _mounts_under(prefix: Path) -> list[str]:
    return [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(prefix) + "/")]


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_owner_names_one_process_not_one_pid():
    me = runs.owner_tag()
    pid, start = (int(part) for part in me.split("-"))
    assert pid == os.getpid() and start == runs.process_start_time(os.getpid())
    assert not runs.owner_gone(f"{me}-abc")
    assert runs.owner_gone(f"{pid}-{start + 1}-abc")  # the pid was reused by another process
    assert runs.owner_gone(f"{_gone_pid()}-{start}-abc")
    assert not runs.owner_gone(f"{pid}-0123456789ab")  # an earlier version's name: judged by its pid
    assert runs.owner_gone(f"{_gone_pid()}-0123456789ab")
    assert not runs.owner_gone("lost+found") and not runs.owner_gone("notes.txt")


def test_sweep_removes_only_dead_owners_run_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HRMCODE_CACHE", str(tmp_path))
    base = hostpaths.cache_root() / "runs"
    base.mkdir(parents=True)
    start = runs.process_start_time(os.getpid())
    live, dead, reused = (base / f"{runs.owner_tag()}-live", base / f"{_gone_pid()}-{start}-dead",
                          base / f"{os.getpid()}-{start + 7}-reused")
    for path in (live, dead, reused):
        (path / "work").mkdir(parents=True)
    removed = runs.clean_stale_runs()
    assert str(dead) in removed and str(reused) in removed and str(live) not in removed
    assert live.exists() and not dead.exists() and not reused.exists()


@pytest.mark.skipif(_cgroup.hierarchy() is None, reason="no memory cgroup here (RLIMIT_AS fallback)")
def test_sweep_removes_only_dead_owners_cgroups():
    found = _cgroup.hierarchy()
    start = runs.process_start_time(os.getpid())
    dead = _cgroup.RunCgroup(found, f"{_gone_pid()}-{start}-sweeptest", 64)
    live = _cgroup.RunCgroup(found, f"{runs.owner_tag()}-sweeptest", 64)
    try:
        runs.clean_stale_runs()  # (another hrmcode sharing this cgroup may sweep the dead one first)
        assert not dead.path.exists()
        assert live.path.exists()
    finally:
        live.close()
        dead.close()
    assert not live.path.exists()


@pytest.fixture
def private_cache(tmp_path):
    """A cache root of the test's own; whatever a failed test left mounted in it is swept afterwards."""
    cache = tmp_path / "cache"
    yield cache
    previous = os.environ.get("HRMCODE_CACHE")
    os.environ["HRMCODE_CACHE"] = str(cache)
    try:
        runs.clean_stale_runs()
    finally:
        if previous is None:
            del os.environ["HRMCODE_CACHE"]
        else:
            os.environ["HRMCODE_CACHE"] = previous


def _hrmcode(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hrmcode", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def humaneval_tasks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("humaneval") / "tasks"
    proc = subprocess.run([sys.executable, "-m", "hrmcode", "fetch", "humaneval", "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def slow_examples(tmp_path_factory) -> tuple[Path, Path]:
    """(workspace, examples artifact) whose solve examples sleep 600 s in validate's execution check."""
    from hrmcode.artifacts import ArtifactWriter, load_artifact

    root = tmp_path_factory.mktemp("validate")
    workspace = root / "ws"
    for step in (["fetch", "humaneval", "--limit", "1"], ["synthesize", "--source", "humaneval", "--levels", "solve"]):
        proc = subprocess.run([sys.executable, "-m", "hrmcode", "--workspace", str(workspace), *step],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    tasks = load_artifact(next((workspace / "fetch" / "humaneval").glob("2*")), ("tasks",))
    synthesized = next((workspace / "synthesize" / "humaneval").glob("2*/examples.jsonl"))
    rows = [json.loads(line) for line in synthesized.read_text().splitlines()]
    for row in rows:
        row["target"] = row["target"].replace("```\n", "```\nimport time\ntime.sleep(600)\n", 1)
    with ArtifactWriter(root / "slow", "examples", name="slow", inputs=[tasks], update_latest=False) as writer:
        writer.write_jsonl("examples.jsonl", rows)
        writer.finish({"examples": len(rows)})
    return workspace, root / "slow"


def _endless_samples(tasks: Path, path: Path) -> Path:
    rows = [json.loads(line) for line in (tasks / "tasks.jsonl").read_text().splitlines()[:2]]
    path.write_text("".join(json.dumps({"task_id": r["metadata"]["task_id"],
                                        "completion": "    while True:\n        pass\n"}) + "\n" for r in rows))
    return path


@pytest.mark.integration
@needs_mounts
@pytest.mark.parametrize("step", ["eval", "validate", "sandbox-run"])
def test_a_sigkilled_hrmcode_leaves_a_mount_that_the_next_run_sweeps(step, request, tmp_path, monkeypatch,
                                                                     private_cache):
    cache = private_cache
    env = {**os.environ, "HRMCODE_CACHE": str(cache), "HRMCODE_NO_PROGRESS": "1"}
    if step == "eval":
        tasks = request.getfixturevalue("humaneval_tasks")
        samples = _endless_samples(tasks, tmp_path / "samples.jsonl")
        args = ["eval", "humaneval", "--model", f"samples:{samples}", "--tasks", str(tasks),
                "--timeout", "60", "-o", str(tmp_path / "out")]
    elif step == "validate":
        workspace, examples = request.getfixturevalue("slow_examples")
        args = ["--workspace", str(workspace), "validate", str(examples), "--allow-contaminated",
                "--exec-timeout", "60", "-o", str(tmp_path / "out")]
    else:
        args = ["sandbox", "run", "--timeout", "60", "--", "sleep", "600"]
    proc = _hrmcode(*args, env=env)
    runs_dir = cache / "sandbox" / "runs"
    try:
        mounted = _wait_for(lambda: [m for m in _mounts_under(runs_dir) if Path(m).name.startswith(f"{proc.pid}-")],
                            90, f"hrmcode {step}'s sandbox tmpfs")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_name = Path(mounted[0]).name
    time.sleep(0.5)
    assert mounted[0] in _mounts_under(runs_dir), "the killed run's tmpfs is expected to outlive it"
    cgroup = _cgroup.hierarchy().parent / run_name if _cgroup.hierarchy() else None

    monkeypatch.setenv("HRMCODE_CACHE", str(cache))
    result = local.BubblewrapSandbox().run(["true"], limits=Limits(timeout_s=10))  # the next sandbox start
    assert result.ok, result.stderr
    assert _mounts_under(runs_dir) == [] and not (runs_dir / run_name).exists()
    if cgroup is not None:
        assert not cgroup.exists()


@pytest.mark.docker
@pytest.mark.integration
def test_a_killed_hrmcodes_container_stops_at_its_own_deadline_and_is_swept(docker_sandbox, monkeypatch,
                                                                            private_cache):
    """The hrmcode is first SIGSTOPped (its timer frozen, as if gone, but still the live owner, so no
    concurrent sweep on this host removes the container while the test waits for its own deadline),
    then SIGKILLed, and the next docker sandbox start sweeps what it left."""
    cache = private_cache
    env = {**os.environ, "HRMCODE_CACHE": str(cache), "HRMCODE_NO_PROGRESS": "1"}
    proc = _hrmcode("sandbox", "run", "--backend", "docker", "--timeout", "2", "--", "sleep", "600", env=env)
    client = docker_sandbox.client
    try:
        containers = _wait_for(
            lambda: [c for c in client.containers.list(filters={"label": f"{docker_backend.OWNER_LABEL}={proc.pid}"})
                     if c.status == "running"], 120, "the run's container")
        proc.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        container = containers[0]

        def exited() -> bool:
            container.reload()
            return container.status == "exited"

        _wait_for(exited, 2 + docker_backend.INNER_GRACE_S + 15, "the container's own deadline")
        assert time.monotonic() - stopped_at < 2 + docker_backend.INNER_GRACE_S + 15
        assert container.attrs["State"]["ExitCode"] == 128 + signal.SIGKILL  # `timeout -s KILL` fired
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    monkeypatch.setenv("HRMCODE_CACHE", str(cache))
    sandbox = docker_backend.DockerSandbox()  # the next docker sandbox start sweeps the container
    assert container.name not in docker_backend.labelled_containers()
    if os.geteuid() == 0:  # and its next run the tmpfs the killed run had mounted for /work
        assert _mounts_under(cache / "sandbox" / "runs") != []
        assert sandbox.run(["true"], limits=Limits(timeout_s=30)).ok
        assert _mounts_under(cache / "sandbox" / "runs") == []


def test_container_sweep_judges_owners_by_pid_and_start_time_without_an_engine():
    """``docker_backend.clean``'s decisions, on a stand-in client (the engine test above needs Docker)."""
    pytest.importorskip("docker")  # the SDK (for its NotFound), not an engine
    start = runs.process_start_time(os.getpid())

    class Container:
        def __init__(self, name: str, labels: dict[str, str]) -> None:
            self.name, self.labels, self.removed = name, {docker_backend.LABEL: "1", **labels}, False

        def remove(self, force: bool) -> None:
            assert force
            self.removed = True

    owner, owner_start = docker_backend.OWNER_LABEL, docker_backend.OWNER_START_LABEL
    containers = [
        Container("live", {owner: str(os.getpid()), owner_start: str(start)}),
        Container("reused-pid", {owner: str(os.getpid()), owner_start: str(start + 1)}),
        Container("dead", {owner: str(_gone_pid()), owner_start: str(start)}),
        Container("live-old-label", {owner: str(os.getpid())}),
        Container("dead-old-label", {owner: str(_gone_pid())}),
    ]

    class Client:
        class containers:  # noqa: N801 - the SDK's attribute name
            @staticmethod
            def list(all: bool, filters: dict) -> list[Container]:
                assert all and filters == {"label": f"{docker_backend.LABEL}=1"}
                return containers

    assert sorted(docker_backend.clean(Client())) == ["dead", "dead-old-label", "reused-pid"]
    assert [c.name for c in containers if c.removed] == ["reused-pid", "dead", "dead-old-label"]


def test_env_image_sweep_removes_only_images_no_current_sandbox_can_use():
    """``docker_backend.clean_env_images`` on a stand-in client: stale env images go, current ones stay
    unless every one is asked for, and an image docker refuses to remove (in use) is kept."""
    docker = pytest.importorskip("docker")
    current = docker_backend.python_env_image_tag("abc")
    stale_sandbox = "hrmcode-env-abc:0123456789ab-" + current.rsplit("-", 1)[1]
    stale_recipe = current.rsplit("-", 1)[0] + "-ffffff"
    in_use = "hrmcode-env-def:000000000000-000000"

    class Image:
        def __init__(self, *tags: str) -> None:
            self.tags = list(tags)

    class Client:
        def __init__(self) -> None:
            self.removed: list[str] = []
            self.images = self

        def list(self, name: str) -> list[Image]:
            assert name == "hrmcode-env-*"
            return [Image(current), Image(stale_sandbox, stale_recipe), Image(in_use), Image("other:latest")]

        def remove(self, tag: str) -> None:
            if tag == in_use:
                raise docker.errors.APIError("conflict: image is being used by a running container")
            self.removed.append(tag)

    client = Client()
    assert docker_backend.clean_env_images(client) == [stale_sandbox, stale_recipe]
    client = Client()
    assert docker_backend.clean_env_images(client, every=True) == [current, stale_sandbox, stale_recipe]
