"""Exceptions a user can cause, each carrying a one-line message and the next thing to do.

Each class's ``exit_code`` is the process exit code the CLI ends with (this is the one place exit
codes are defined: 1 failure, 2 usage error); ``hrmcode/cli/_errors.py`` only adds a label to the
one-line message. The library raises these and never prints. Anything that is not a ``HrmcodeError`` is a bug and
is shown with a traceback hint.
"""

from __future__ import annotations


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
