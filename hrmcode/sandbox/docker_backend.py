"""The ``docker`` backend: one fresh container per run, from an image hrmcode builds itself.

Images: ``hrmcode-base:bookworm`` is ``debian:bookworm-slim`` pulled from a registry when one is
reachable, else a ``debootstrap --variant=minbase bookworm`` tree imported with ``docker import``
(needs root and debootstrap); ``hrmcode-sandbox:<hash of the Dockerfile dir>`` is built on top from
``hrmcode/sandbox/docker/Dockerfile`` with every toolchain (apt, PyPI and npm only). ``build_images``
does both; ``DockerSandbox`` builds them on first use. A repository's test dependencies get an image of
their own on top, ``hrmcode-env-<id>:<sandbox tag>-<recipe>`` (``build_python_env_image``: pip runs at build
time, never in a run), which ``with_python_env`` runs instead, its packages in the read-only root.

Each run: ``network_mode="none"`` (a private namespace with only loopback; ``bridge`` for
``Limits.network="host"``), memory limit = memory+swap limit on the whole container (an OOM kill
sets ``memory_exceeded``), pids limit, a non-root uid (one per worker when hrmcode
runs as root), every capability dropped, ``no-new-privileges``, a read-only root filesystem;
writable are only ``/work`` and ``/cache/go`` (host directories: a size-capped tmpfs per run when
hrmcode is root, made by ``runs.run_dir`` as for the local backend, so files go in and results come
out without ``docker cp``) and ``/tmp`` (a tmpfs capped in size and in files, ``Limits.inodes``). The Go cache is an overlay over a read-only seed
built once by this backend. Output is streamed with the same caps as the local backend and never
stored by Docker (log driver ``none``). Containers are labelled ``hrmcode.sandbox=1`` and with the pid
and start time of the hrmcode process that made them, and removed in a ``finally``. A container
outlives a SIGKILLed hrmcode (the engine owns it), so each also carries its own deadline: its
command runs under ``timeout -s KILL`` (``Limits.timeout_s`` + ``INNER_GRACE_S``) below the init
process, and when that fires the container stops, and every process in it dies. ``clean()``, run
by every new ``DockerSandbox`` and by ``hrmcode sandbox clean``, removes containers whose hrmcode
process is gone, never another live process's running sandbox.

A session (``Sandbox.session``; ``session.py``) is ONE warm container with the same profile whose
init runs ``sleep infinity`` as another uid (``nobody``); each command is a ``docker exec`` as the
session's uid under its own RLIMIT_CPU and ``timeout -s KILL``, after which every process of that uid
in the container is killed: by the command's wrapper (``kill -9 -1``), and again from this host by
uid and PID namespace (a ``kill -9 -1`` exec where the container's namespace cannot be read), so a
command that kills its wrapper still leaves nothing behind; a host-side deadline
(``SESSION_GRACE_S`` after the command's) does the same if the inner one did not. Files go in and
out through the bind-mounted run dir on this host, never ``docker cp``: nothing is parsed from the
container. The container is removed at ``close``; a SIGKILLed owner's by the next ``clean()`` (until
then it only sleeps: a command in flight stops at its own ``timeout``).

Not guaranteed: isolation beyond what Docker and the kernel give; a remote engine (``DOCKER_HOST``
on another machine) is not supported, because work dirs are bind-mounted from this host.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from hrmcode.errors import SandboxError, ToolchainMissing
from hrmcode.reporting import reporter
from hrmcode.sandbox import _fs, hostpaths, runs
from hrmcode.sandbox._proc import CappedOutput, Finished
from hrmcode.sandbox.base import ENV_MOUNT, ExecResult, Limits, PythonEnv, RunRequest, Sandbox
from hrmcode.sandbox.session import WorkDirSession

LABEL = "hrmcode.sandbox"
OWNER_LABEL = "hrmcode.pid"  # the hrmcode process that created the container
OWNER_START_LABEL = "hrmcode.pid_start"  # and its start time: a reused pid is not the owner
INNER_GRACE_S = 5  # the container's own deadline is this long after hrmcode's
BASE_IMAGE = "hrmcode-base:bookworm"
DOCKERFILE_DIR = Path(__file__).resolve().parent / "docker"
DEBIAN_MIRROR = os.environ.get("HRMCODE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
ENV = {
    "PATH": "/opt/go/bin:/node_modules/.bin:/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp", "TMPDIR": "/tmp", "USER": "sandbox", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "HRMCODE_SANDBOX": "docker",
    "GOROOT": "/opt/go", "GOCACHE": "/cache/go", "GOPATH": "/tmp/go", "GOPROXY": "off", "GOTOOLCHAIN": "local",
    "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0", "GOTELEMETRY": "off",
    "CARGO_HOME": "/tmp/cargo-home", "CARGO_TARGET_DIR": "/tmp/target", "CARGO_INCREMENTAL": "0",
    "CARGO_TERM_COLOR": "never", "NO_COLOR": "1", "FORCE_COLOR": "0",
}


def image_tag() -> str:
    digest = hashlib.sha256()
    for path in sorted(DOCKERFILE_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"hrmcode-sandbox:{digest.hexdigest()[:12]}"


def _client(timeout: int = 10):
    try:
        import docker
    except ImportError:
        raise ToolchainMissing("the docker Python SDK is not installed", "pip install docker==7.1.0") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine means the same thing
        raise ToolchainMissing(f"no Docker engine reachable ({type(exc).__name__})",
                               "scripts/setup-toolchains.sh --docker installs and starts one") from None
    return client


def unavailable_reason() -> str | None:
    """Why the docker backend cannot run here, or None when an engine answers."""
    try:
        _client(timeout=5)
    except ToolchainMissing as exc:
        return exc.message
    return None


def status_line() -> str:
    reason = unavailable_reason()
    if reason is not None:
        return f"unavailable: {reason}"
    client = _client(timeout=5)
    version = client.version().get("Version", "?")
    images = [tag for tag in (BASE_IMAGE, image_tag()) if _has_image(client, tag)]
    state = "image built" if image_tag() in images else "image not built yet (hrmcode sandbox build)"
    return f"ok (engine {version}, {state})"


def _has_image(client, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _base_from_registry(client) -> bool:
    try:
        image = client.images.pull("debian", tag="bookworm-slim")
    except Exception as exc:  # noqa: BLE001 - unreachable registry, DNS, auth: all mean "use debootstrap"
        reporter().log(f"registry unreachable ({type(exc).__name__}); building the base image with debootstrap")
        return False
    image.tag(*BASE_IMAGE.split(":"))
    return True


def _base_from_debootstrap(client) -> None:
    if shutil.which("debootstrap") is None:
        raise ToolchainMissing("no registry reachable and debootstrap is not installed",
                               "apt-get install debootstrap (scripts/setup-toolchains.sh --docker)")
    if os.geteuid() != 0:
        raise SandboxError("building the base image with debootstrap needs root", "run `sudo hrmcode sandbox build`")
    with tempfile.TemporaryDirectory(prefix="hrmcode-debootstrap-") as tmp:
        rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        reporter().log(f"debootstrap --variant=minbase bookworm from {DEBIAN_MIRROR} (a few minutes)")
        proc = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SandboxError(f"debootstrap failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}",
                               f"check that {DEBIAN_MIRROR} is reachable (HRMCODE_DEBIAN_MIRROR)")
        # Equivalent of `tar -C DIR -c . | docker import - hrmcode-base:bookworm`.
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        repository, tag = BASE_IMAGE.split(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)


def _extra_ca_certificates() -> str:
    """PEM certificates for the image build: $HRMCODE_DOCKER_CA_FILE, else the host's CA bundle
    (so builds work behind the same TLS-intercepting proxy as the host), else none."""
    for candidate in (os.environ.get("HRMCODE_DOCKER_CA_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text(encoding="utf-8", errors="replace")
    return ""


def build_images(rebuild: bool = False) -> dict[str, str]:
    """Make sure the base and sandbox images exist; returns {tag: how it was obtained}."""
    client = _client(timeout=600)
    done: dict[str, str] = {}
    if rebuild or not _has_image(client, BASE_IMAGE):
        if _base_from_registry(client):
            done[BASE_IMAGE] = "pulled debian:bookworm-slim"
        else:
            _base_from_debootstrap(client)
            done[BASE_IMAGE] = "debootstrap + docker import"
    else:
        done[BASE_IMAGE] = "present"
    tag = image_tag()
    if rebuild or not _has_image(client, tag):
        reporter().log(f"building {tag} from {DOCKERFILE_DIR} (apt, PyPI, npm; several minutes)")
        try:
            with tempfile.TemporaryDirectory(prefix="hrmcode-docker-context-") as context:
                shutil.copytree(DOCKERFILE_DIR, context, dirs_exist_ok=True)
                (Path(context) / "extra-ca.crt").write_text(_extra_ca_certificates())
                _, logs = client.images.build(path=context, tag=tag, rm=True, forcerm=True, pull=False)
            for chunk in logs:
                line = (chunk.get("stream") or "").strip()
                if line:
                    reporter().log(line)
        except Exception as exc:  # noqa: BLE001 - BuildError and APIError carry the reason
            raise SandboxError(f"docker build of {tag} failed: {' '.join(str(exc).split())[:300]}",
                               "check network access to the Debian mirror, PyPI and npm") from None
        done[tag] = "built"
    else:
        done[tag] = "present"
    return done


# A repository's test dependencies on top of the sandbox image (``build_python_env_image``): pip may not
# replace the image's pytest, so what pip installed beside it (its dependencies) are the constraints
# (Debian's own python3-* packages are not: the environment comes before them on PYTHONPATH).
ENV_DOCKERFILE = """FROM {base}
COPY . /tmp/hrmcode-env
RUN python3 -m pip freeze --all --path "$(python3 -c 'import os, pytest; print(os.path.dirname(os.path.dirname(pytest.__file__)))')" \\
      | grep -E '^[A-Za-z0-9._-]+==' > /tmp/hrmcode-env/sandbox-constraints.txt \\
 && python3 -m pip install --no-cache-dir --break-system-packages --disable-pip-version-check --no-input \\
      --only-binary :all: --target {mount} -r /tmp/hrmcode-env/requirements.txt -c /tmp/hrmcode-env/sandbox-constraints.txt \\
 && rm -rf /tmp/hrmcode-env
LABEL hrmcode.sandbox.image=1 hrmcode.environment={env_id}
"""


def image_present(tag: str) -> bool:
    return _has_image(_client(), tag)


def python_env_image_tag(env_id: str) -> str:
    """``hrmcode-env-<id>:<the sandbox image's tag>-<recipe>``: a rebuilt sandbox image, or another
    ``ENV_DOCKERFILE``, gets env images of its own."""
    recipe = hashlib.sha256(ENV_DOCKERFILE.encode()).hexdigest()[:6]
    return f"hrmcode-env-{env_id}:{image_tag().split(':', 1)[1]}-{recipe}"


def build_python_env_image(env_id: str, context: Path) -> str:
    """The image of a Python environment, built FROM the sandbox image (built first when missing) and
    reused when present: ``context`` holds ``requirements.txt`` (a pip requirements file whose local
    ``--find-links`` directories are under ``/tmp/hrmcode-env``, where ``context`` is copied), installed
    with pip at build time (builds reach the package index; runs never do) into ``ENV_MOUNT``."""
    tag = python_env_image_tag(env_id)
    client = _client(timeout=900)
    if _has_image(client, tag):
        return tag
    if not _has_image(client, image_tag()):
        build_images()
    (context / "Dockerfile").write_text(ENV_DOCKERFILE.format(base=image_tag(), mount=ENV_MOUNT, env_id=env_id))
    reporter().log(f"building {tag}: the environment's packages on {image_tag()}")
    try:
        _, logs = client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False)
        for chunk in logs:
            line = (chunk.get("stream") or "").strip()
            if line:
                reporter().log(line)
    except Exception as exc:  # noqa: BLE001 - BuildError and APIError carry the reason
        log = [(chunk.get("stream") or chunk.get("error") or "") for chunk in getattr(exc, "build_log", None) or []]
        errors = [line.strip() for text in log for line in text.splitlines() if "ERROR:" in line]
        why = errors[0] if errors else " ".join(str(exc).split())[-300:]  # pip's first ERROR line says what
        raise SandboxError(f"docker build of {tag} failed: {why[:300]}",
                           "check the requirements and network access to the package index from docker builds") from None
    return tag


def labelled_containers(owner_pid: int | None = None) -> list[str]:
    """Names of containers (any state) carrying hrmcode's label; only those ``owner_pid`` created if given."""
    client = _client()
    labels = [f"{LABEL}=1"] + ([f"{OWNER_LABEL}={owner_pid}"] if owner_pid is not None else [])
    return [c.name for c in client.containers.list(all=True, filters={"label": labels})]


def clean(client=None) -> list[str]:
    """Remove labelled containers whose hrmcode process is gone (leftovers of a crash, running or
    not); returns their names. Containers of live hrmcode processes (other runs on this host) are
    left alone. A container labelled without a start time is judged by its pid alone."""
    import docker

    client = client or _client()
    removed = []
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
        owner = container.labels.get(OWNER_LABEL, "")
        start = container.labels.get(OWNER_START_LABEL)
        if not runs.owner_gone(f"{owner}-{start}-container" if start else owner):
            continue
        with contextlib.suppress(docker.errors.NotFound):  # another process's sweep got there first
            container.remove(force=True)
        removed.append(container.name)
    return removed


def clean_env_images(client=None, every: bool = False) -> list[str]:
    """Remove Python environment images (``hrmcode-env-*``) that no current sandbox can use: built on
    another sandbox image or from another ``ENV_DOCKERFILE`` (``python_env_image_tag`` names both);
    with ``every``, all of them (the next run that needs one builds it again). An image a container
    still uses is kept (docker refuses to remove it). Returns the removed tags."""
    import docker

    client = client or _client()
    current = python_env_image_tag("x").split(":", 1)[1]
    removed = []
    for image in client.images.list(name="hrmcode-env-*"):
        for tag in image.tags:
            if not tag.startswith("hrmcode-env-") or (not every and tag.split(":", 1)[1] == current):
                continue
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):  # gone, or in use: kept
                client.images.remove(tag)
                removed.append(tag)
    return removed


class DockerSandbox(Sandbox):
    name = "docker"

    def __init__(self) -> None:
        self.client = _client()
        clean(self.client)  # what a SIGKILLed hrmcode left running
        self.image = image_tag()
        if not _has_image(self.client, self.image):
            build_images()
        self._image_id = self.client.images.get(self.image).id

    python_env: PythonEnv | None = None  # its packages are in ``self.image`` (``with_python_env``)

    def describe(self) -> str:
        return f"docker ({self.image})"

    def with_python_env(self, env: PythonEnv) -> DockerSandbox:
        if env.directory is not None and env.image is None:
            raise SandboxError("this Python environment was prepared for the local backend (a directory)",
                               "prepare it for docker: an image (build_python_env_image)")
        view = copy.copy(self)
        view.python_env = env
        if env.image is not None:
            view.image = env.image
        return view

    def run_env(self) -> dict[str, str]:
        """Every command's environment: ``ENV``, with the Python environment's ``PYTHONPATH``."""
        return {**ENV, "PYTHONPATH": self.python_env.pythonpath()} if self.python_env is not None else dict(ENV)

    def go_seed_path(self) -> Path:
        return hostpaths.go_seed_dir(f"docker-{self._image_id.split(':')[-1][:16]}")

    def compiler_id(self) -> str:
        return f"docker-{self._image_id}"

    def execute(self, request: RunRequest) -> ExecResult:
        limits = request.limits
        argv = runs.as_argv(request.command)
        root = runs.is_root()
        stdin = request.stdin
        with contextlib.ExitStack() as stack:
            uid = stack.enter_context(runs.uid_slot(request.worker)) if root else os.getuid()
            run = stack.enter_context(runs.run_dir(limits, uid, self.go_seed_path()))
            owner = uid if root else None
            _fs.write_tree(run.work, request.files, owner, owner)
            if stdin is not None:
                _fs.write_tree(run.root, {"stdin": stdin}, owner, owner)
                argv = ["/bin/sh", "-c", 'exec "$@" < /.hrmcode/stdin', "sh", *argv]
            # The container's own deadline, for when hrmcode is killed and its timer with it.
            argv = ["timeout", "-s", "KILL", str(int(limits.timeout_s) + INNER_GRACE_S), *argv]
            finished, oom = self._run_container(argv, run, limits, uid, {**self.run_env(), **request.env}, stdin is not None)
            result = runs.interpret(finished, limits, signal_offset=True)
            result.memory_exceeded = result.memory_exceeded or oom
            result.memory_cap = "docker (whole container)"
            runs.collect_files(result, run.work, request.collect, request.collect_binary, limits)
        return result

    def session(self, files: dict[str, str | bytes] | None = None, limits: Limits | None = None, *,
                worker: int = 0, env: dict[str, str] | None = None) -> DockerSession:
        return DockerSession(self, files or {}, limits or Limits(), worker, env)

    def _run_container(self, argv: list[str], run: runs.RunDir, limits: Limits, uid: int, env: dict[str, str],
                       has_stdin: bool) -> tuple[Finished, bool]:
        container = self.create_container(argv, run, limits, uid, env, has_stdin=has_stdin,
                                          cpu_s=runs.cpu_seconds(limits))
        try:
            return self._supervise(container, limits)
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True)

    def create_container(self, argv: list[str], run: runs.RunDir, limits: Limits, uid: int, env: dict[str, str], *,
                         has_stdin: bool = False, cpu_s: int | None):
        """A created (not started) container with the profile of the module docstring, running ``argv``
        as ``uid`` over ``run``'s directories; ``cpu_s`` None leaves RLIMIT_CPU to each exec."""
        from docker.types import LogConfig, Mount, Ulimit

        mounts = [Mount("/work", str(run.work), type="bind"), Mount("/cache/go", str(run.gocache), type="bind")]
        if has_stdin:
            mounts.append(Mount("/.hrmcode/stdin", str(run.root / "stdin"), type="bind", read_only=True))
        ulimits = [Ulimit(name="fsize", soft=limits.file_size_mb << 20, hard=limits.file_size_mb << 20),
                   Ulimit(name="nofile", soft=runs.NOFILE, hard=runs.NOFILE), Ulimit(name="core", soft=0, hard=0)]
        if cpu_s is not None:
            ulimits.insert(0, Ulimit(name="cpu", soft=cpu_s, hard=cpu_s + 1))
        return self.client.containers.create(
            self.image, command=argv, user=f"{uid}:{uid}", working_dir="/work", environment=env,
            network_mode="bridge" if limits.network == "host" else "none", mem_limit=f"{limits.memory_mb}m",
            memswap_limit=f"{limits.memory_mb}m", pids_limit=limits.processes, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], read_only=True, mounts=mounts,
            tmpfs={"/tmp": f"size={limits.disk_mb}m,nr_inodes={limits.inodes},exec,mode=1777"},
            ulimits=ulimits,
            labels={LABEL: "1", OWNER_LABEL: str(os.getpid()),
                    OWNER_START_LABEL: str(runs.process_start_time(os.getpid())), "hrmcode.worker": str(uid)},
            log_config=LogConfig(type="none"),
            hostname="sandbox", init=True,
        )

    def _supervise(self, container, limits: Limits) -> tuple[Finished, bool]:
        caps = {1: CappedOutput(limits.output_bytes), 2: CappedOutput(limits.output_bytes)}
        sock = container.attach_socket(params={"stdout": 1, "stderr": 1, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        start = time.monotonic()
        container.start()
        timed_out = threading.Event()

        def on_deadline() -> None:
            timed_out.set()
            with contextlib.suppress(Exception):
                container.kill()

        timer = threading.Timer(limits.timeout_s, on_deadline)
        timer.start()
        try:
            _read_frames(raw, caps)
            status = container.wait(timeout=max(limits.timeout_s + 30, 60))
        finally:
            timer.cancel()
            with contextlib.suppress(Exception):
                raw.close()
        wall = time.monotonic() - start
        container.reload()
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        code = int(status.get("StatusCode", -1))
        out, err = caps[1], caps[2]
        return Finished(code, out.value(), err.value(), out.truncated, err.truncated, wall, timed_out.is_set()), oom


SESSION_GRACE_S = 2.0  # the host kills a session command this long after its own deadline
KEEPER_UID = 65534  # the session container's init and sleeper: never the commands' uid, so their sweep spares it
# Kill every process of the calling uid but the caller (kill(-1) spares pid 1 and itself); until none is left.
_SWEEP = 'i=0; while kill -9 -1 2>/dev/null && [ "$i" -lt 1000 ]; do i=$((i + 1)); done'
# A session command: $0 the command, $1 its CPU seconds, $2 its wall seconds; then the sweep.
_SESSION_WRAPPER = ('ulimit -t "$1" || exit 125; timeout --foreground -s KILL "$2" /bin/bash -c "$0"; status=$?; '
                    + _SWEEP + '; exit "$status"')


class DockerSession(WorkDirSession):
    """One warm container over a run dir held across commands; each command is a ``docker exec``."""

    def __init__(self, sandbox: DockerSandbox, files: dict[str, str | bytes], limits: Limits, worker: int,
                 env: dict[str, str] | None) -> None:
        stack = contextlib.ExitStack()
        try:
            self.sandbox = sandbox
            root = runs.is_root()
            self.uid = stack.enter_context(runs.uid_slot(worker)) if root else os.getuid()
            self.run = stack.enter_context(runs.run_dir(limits, self.uid, sandbox.go_seed_path()))
            super().__init__("/work", self.run.work, self.uid if root else None, limits, env, stack)
            self.write_files(files)
            keeper = KEEPER_UID if self.uid != KEEPER_UID else KEEPER_UID - 1
            self.container = sandbox.create_container(["sleep", "infinity"], self.run, limits, keeper, ENV, cpu_s=None)
            stack.callback(_remove_container, self.container)
            self.container.start()
            self.container.reload()
            self._namespace = _pid_namespace(int(self.container.attrs["State"]["Pid"]))
        except BaseException:
            stack.close()
            raise

    def _exec(self, command: str, limits: Limits, env: dict[str, str]) -> ExecResult:
        api = self.sandbox.client.api
        argv = ["/bin/sh", "-c", _SESSION_WRAPPER, command, str(runs.cpu_seconds(limits)), f"{limits.timeout_s:g}"]
        try:
            exec_id = api.exec_create(self.container.id, argv, user=f"{self.uid}:{self.uid}", workdir="/work",
                                      environment={**self.sandbox.run_env(), **env})["Id"]
        except Exception as exc:  # noqa: BLE001 - a stopped or removed container, an engine gone
            raise SandboxError(f"the session's container {self.container.name} cannot run commands: "
                               f"{' '.join(str(exc).split())[:200]}", "close the session and open a new one") from None
        caps = {1: CappedOutput(limits.output_bytes), 2: CappedOutput(limits.output_bytes)}
        start = time.monotonic()
        deadline = start + limits.timeout_s + SESSION_GRACE_S
        killed = threading.Event()

        def on_deadline() -> None:
            killed.set()
            with contextlib.suppress(Exception):
                self._kill_leftovers()

        timer = threading.Timer(deadline - start, on_deadline)
        began = time.time()
        sock = api.exec_start(exec_id, socket=True)
        raw = getattr(sock, "_sock", sock)
        timer.start()
        try:
            _read_frames(raw, caps)
            code = self._exit_code(exec_id, deadline, killed)
        finally:
            timer.cancel()
            with contextlib.suppress(Exception):
                raw.close()
        wall = time.monotonic() - start
        self._kill_leftovers()  # also when the command killed its wrapper before the wrapper's own sweep
        timed_out = killed.is_set() or (code == 128 + 9 and wall >= limits.timeout_s)
        out, err = caps[1], caps[2]
        result = runs.interpret(Finished(code, out.value(), err.value(), out.truncated, err.truncated, wall, timed_out),
                                limits, signal_offset=True)
        result.memory_cap = "docker (whole container)"
        result.memory_exceeded = result.memory_exceeded or self._oom_kills(began, time.time()) > 0
        return result

    def _oom_kills(self, since: float, until: float) -> int:
        """The engine's ``oom`` events for the container between two wall-clock times (a command's
        OOM-killed child, even when the command itself exits 0)."""
        events = self.sandbox.client.api.events(since=f"{since:.9f}", until=f"{until:.9f}", decode=True,
                                                filters={"container": self.container.id, "event": "oom"})
        try:
            return sum(1 for _ in events)
        finally:
            events.close()

    def _exit_code(self, exec_id: str, deadline: float, killed: threading.Event) -> int:
        """The exec's exit status once it has exited: a command that closed its output keeps running
        after the stream ends, until it exits or the deadline's sweep kills it."""
        while True:
            info = self.sandbox.client.api.exec_inspect(exec_id)
            if not info.get("Running"):
                code = info.get("ExitCode")
                return int(code) if code is not None else 128 + 9
            if time.monotonic() > deadline and not killed.is_set():
                killed.set()
                self._kill_leftovers()
            time.sleep(0.01)

    def _kill_leftovers(self, wait_s: float = 10.0) -> None:
        """Kill every process of the session's uid in the container and wait until none is left: from
        this host (the engine is local: the work dir is bind-mounted), by uid and PID namespace, where
        the container's namespace can be read; else by a ``kill -9 -1`` exec inside."""
        if self._namespace is None:
            self._sweep_inside(wait_s)
            return
        until = time.monotonic() + wait_s
        while True:
            pids = [pid for pid in runs.pids_of(self.uid) if _pid_namespace(pid) == self._namespace]
            if not pids or time.monotonic() > until:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def _sweep_inside(self, wait_s: float) -> None:
        """``kill -9 -1`` as the session's uid in the container, until it is done; retried while the
        engine cannot start it (a fork bomb holding every pid of the container)."""
        api = self.sandbox.client.api
        until = time.monotonic() + wait_s
        while True:
            try:
                exec_id = api.exec_create(self.container.id, ["/bin/sh", "-c", _SWEEP],
                                          user=f"{self.uid}:{self.uid}")["Id"]
                api.exec_start(exec_id)  # returns at the end of its (empty) output: when it exits
                while api.exec_inspect(exec_id).get("Running") and time.monotonic() < until:
                    time.sleep(0.005)
                return
            except Exception as exc:  # noqa: BLE001 - pids exhausted, a gone container or engine
                if time.monotonic() > until:
                    raise SandboxError(f"cannot kill the session's processes in container {self.container.name}: "
                                       f"{' '.join(str(exc).split())[:200]}",
                                       "close the session; `hrmcode sandbox clean` removes what is left") from None
                time.sleep(0.05)


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:  # gone, a zombie, or not ours to inspect
        return None


def _remove_container(container) -> None:
    with contextlib.suppress(Exception):
        container.remove(force=True)


def _read_frames(sock, caps) -> None:
    """Docker's multiplexed attach stream: 8-byte header (stream id, size) then the payload."""
    buffer = b""
    while True:
        try:
            data = sock.recv(1 << 16)
        except OSError:
            return
        if not data:
            return
        buffer += data
        while len(buffer) >= 8:
            stream, size = buffer[0], int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + size:
                break
            payload, buffer = buffer[8:8 + size], buffer[8 + size:]
            if stream in caps:
                caps[stream].add(payload)
