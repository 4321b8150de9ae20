"""Declaring a library option once: its name, type, default, help text and range.

A library options record (a dataclass, or a pydantic model) is the one place an option is declared;
the command line is generated from it (``hrmcode/cli/_options.py``), so the two cannot drift.

- dataclass fields: ``option(default, "help", flags=..., min=..., max=..., negate=...)`` puts the
  help text, the option names, the closed range and whether the option turns the field off into
  the field's metadata;
- pydantic fields: ``Field(default, description="help", ge=..., le=...)``; other option names go in
  ``json_schema_extra={"flags": [...]}``.

A field without help text is not a command-line option. Nothing here validates values: a pydantic
model validates its own; a dataclass record is checked by the function that takes it (and, on the
command line, by the range given here).
"""

from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any


def option(default: Any = MISSING, help: str = "", *, flags: tuple[str, ...] = (), min: float | None = None,
           max: float | None = None, negate: bool = False, default_factory: Any = MISSING) -> Any:
    """A dataclass field that is also a command-line option (``--field-name`` unless ``flags`` says).

    ``negate``: a boolean field that defaults to True and whose option turns it off (``--no-exec``
    sets ``exec_checks`` to False); ``help`` then describes the option.
    """
    metadata = {"help": help, "flags": flags, "min": min, "max": max, "negate": negate}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)
