"""Read-only git commands on a user's repository or clone: the one place hrmcode runs them.

``safe.directory`` is set for each command: git refuses a repository another user owns ("dubious
ownership") because its config could make git run that user's code; the commands run here run no
hook, and ``core.fsmonitor`` (the one setting that makes ``ls-files`` run a program) is turned off.
The user's own git config, and the repository, are never changed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hrmcode.errors import InputError, ToolchainMissing


def git_output(repo: Path, *args: str, hint: str, timeout_s: float = 60.0) -> bytes:
    """The stdout of ``git ARGS`` in ``repo``; a failure is a one-line ``InputError`` with ``hint``."""
    command = ["git", "-c", f"safe.directory={repo}", "-c", "core.fsmonitor=false", "-C", str(repo), *args]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s)
    except FileNotFoundError:
        raise ToolchainMissing("git is not installed", "apt-get install git") from None
    if done.returncode != 0:
        error = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"{repo}: git {' '.join(args)} failed: {error[-1] if error else done.returncode}", hint)
    return done.stdout
