"""Exceptions a user can cause, each carrying a one-line message and the next thing to do.

Each class's ``exit_code`` is the process exit code the CLI ends with (this is the one place exit
codes are defined: 1 failure, 2 usage error); ``hrmcode/cli/_errors.py`` only adds a label to the
one-line message. The library raises these and never prints. Anything that is not a ``HrmcodeError`` is a bug and
is shown with a traceback hint.
"""

from __future__ import annotations

import errno


class HrmcodeError(Exception):
    """Base class: ``message`` says what is wrong, ``hint`` what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, always
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split("\n"))


class UsageError(HrmcodeError):
    """Options that contradict each other or name something that does not exist."""

    exit_code = 2


class InputError(HrmcodeError):
    """An input file or record is missing, malformed or of the wrong schema."""


class ArtifactError(InputError):
    """An artifact directory is missing, incomplete, of the wrong kind or schema version."""


class OutputError(HrmcodeError):
    """An output cannot be written where asked: the disk is full, the directory is read-only or not a
    directory, or the path holds data that is not an earlier artifact of the same kind."""


class SourceUnavailable(HrmcodeError):
    """A remote source cannot be reached (no network, unknown host, missing package)."""


class ToolchainMissing(HrmcodeError):
    """A program the step needs (bwrap, go, cargo, javac, docker ...) is not installed."""


class SandboxError(HrmcodeError):
    """The sandbox could not start the command (not: the command failed inside it)."""


class CheckpointError(InputError):
    """A model checkpoint is missing files or cannot be loaded."""


class ThresholdNotMet(HrmcodeError):
    """A quality gate (``--fail-under``, ``--fail-over-loss``) was not met."""


# errno values that mean "this output location cannot be written", with what to do about each.
_WRITE_ERRNO_HINTS = {
    errno.ENOSPC: "free some space, or write elsewhere with -o/--workspace",
    errno.EDQUOT: "free some space under your quota, or write elsewhere with -o/--workspace",
    errno.EROFS: "the filesystem is read-only: write elsewhere with -o/--workspace",
    errno.EACCES: "you may not write there: write elsewhere with -o/--workspace",
    errno.EPERM: "you may not write there: write elsewhere with -o/--workspace",
    errno.ENOTDIR: "a file stands where a directory is needed: choose another -o/--workspace",
    errno.EEXIST: "a file stands where a directory is needed: choose another -o/--workspace",
    errno.EISDIR: "a directory stands where a file is needed: choose another -o/--workspace",
}


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError that says an output location cannot be written (full, read-only...)."""
    return isinstance(exc, OSError) and exc.errno in _WRITE_ERRNO_HINTS


def output_error(exc: OSError, where: object) -> OutputError:
    """``exc`` (a write failure) as a one-line ``OutputError`` naming the path written and the cause.

    ``where`` is the output the caller was writing; the OSError's own file name is preferred when it
    has one (``write()`` on a full disk has none).
    """
    path = exc.filename if exc.filename is not None else where
    cause = exc.strerror or str(exc)
    return OutputError(f"cannot write {path}: {cause}", _WRITE_ERRNO_HINTS.get(exc.errno, "check the output path"))
