"""Running untrusted code: one protocol (``Sandbox.run``), two backends, six toolchains.

``get_sandbox("local"|"docker", unsafe_no_sandbox=False)`` returns a backend;
``backend_status()`` says which backends work here; ``run_many(jobs, n_workers)`` runs jobs in
parallel (threads, or Ray tasks under ``--executor ray``: ``hrmcode/executor.py``), each with its own
worker id (and so its own uid and caches); ``toolchains.run_tests`` builds and tests an exercise tree
in one language.

What each backend guarantees:

- ``local`` (bubblewrap, the default): no network (a new network namespace with only loopback); the command
  sees only ``/usr``, a few toolchain ``/etc`` entries, the toolchains read-only under
  ``/opt/hrmcode`` (with ``Sandbox.with_python_env``, a repository's test dependencies at
  ``/opt/hrmcode/env``, read-only too), its private ``/work`` and ``/tmp`` — not ``/root``, ``/home``, the project
  checkout or ``/etc/shadow``; it runs as an unprivileged uid with no capabilities and
  ``no_new_privs`` (setuid binaries cannot raise it); rlimits on address space, CPU time, processes,
  file size and open files; a wall-clock timeout that kills every process of the run (PID
  namespace: nothing, not even a double-forked daemon, outlives it); when hrmcode runs as root,
  writes capped in total by ``Limits.disk_mb`` and ``Limits.inodes``, and memory summed over the
  run by a cgroup where one can be made. Details and the weaker non-root mode: ``local.py``.
- ``docker``: the same run inside a fresh container of an image hrmcode builds from its own
  Dockerfiles, ``network_mode=none``, memory and pids limits, a non-root user, all capabilities
  dropped, labelled ``hrmcode.sandbox=1``, stopped by its own deadline even if hrmcode is killed,
  and always removed (a crash's leftovers by the next docker sandbox start, or ``hrmcode sandbox
  clean``). Details: ``docker_backend.py``.
- ``unsafe`` (only with ``unsafe_no_sandbox=True`` when bwrap is missing): a plain subprocess with
  rlimits and a timeout on its process group. It isolates nothing.

Sessions (``Sandbox.session(files, limits)``, ``session.py``): one work dir across many commands
under the same profile, for an agent acting in a repository. Files persist between commands;
processes do not (each command's die when its ``exec`` returns); the work dir is capped as a run's.
Local runs each command as a new bubblewrap over the session's run dir; docker as a ``docker exec``
in one warm container; unsafe in a plain temporary directory.

Both isolating backends share their plumbing (uid slots, run directories, killing a uid's
processes, reading results, sweeping what a killed hrmcode left) through ``runs.py``, which states
what that plumbing guarantees.

Not guaranteed by any backend: defence against kernel or container-runtime exploits, a memory cap
summed over processes where no memory cgroup can be made (local, then RLIMIT_AS per process only),
identical timings under load, or that a test suite is itself correct.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from hrmcode import executor
from hrmcode.errors import ToolchainMissing, UsageError
from hrmcode.reporting import reporter
from hrmcode.sandbox import docker_backend, local, runs
from hrmcode.sandbox.base import ExecResult, Limits, PythonEnv, Sandbox, Session
from hrmcode.sandbox.hostpaths import tool_version

__all__ = ["ExecResult", "Limits", "Sandbox", "Session", "get_sandbox", "backend_status", "run_many", "BACKENDS"]

BACKENDS = ("local", "docker")
T = TypeVar("T")


def get_sandbox(backend: str = "local", unsafe_no_sandbox: bool = False) -> Sandbox:
    """The backend named ``backend``. Missing bwrap is a ``ToolchainMissing`` unless
    ``unsafe_no_sandbox``, which falls back to a plain subprocess and says so on stderr."""
    if backend == "local":
        if local.bwrap_path() is None:
            if not unsafe_no_sandbox:
                raise ToolchainMissing(
                    "bubblewrap (bwrap) is not installed; refusing to run untrusted code without a sandbox",
                    "apt-get install bubblewrap (or scripts/setup-toolchains.sh); --unsafe-no-sandbox runs it unisolated",
                )
            reporter().warn("UNSAFE: bubblewrap is missing and --unsafe-no-sandbox was given: code runs with NO "
                            "isolation, as your user, with network access")
            return local.UnsafeSandbox()
        return local.BubblewrapSandbox()
    if backend == "docker":
        return docker_backend.DockerSandbox()
    raise UsageError(f"unknown sandbox backend {backend!r}", f"choose one of: {', '.join(BACKENDS)}")


def backend_status() -> dict[str, str]:
    """One line per backend: ``ok (...)`` or ``unavailable: <why>``. Read-only, bounded probes."""
    status: dict[str, str] = {}
    if local.bwrap_path() is None:
        status["local"] = "unavailable: bwrap not installed (apt-get install bubblewrap)"
    else:
        version = (tool_version(["bwrap", "--version"]) or "bubblewrap").strip()
        mode = "root, per-worker uids" if runs.is_root() else "user namespace"
        status["local"] = f"ok ({version}, {mode})"
    status["docker"] = docker_backend.status_line()
    return status


def run_many(jobs: Iterable[Callable[[int], T]], n_workers: int = 1,
             on_done: Callable[[int, T], None] | None = None) -> list[T]:
    """Run ``job(worker)`` for every job; results in input order.

    On the executor a ``hrmcode.executor.using`` block chose (``--executor ray``: Ray tasks, one
    sandbox slot each), else on ``n_workers`` threads. Each running job holds a worker id no other
    job running on its machine holds, so sandboxes started with ``worker=`` never share a uid or a
    per-worker cache. ``on_done(index, result)`` is called in the caller's thread as each job
    finishes (for progress and resumable logs); a job that raises stops the rest from starting."""
    return executor.current(n_workers).map(_call, list(jobs), on_done)


def _call(job: Callable[[int], T], worker: int) -> T:
    return job(worker)


def _docker_state(sandbox: docker_backend.DockerSandbox) -> PythonEnv | None:
    return sandbox.python_env


def _docker_on_worker(python_env: PythonEnv | None) -> docker_backend.DockerSandbox:
    """A docker sandbox rebuilt on a Ray worker: its own client to that node's engine."""
    sandbox = docker_backend.DockerSandbox()
    return sandbox.with_python_env(python_env) if python_env is not None else sandbox


# a docker client holds a socket: a Ray worker gets the sandbox's Python environment and builds its own
executor.rebuilt_on_worker(docker_backend.DockerSandbox, _docker_state, _docker_on_worker)
