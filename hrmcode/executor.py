"""Where per-item work runs: this machine's threads (the default) or a Ray cluster's sandbox slots.

One seam, ``Executor.map(fn, items, on_done)``, used by every per-item fan-out that runs code in a
sandbox (``sandbox.run_many``: repository bug validation and reference runs, validate's execution
checks; the eval runner: every ``eval`` benchmark including ``eval swe``) and, under Ray, by
synthesize's chunks (locally those stay on its process pool). ``fn(item, worker)`` runs once per item;
``worker`` is an id no other item running on the same machine holds at that moment, so sandboxes
started with ``worker=`` use separate uids and caches.

What every executor guarantees:

- ``on_done(index, result)`` is called in the caller's thread as each item finishes, so the caller
  appends results to its resumable logs itself: the driver writes every byte, in the order and
  format the local run writes them, and a rerun skips what was appended.
- The returned list is in input order.
- When an item raises, no further item starts; the items already running finish and get their
  ``on_done``; then the first error is raised (a task's own ``HrmcodeError`` unchanged).

``LocalExecutor(slots)``: ``slots`` threads in this process (``-j``).

``RayExecutor`` (``--executor ray``, ``pip install 'hrmcode[ray]'``): each item is a Ray task asking
for one ``sandbox_slot`` resource (and no CPU), so a node runs as many items at once as it declares
slots (``ray start --resources '{"sandbox_slot": N}'``). ``fn`` (with what it closes over) is
shipped once per run with ``ray.put``; results come back to the driver. A worker id is a per-node
lock file (``$TMPDIR/hrmcode-worker-slots/N.lock``, released by the kernel when a worker dies).
Ray retries a task whose worker process died (``max_retries``); when the retries are spent the run
stops with one line, and a rerun redoes only the items whose results were not appended.
Without ``--address`` it starts a one-machine cluster with ``slots`` sandbox slots for this run; a
process that has already called ``ray.init`` (tests, notebooks) is used as it is. A bad ``--address``
is one line (exit 2): a host that does not resolve, a port nothing accepts connections at, or one that does
not speak gRPC within 5 s, before ``ray.init`` is tried (which would wait on it for minutes); a gRPC port
that is no Ray head there after Ray's own retries (about 20 s), whose log lines are dropped.

Objects that cannot be pickled as they are (a docker client, a loaded model, an HTTP client) are
sent as what rebuilds them on the worker (``rebuilt_on_worker``, registered by their modules).

Not guaranteed: that a worker sees the driver's files or environment variables (each node needs
hrmcode installed and, for sandboxes, its toolchains or docker images; jobs carry their inputs, but a
path one reads, such as a ``checkpoint:`` model's, must exist on the node), or that every object a
job closes over can be sent at all (one that cannot is a one-line error before anything runs).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import fcntl
import os
import queue
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hrmcode.errors import HrmcodeError, SandboxError, ToolchainMissing, UsageError
from hrmcode.options import option

T = TypeVar("T")
EXECUTORS = ("local", "ray")
SLOT_RESOURCE = "sandbox_slot"
TASK_NAME = "hrmcode-item"  # a Ray worker running an item is titled ray::hrmcode-item
WORKER_SLOTS = 1024  # per-node worker ids a Ray run hands out (far above any node's slot count)
ADDRESS_PROBE_S = 5.0  # how long --address's host may take to accept a connection before the run is refused
ADDRESS_HINT = ("check --address: HOST:PORT of the head's GCS (ray start --head prints it; 6379 by default), or "
                "ray://HOST:10001 for Ray Client")


@dataclass(frozen=True)
class ExecutorOptions:
    """Where ``synthesize``, ``validate`` and ``eval`` run their per-item sandbox work."""

    executor: str = option("local", "Where per-item sandbox work runs: local (this machine, -j threads) or ray "
                                    "(a Ray cluster's sandbox_slot resources; needs hrmcode's ray extra).")
    address: str | None = option(None, "With --executor ray: the cluster to join (HOST:6379, or ray://HOST:10001); "
                                       "default: start one on this machine with -j slots.")

    @classmethod
    def take(cls, options: dict[str, Any]) -> ExecutorOptions:
        """Remove this record's fields from a command's ``options`` and return them as a record."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: options.pop(name) for name in names if name in options})

    def check(self) -> None:
        if self.executor not in EXECUTORS:
            raise UsageError(f"unknown --executor {self.executor!r}", f"choose one of: {', '.join(EXECUTORS)}")
        if self.address is not None and self.executor != "ray":
            raise UsageError("--address is for --executor ray", "add --executor ray, or drop --address")


class Executor(Protocol):
    slots: int  # how many items run at once

    def map(self, fn: Callable[[Any, int], T], items: Sequence[Any],
            on_done: Callable[[int, T], None] | None = None) -> list[T]: ...


class LocalExecutor:
    """``slots`` threads in this process; worker ids ``range(slots)``."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = max(1, slots)

    def map(self, fn: Callable[[Any, int], T], items: Sequence[Any],
            on_done: Callable[[int, T], None] | None = None) -> list[T]:
        results: dict[int, T] = {}

        def finished(index: int, result: T) -> None:
            results[index] = result
            if on_done is not None:
                on_done(index, result)

        if self.slots == 1:
            for index, item in enumerate(items):
                finished(index, fn(item, 0))
            return [results[i] for i in range(len(items))]
        free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for worker in range(self.slots):
            free.put(worker)

        def call(item: Any) -> T:
            worker = free.get()
            try:
                return fn(item, worker)
            finally:
                free.put(worker)

        with ThreadPoolExecutor(self.slots, thread_name_prefix="hrmcode-item") as pool:
            futures: dict[Future[T], int] = {pool.submit(call, item): i for i, item in enumerate(items)}
            _drain(futures, finished)
        return [results[i] for i in range(len(items))]


def _drain(futures: dict[Future, int], finished: Callable[[int, Any], None]) -> None:
    """Hand each finished future to ``finished`` in this thread; on the first error cancel what has not
    started, let the running ones finish, then raise it."""
    failure: BaseException | None = None
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            if future.cancelled():
                continue
            error = future.exception()
            if error is not None:
                if failure is None:
                    failure = error
                    for other in pending:
                        other.cancel()
                continue
            try:
                finished(futures[future], future.result())
            except BaseException:  # the caller's own step failed (a full disk): start nothing more
                for other in pending:
                    other.cancel()
                raise
    if failure is not None:
        raise failure


# -- Ray ---------------------------------------------------------------------------------------------
# Classes that cannot be pickled as they are (a docker client's socket) register how a worker rebuilds
# them: (class, state(obj), rebuild(state)); RayExecutor hands them to Ray's serializer registry.
_REBUILT_ON_WORKER: list[tuple[type, Callable[[Any], Any], Callable[[Any], Any]]] = []


def rebuilt_on_worker(cls: type, state: Callable[[Any], Any], rebuild: Callable[[Any], Any]) -> None:
    """Send a ``cls`` object to Ray workers as ``state(obj)`` and rebuild it there with ``rebuild(state)``."""
    _REBUILT_ON_WORKER.append((cls, state, rebuild))


@contextlib.contextmanager
def worker_slot(root: Path | None = None) -> Iterator[int]:
    """Hold the lowest free per-machine worker id (a lock file) while the block runs."""
    root = root or Path(tempfile.gettempdir()) / "hrmcode-worker-slots"
    root.mkdir(parents=True, exist_ok=True)
    for slot in range(WORKER_SLOTS):
        fd = os.open(root / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield slot
        finally:
            os.close(fd)  # closing releases the lock; a killed worker's lock goes with its process
        return
    raise SandboxError(f"all {WORKER_SLOTS} worker slots under {root} are taken", "give this node fewer sandbox_slot")


def _run_item(fn: Callable[[Any, int], T], item: Any) -> T:
    """A Ray task's body on a worker: the item under this node's worker id."""
    with worker_slot() as worker:
        return fn(item, worker)


@contextlib.contextmanager
def _stderr_held() -> Iterator[None]:
    """Hold what is written to file descriptor 2 while the block runs (Ray's core logs each retry of an
    address that answers but is no Ray head there, twenty lines before its error): written out after a
    block that succeeds, dropped when it raises (its error says it in one line)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if ok:
                held.seek(0)
                text = held.read()
                if text:
                    os.write(2, text)


def probe_address(address: str, timeout_s: float = ADDRESS_PROBE_S) -> None:
    """Refuse at once an ``--address`` whose host does not resolve or whose port accepts no connection
    (``ray.init`` would retry it for minutes, printing its retries). ``auto``/``local`` and what does
    not parse as ``[ray://]HOST:PORT`` are left to Ray, which refuses the latter at once."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except socket.gaierror as exc:
        raise UsageError(f"cannot join the Ray cluster at {address}: host {host} does not resolve ({exc.strerror})",
                         ADDRESS_HINT) from None
    except OSError as exc:
        reason = "no answer in %.0f s" % timeout_s if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UsageError(f"cannot join the Ray cluster at {address}: nothing accepts connections at {host}:{port} "
                         f"({reason})", ADDRESS_HINT) from None
    if os.environ.get("RAY_USE_TLS", "0").lower() not in ("0", "false", ""):
        return  # a TLS cluster: a plain channel cannot tell
    try:
        import grpc  # Ray's own dependency: both a Ray head's GCS and Ray Client's server speak gRPC
    except ImportError:
        return
    # no proxy, as Ray's own channels (grpc.enable_http_proxy=0): through $http_proxy a real head looked like no gRPC
    channel = grpc.insecure_channel(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}",
                                    options=[("grpc.enable_http_proxy", 0)])
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:  # an HTTP server, a database...: ray.init would wait on it for minutes
        raise UsageError(f"cannot join the Ray cluster at {address}: {host}:{port} accepts connections but does not "
                         "speak gRPC, so it is no Ray head", ADDRESS_HINT) from None
    finally:
        channel.close()


def _import_ray() -> Any:
    try:
        import ray  # the optional extra; only --executor ray needs it
    except ImportError:
        raise ToolchainMissing("--executor ray needs Ray, which is not installed",
                               "pip install 'hrmcode[ray]' (or use --executor local)") from None
    return ray


class RayExecutor:
    """Items as Ray tasks, one ``sandbox_slot`` each (see the module docstring)."""

    def __init__(self, address: str | None = None, slots: int = 1, max_retries: int = 2) -> None:
        self.ray = _import_ray()
        self.max_retries = max_retries
        self.started = False
        if not self.ray.is_initialized():
            init = dict(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
            if address is not None:
                probe_address(address)
            try:
                # joining: hold fd 2 (no process is started that would inherit it); starting one: leave it
                held = _stderr_held() if address is not None else contextlib.nullcontext()
                with warnings.catch_warnings(), held:
                    warnings.simplefilter("ignore")  # Ray Client's timeout also warns: the error below says it once
                    if address is None:
                        self.ray.init(num_cpus=max(1, slots), resources={SLOT_RESOURCE: max(1, slots)}, **init)
                    else:
                        self.ray.init(address=address, **init)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UsageError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}",
                                 "check --address; a cluster with token authentication (ray start's default) also "
                                 "needs RAY_AUTH_MODE=token and its token here (~/.ray/auth_token or RAY_AUTH_TOKEN)"
                                 ) from None
            self.started = True
        self.slots = int(self.ray.cluster_resources().get(SLOT_RESOURCE, 0))
        if self.slots < 1:
            raise UsageError(f"the Ray cluster has no {SLOT_RESOURCE} resources, so no sandbox can run on it",
                             f"start its nodes with ray start --resources '{{\"{SLOT_RESOURCE}\": N}}' (N sandboxes "
                             "per node)")
        self._task = self.ray.remote(_run_item).options(name=TASK_NAME, num_cpus=0, resources={SLOT_RESOURCE: 1},
                                                         max_retries=max_retries)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()

    def map(self, fn: Callable[[Any, int], T], items: Sequence[Any],
            on_done: Callable[[int, T], None] | None = None) -> list[T]:
        if not items:
            return []
        for cls, state, rebuild in _REBUILT_ON_WORKER:  # registered by modules imported since __init__ too
            self.ray.util.register_serializer(cls, serializer=state, deserializer=rebuild)
        try:
            fn_ref = self.ray.put(fn)
        except Exception as exc:  # noqa: BLE001 - any pickling failure, said in one line
            raise UsageError(f"this work cannot be sent to Ray workers: {str(exc).splitlines()[0]}",
                             "use --executor local") from None
        results: dict[int, T] = {}
        waiting = list(range(len(items)))[::-1]  # popped from the end: input order
        running: dict[Any, int] = {}
        failure: BaseException | None = None
        window = 2 * self.slots  # submitted ahead of the slots, so a failure stops the rest from starting
        while waiting or running:
            while failure is None and waiting and len(running) < window:
                index = waiting.pop()
                running[self._task.remote(fn_ref, items[index])] = index
            if not running:
                break
            done, _ = self.ray.wait(list(running), num_returns=1)
            for ref in done:
                index = running.pop(ref)
                try:
                    result = self.ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - translated to the task's own error or one line
                    if failure is None:
                        failure = self._error(exc, index)
                    continue
                results[index] = result
                if on_done is not None:
                    on_done(index, result)
        if failure is not None:
            raise failure
        return [results[i] for i in range(len(items))]

    def _error(self, exc: BaseException, index: int) -> BaseException:
        exceptions = self.ray.exceptions
        if isinstance(exc, exceptions.RayTaskError) and isinstance(exc.cause, BaseException):
            return exc.cause  # the job's own exception (an HrmcodeError keeps its message and hint)
        if isinstance(exc, HrmcodeError):
            return exc
        return SandboxError(f"item {index} was lost on the Ray cluster: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "),
                            "rerun the same command: finished items are kept and skipped")


_ACTIVE: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("hrmcode_executor", default=None)


def chosen() -> Executor | None:
    """The executor a ``using`` (or ``active``) block chose; None outside one (a step's own local default)."""
    return _ACTIVE.get()


def current(slots: int) -> Executor:
    """The executor a ``using`` block chose, else ``slots`` local threads."""
    return chosen() or LocalExecutor(slots)


@contextlib.contextmanager
def using(options: ExecutorOptions, slots: int = 1) -> Iterator[Executor]:
    """Run the block's per-item fan-outs on ``options``' executor (``slots``: -j, a local cluster's size)."""
    options.check()
    if options.executor == "local":
        yield LocalExecutor(slots)
        return
    ray_executor = RayExecutor(options.address, slots)
    try:
        with active(ray_executor):
            yield ray_executor
    finally:
        ray_executor.close()


@contextlib.contextmanager
def active(executor: Executor) -> Iterator[Executor]:
    """Run the block's per-item fan-outs (``current``) on ``executor``."""
    token = _ACTIVE.set(executor)
    try:
        yield executor
    finally:
        _ACTIVE.reset(token)
