"""Exception -> one-line message + exit code. ``HRMCODE_DEBUG=1`` prints the traceback too.

Every error a user can cause is an ``HrmcodeError`` subclass carrying its own message and
hint (what to run next) and its exit code (``errors.HrmcodeError.exit_code``, the one place exit
codes are defined); this table adds the prefix. An OSError that says an output cannot be written
(full disk, quota, read-only filesystem) and escaped the library's own mapping becomes an
``OutputError`` naming its file; missing files, permissions and file/directory mix-ups get their own
labels. Anything else is a bug: it gets a one-line summary and the debug hint, exit code 1.
"""

from __future__ import annotations

import errno
import functools
import os
import traceback
from collections.abc import Callable
from typing import Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from hrmcode import errors
from hrmcode.artifacts import workspace_root
from hrmcode.cli._common import workspace
from hrmcode.cli._output import out

# Most specific first: (type, label). The exit code is the error's own ``exit_code`` (hrmcode.errors), else 1.
ERROR_TABLE: list[tuple[type[BaseException], str]] = [
    (errors.UsageError, "usage"),
    (errors.CheckpointError, "bad checkpoint"),
    (errors.ArtifactError, "bad artifact"),
    (errors.InputError, "bad input"),
    (errors.OutputError, "output"),
    (errors.SourceUnavailable, "source unavailable"),
    (errors.ToolchainMissing, "missing tool"),
    (errors.SandboxError, "sandbox"),
    (errors.ThresholdNotMet, "quality gate failed"),
    (errors.HrmcodeError, "error"),
    (FileNotFoundError, "file not found"),
    (PermissionError, "permission denied"),
    (NotADirectoryError, "not a directory"),
    (IsADirectoryError, "is a directory"),
    (FileExistsError, "file exists"),
]

# errno values that can only come from writing (an EACCES may be a read: it keeps its own label).
_WRITE_ONLY_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def debug_enabled() -> bool:
    return os.environ.get("HRMCODE_DEBUG", "") not in ("", "0")


def render(exc: BaseException, output: str | None = None) -> int:
    """Print ``exc`` as one line on stderr and return its exit code.

    ``output`` names where the command writes, for a write failure that names no file (a full disk
    mid-``write()``)."""
    if debug_enabled():
        traceback.print_exception(exc)
    if isinstance(exc, OSError) and exc.errno in _WRITE_ONLY_ERRNOS:
        exc = errors.output_error(exc, output or "an output file")
    for exc_type, label in ERROR_TABLE:
        if isinstance(exc, exc_type):
            if isinstance(exc, OSError) and not isinstance(exc, errors.HrmcodeError):
                text = f"{exc.filename or ''}: {exc.strerror or exc}".strip(": ")
            else:
                text = str(exc)
            out.error(f"{label}: {text}")
            return getattr(exc, "exit_code", 1)
    out.error(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}")
    if not debug_enabled():
        out.hint("this is a bug in hrmcode; rerun with HRMCODE_DEBUG=1 for the traceback and report it")
    return 1


def render_usage(exc: ClickException) -> int:
    """Print a command-line parsing error (bad option value, range, missing argument) as one line."""
    context = getattr(exc, "ctx", None)
    if isinstance(exc, NoArgsIsHelpError) and context is not None:  # `hrmcode` alone: the help, as before
        typer.echo(context.get_help(), err=True)
        return exc.exit_code
    where = f" (see `{context.command_path} --help`)" if context is not None else ""
    out.error(f"usage: {' '.join(exc.format_message().split())}{where}")
    return exc.exit_code


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command so errors become one line + exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            out.error("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the table decides
            raise typer.Exit(render(exc, _output_of(kwargs))) from None

    return wrapper


def _output_of(kwargs: dict[str, Any]) -> str | None:
    """Where an artifact-writing command writes: its ``-o``, else its workspace; None for other commands."""
    if "out_dir" not in kwargs:
        return None
    if kwargs["out_dir"] is not None:
        return str(kwargs["out_dir"])
    ctx = kwargs.get("ctx")
    try:
        return f"the workspace {workspace_root(workspace(ctx) if ctx is not None else None)}"
    except errors.HrmcodeError:
        return None
