"""The executor seam (``hrmcode/executor.py``): local threads and a local Ray cluster.

One Ray cluster (two worker processes, two ``sandbox_slot`` resources) is started once and shared
by every Ray test; they all live in this module, so it is module-scoped: started once per session all
the same, and shut down before the rest of the suite runs. Without Ray installed they skip, unless
``HRMCODE_REQUIRE_RAY=1`` (``scripts/test.sh``, whose setup installs ``hrmcode[ray]``) makes that a
failure.
"""

from __future__ import annotations

import json
import shutil
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hrmcode import executor
from hrmcode.errors import InputError, SandboxError, UsageError
from hrmcode.executor import ExecutorOptions, LocalExecutor, worker_slot


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        import ray
    except ImportError:
        if os.environ.get("HRMCODE_REQUIRE_RAY") == "1":
            pytest.fail("ray required (HRMCODE_REQUIRE_RAY=1) but not installed: pip install -e '.[ray]'")
        pytest.skip("ray not installed (pip install -e '.[ray]')")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    ray.init(num_cpus=2, resources={executor.SLOT_RESOURCE: 2}, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def on_ray(ray_cluster):
    """Per-item work of the test runs on the shared cluster."""
    with executor.active(executor.RayExecutor()) as ray_executor:
        yield ray_executor


class CountingRay(executor.RayExecutor):
    """The shared cluster, counting the items it ran (so a test knows the work went there)."""

    items = 0

    def map(self, fn, items, on_done=None):
        self.items += len(items)
        return super().map(fn, items, on_done)


def _square_after(item: tuple[int, float], worker: int) -> tuple[int, int, int]:
    value, delay = item
    time.sleep(delay)
    return value * value, worker, os.getpid()


def _raise_input_error(item: int, worker: int) -> int:
    if item == 2:
        raise InputError(f"item {item} is bad", "fix it")
    time.sleep(0.05)
    return item


# -- local ---------------------------------------------------------------------------------------
def test_local_results_in_input_order_and_on_done_in_the_callers_thread():
    seen: list[tuple[int, str]] = []
    items = [(i, 0.05 * (5 - i)) for i in range(5)]  # later items finish first
    results = LocalExecutor(3).map(_square_after, items, lambda i, r: seen.append((i, threading.current_thread().name)))
    assert [r[0] for r in results] == [0, 1, 4, 9, 16]
    assert sorted(i for i, _ in seen) == [0, 1, 2, 3, 4]
    assert {name for _, name in seen} == {threading.current_thread().name}
    assert {r[1] for r in results} <= {0, 1, 2}


def test_local_error_stops_the_rest_and_keeps_the_finished():
    done: list[int] = []
    with pytest.raises(InputError, match="item 2 is bad"):
        LocalExecutor(1).map(_raise_input_error, list(range(6)), lambda i, r: done.append(i))
    assert done == [0, 1]


def test_a_failing_on_done_starts_nothing_more():
    started: list[int] = []

    def job(item: int, worker: int) -> int:
        started.append(item)
        time.sleep(0.05)
        return item

    def full_disk(index: int, result: int) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        LocalExecutor(2).map(job, list(range(20)), full_disk)
    assert len(started) < 20


def test_options_refuse_unknown_executor_and_stray_address():
    with pytest.raises(UsageError, match="unknown --executor 'spark'"):
        ExecutorOptions("spark").check()
    with pytest.raises(UsageError, match="--address is for --executor ray"):
        ExecutorOptions("local", "10.0.0.1:6379").check()
    options = {"executor": "ray", "address": None, "model": "oracle"}
    assert ExecutorOptions.take(options) == ExecutorOptions("ray") and options == {"model": "oracle"}


def test_an_address_nothing_answers_at_is_refused_at_once_in_one_line(monkeypatch):
    import socket

    with socket.socket() as listener:  # a port that was free a moment ago: nothing listens there now
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        started = time.monotonic()
        with pytest.raises(UsageError, match=f"nothing accepts connections at 127.0.0.1:{port}") as caught:
            executor.probe_address(address)
        assert time.monotonic() - started < 3 and "\n" not in str(caught.value)
    with socket.socket() as listener:  # something that accepts but speaks no gRPC (an HTTP server, say)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(UsageError, match=f"127.0.0.1:{port} accepts connections but does not speak gRPC"):
            executor.probe_address(f"127.0.0.1:{port}", timeout_s=1)
    grpc = pytest.importorskip("grpc")
    server = grpc.server(ThreadPoolExecutor(1))  # a gRPC server: whether it is a Ray head is Ray's to judge
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        executor.probe_address(f"127.0.0.1:{port}", timeout_s=5)
        monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # Ray's channels ignore a proxy; so does the probe
        executor.probe_address(f"127.0.0.1:{port}", timeout_s=5)
    finally:
        server.stop(None)
    executor.probe_address("auto")
    executor.probe_address("no-port-here")  # malformed: Ray refuses it at once with its own line


def test_what_a_failing_join_prints_on_fd_2_is_dropped_and_a_good_one_is_kept(capfd):
    with pytest.raises(ValueError):
        with executor._stderr_held():
            os.write(2, b"[W gcs_client.cc] retry 1\n")
            raise ValueError("cannot join")
    with executor._stderr_held():
        os.write(2, b"joined\n")
    assert capfd.readouterr().err == "joined\n"


def test_worker_slots_are_distinct_and_freed_when_the_holder_dies(tmp_path: Path):
    with worker_slot(tmp_path) as first, worker_slot(tmp_path) as second:
        assert (first, second) == (0, 1)
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from pathlib import Path; from hrmcode.executor import worker_slot\n"
                               f"with worker_slot(Path({str(tmp_path)!r})) as s:\n"
                               "    print(s, flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0"
        with worker_slot(tmp_path) as taken:
            assert taken == 1
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with worker_slot(tmp_path) as freed:
            assert freed == 0
    finally:
        holder.kill()


# -- Ray -----------------------------------------------------------------------------------------
def test_ray_results_in_order_on_two_slots_with_distinct_worker_ids(on_ray):
    assert on_ray.slots == 2
    items = [(i, 0.3) for i in range(6)]
    order: list[int] = []
    results = on_ray.map(_square_after, items, lambda i, r: order.append(i))
    assert [r[0] for r in results] == [0, 1, 4, 9, 16, 25]
    assert sorted(order) == list(range(6))
    assert len({pid for _, _, pid in results}) == 2  # two worker processes, one per slot
    assert {worker for _, worker, _ in results} <= {0, 1}


def test_ray_job_errors_come_back_as_they_were_raised(on_ray):
    with pytest.raises(InputError, match="item 2 is bad") as caught:
        on_ray.map(_raise_input_error, list(range(4)))
    assert caught.value.hint == "fix it"
    lock = threading.Lock()
    with pytest.raises(UsageError, match="cannot be sent to Ray workers"):
        on_ray.map(lambda item, worker, lock=lock: item, [1])


def test_ray_needs_sandbox_slots_and_the_extra(ray_cluster, monkeypatch):
    monkeypatch.setattr(ray_cluster, "cluster_resources", lambda: {"CPU": 2.0})
    with pytest.raises(UsageError, match="no sandbox_slot resources"):
        executor.RayExecutor()
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(Exception, match=r"pip install 'hrmcode\[ray\]'"):
        executor.RayExecutor()


# -- the commands on Ray: the same bytes as the local run -------------------------------------------
def _local_sandbox_or_skip() -> None:
    from hrmcode.sandbox import local

    if local.bwrap_path() is None:
        pytest.skip("bubblewrap not installed (apt-get install bubblewrap)")


def _untimed(path: Path) -> list[dict]:
    """A JSONL file's records without their timings (what a rerun may change)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not (k.endswith("_s") or k == "seconds")}
        return [strip(v) for v in value] if isinstance(value, list) else value
    return [strip(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.integration
def test_synthesize_validate_and_eval_on_ray_write_what_the_local_run_writes(ray_cluster, cli, tmp_path):
    _local_sandbox_or_skip()
    assert cli("fetch", "humaneval", "--limit", "2").exit_code == 0
    assert cli("synthesize", "--source", "humaneval", "--levels", "edit,solve", "-o", tmp_path / "ex").exit_code == 0
    on_ray = cli("synthesize", "--source", "humaneval", "--levels", "edit,solve", "-o", tmp_path / "ex-ray",
                 "--executor", "ray")
    assert on_ray.exit_code == 0, on_ray.stderr
    assert (tmp_path / "ex-ray" / "examples.jsonl").read_bytes() == (tmp_path / "ex" / "examples.jsonl").read_bytes()
    runs = {}
    for name, extra in (("local", ()), ("ray", ("--executor", "ray"))):
        result = cli("validate", tmp_path / "ex", "--allow-contaminated", "-j", "2", "-o", tmp_path / f"v-{name}",
                     *extra)
        assert result.exit_code == 0, result.stderr
        result = cli("eval", "humaneval", "--model", "oracle", "-j", "2", "-o", tmp_path / f"e-{name}", *extra)
        assert result.exit_code == 0, result.stderr
        runs[name] = result
    for file in ("accepted.jsonl", "rejected.jsonl", "scores.jsonl", "report.json"):
        assert (tmp_path / "v-ray" / file).read_bytes() == (tmp_path / "v-local" / file).read_bytes(), file
    assert json.loads((tmp_path / "v-ray" / "report.json").read_text())["gates"]["exec_passed"] == 4
    assert _untimed(tmp_path / "e-ray" / "results.jsonl") == _untimed(tmp_path / "e-local" / "results.jsonl")
    summaries = [json.loads((tmp_path / f"e-{name}" / "summary.json").read_text()) for name in ("ray", "local")]
    assert [{k: v for k, v in s.items() if k != "seconds"} for s in summaries] == [
        {k: v for k, v in summaries[1].items() if k != "seconds"}] * 2


def _kill_first_item_worker(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray worker seen running an item (titled ray::hrmcode-item)."""
    title = f"ray::{executor.TASK_NAME}".encode()
    while not stop.is_set() and not killed:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "cmdline").read_bytes().startswith(title):
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.append(int(entry.name))
                    return
            except OSError:
                continue
        time.sleep(0.01)


@pytest.mark.integration
def test_a_worker_killed_mid_run_loses_nothing_after_a_rerun(ray_cluster, cli, tmp_path):
    _local_sandbox_or_skip()
    from hrmcode.eval.api import EvalConfig, HumanEvalOptions, eval_humaneval

    assert cli("fetch", "humaneval", "--limit", "4").exit_code == 0
    config = {"model": "oracle", "jobs": 2}
    eval_humaneval(EvalConfig(**config, out=tmp_path / "local"), HumanEvalOptions())
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_item_worker, args=(killed, stop))
    killer.start()
    try:
        with executor.active(executor.RayExecutor(max_retries=0)), pytest.raises(SandboxError, match="rerun"):
            eval_humaneval(EvalConfig(**config, out=tmp_path / "ray"), HumanEvalOptions())
    finally:
        stop.set()
        killer.join()
    assert killed
    kept = _untimed(tmp_path / "ray" / "results.jsonl")
    assert len(kept) < 4
    with executor.active(executor.RayExecutor()):
        rerun = eval_humaneval(EvalConfig(**config, out=tmp_path / "ray"), HumanEvalOptions())
    assert rerun.skipped == len(kept) and rerun.ran == 4 - len(kept)
    assert _untimed(tmp_path / "ray" / "results.jsonl") == _untimed(tmp_path / "local" / "results.jsonl")


@pytest.mark.integration
def test_bug_validation_and_eval_swe_on_ray_write_what_the_local_run_writes(ray_cluster, cli, tmp_path):
    _local_sandbox_or_skip()
    from hrmcode.data.bugs import repo_tasks
    from tests.synth.conftest import MINIPKG, commit_tree

    repo = tmp_path / "minipkg"
    shutil.copytree(MINIPKG, repo)
    commit_tree(repo, "fixture")
    options = {"test_cmd": "python3 -m pytest -q tests", "max_bugs": 2, "jobs": 2}
    local = repo_tasks(str(repo), **options, out=tmp_path / "local")
    with executor.active(CountingRay()) as on_cluster:
        on_ray = repo_tasks(str(repo), **options, out=tmp_path / "ray", redo=True)  # redo: test every candidate again
    assert on_cluster.items == 2 and on_ray.stats["resumed"] == 0
    assert on_ray.stats["kept"] == local.stats["kept"] >= 1
    for file in ("tasks.jsonl", "instances.jsonl"):
        assert (on_ray.artifact.path / file).read_bytes() == (local.artifact.path / file).read_bytes(), file
    # eval swe on those tasks: the agent's sessions and the grading run on the cluster, the driver writes
    for name, extra in (("local", ()), ("ray", ("--executor", "ray"))):
        result = cli("eval", "swe", "--tasks", local.artifact.path, "--model", "oracle", "-j", "2",
                     "-o", tmp_path / f"swe-{name}", *extra)
        assert result.exit_code == 0, result.stderr
    for file in ("results.jsonl", "trajectories.jsonl"):
        assert _untimed(tmp_path / "swe-ray" / file) == _untimed(tmp_path / "swe-local" / file), file
    assert all(r["resolved"] for r in _untimed(tmp_path / "swe-ray" / "results.jsonl"))
    for file in ("predictions.jsonl", "report.json"):
        assert (tmp_path / "swe-ray" / file).read_bytes() == (tmp_path / "swe-local" / file).read_bytes(), file


@pytest.mark.integration
def test_a_checkpoint_model_is_loaded_on_the_worker(on_ray, tmp_path):
    """A loaded model cannot be pickled: the worker gets the checkpoint's path and loads it itself."""
    _local_sandbox_or_skip()
    from hrmcode.data.sources import fetch
    from hrmcode.eval.api import EvalConfig, HumanEvalOptions, eval_humaneval
    from tests.quantize.tiny import make_tiny_model

    model = make_tiny_model(tmp_path)
    fetch("humaneval", limit=2)
    config = {"model": f"checkpoint:{model}", "jobs": 2, "max_tokens": 16}
    with executor.active(executor.LocalExecutor(2)):
        eval_humaneval(EvalConfig(**config, out=tmp_path / "local"), HumanEvalOptions())
    eval_humaneval(EvalConfig(**config, out=tmp_path / "ray"), HumanEvalOptions())
    assert _untimed(tmp_path / "ray" / "results.jsonl") == _untimed(tmp_path / "local" / "results.jsonl")


@pytest.mark.docker
def test_docker_sandboxes_are_rebuilt_on_the_worker(ray_cluster, cli, tmp_path):
    from tests._sandboxes import real_sandbox

    real_sandbox("docker")  # skips (or fails under HRMCODE_REQUIRE_DOCKER=1) without a Docker engine
    assert cli("fetch", "humaneval", "--limit", "2").exit_code == 0
    for name, extra in (("local", ()), ("ray", ("--executor", "ray"))):
        result = cli("eval", "humaneval", "--model", "oracle", "--backend", "docker", "-j", "2",
                     "-o", tmp_path / name, *extra)
        assert result.exit_code == 0, result.stderr
    assert _untimed(tmp_path / "ray" / "results.jsonl") == _untimed(tmp_path / "local" / "results.jsonl")
    assert all(r["correct"] == 1 for r in _untimed(tmp_path / "ray" / "results.jsonl"))
