"""Typer options generated from a library options record, so each option is declared once.

The library record (a pydantic model, or a dataclass whose fields use ``hrmcode.options.option``)
holds every option's name, type, default, help text and range; ``library_options`` reads them and
``with_options`` adds them to a command's signature, where typer finds them. The command receives
them as ``**kwargs`` under the record's field names and hands them to the library unchanged.

What it guarantees: the option's flag is ``--field-name`` unless the record names other flags; its
default and help text are the record's; ``option(min=, max=)`` and the ``ge``/``le`` of a pydantic
integer field become the option's range. Other pydantic bounds (on floats, ``gt``/``lt``) are left
to the model's own validation, whose one-line error names the option. Union types become their
first non-None member, ``Literal`` choices a plain value the library checks.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, TypeVar

import annotated_types
import typer
from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class LibraryOption:
    """One field of a library record, as the command line shows it."""

    name: str
    type: type
    default: Any  # inspect.Parameter.empty when required
    help: str
    flags: tuple[str, ...]
    min: float | None = None
    max: float | None = None
    negate: bool = False  # a flag that turns a default-True field off

    def parameter(self) -> inspect.Parameter:
        info = typer.Option(*self.flags, help=self.help, min=self.min, max=self.max)
        annotation = Annotated[Optional[self.type] if self.default is None else self.type, info]
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=self.default, annotation=annotation)


def _cli_type(annotation: Any) -> type:
    """``str | Path | None`` -> str; ``Literal["a", "b"]`` -> str; ``Optional[int]`` -> int."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return type(typing.get_args(annotation)[0])
    if origin is not None and type(None) in typing.get_args(annotation):
        return _cli_type(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return annotation


def _default_note(default: Any) -> str:
    if isinstance(default, bool):
        return "Default: on." if default else "Default: off."
    return f"Default: {default}."


def _fields(record: type) -> list[tuple[str, Any, Any, str, tuple[str, ...], float | None, float | None, bool]]:
    """(name, annotation, default, help, flags, min, max, negate) of each field that has help text."""
    rows = []
    if issubclass(record, BaseModel):
        for name, info in record.model_fields.items():
            if not info.description:
                continue
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            integer = info.annotation is int
            low = next((m.ge for m in info.metadata if isinstance(m, annotated_types.Ge) and integer), None)
            high = next((m.le for m in info.metadata if isinstance(m, annotated_types.Le) and integer), None)
            default = inspect.Parameter.empty if info.is_required() else info.get_default(call_default_factory=True)
            rows.append((name, info.annotation, default, info.description, tuple(extra.get("flags", ())), low, high,
                         bool(extra.get("negate"))))
        return rows
    hints = typing.get_type_hints(record)
    for f in dataclasses.fields(record):
        if not f.metadata.get("help"):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = inspect.Parameter.empty
        rows.append((f.name, hints[f.name], default, f.metadata["help"], tuple(f.metadata["flags"]),
                     f.metadata["min"], f.metadata["max"], f.metadata["negate"]))
    return rows


def library_options(record: type, *, only: Collection[str] | None = None, overrides: bool = False,
                    preset_defaults: Collection[str] = ()) -> list[LibraryOption]:
    """The command-line options of ``record`` (fields with help text; ``only`` narrows them).

    ``overrides``: every option defaults to None (= not given, the library's default applies) and
    its help ends with that default, or "Preset default." for a field in ``preset_defaults``; a
    boolean becomes a ``--x/--no-x`` pair.
    """
    options = []
    for name, annotation, default, help_text, flags, low, high, negate in _fields(record):
        if only is not None and name not in only:
            continue
        cli_type = _cli_type(annotation)
        flags = flags or ("--" + name.replace("_", "-"),)
        if overrides:
            help_text = f"{help_text} {'Preset default.' if name in preset_defaults else _default_note(default)}"
            if cli_type is bool:
                flags = (f"{flags[0]}/--no-{flags[0][2:]}", *flags[1:])
            default = None
        elif negate:
            default = False  # the flag's value; the library gets its opposite
        options.append(LibraryOption(name, cli_type, default, help_text, flags, low, high, negate))
    return options


def with_options(options: Sequence[LibraryOption], *, order: Sequence[str] = ()) -> Callable[[F], F]:
    """Add ``options`` to a command's signature; the command takes them as ``**kwargs``.

    Parameters named in ``order`` come first, in that order; then the command's own parameters;
    then the remaining generated ones, in the record's field order. A ``negate`` option reaches the
    command as the field's value (``--no-exec`` given: ``exec_checks=False``).
    """
    negated = [option.name for option in options if option.negate]

    def decorate(fn: F) -> F:
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(fn, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        generated = [option.parameter() for option in options]
        by_name = {p.name: p for p in own + generated}
        if len(by_name) != len(own) + len(generated):
            raise ValueError(f"{fn.__name__}: a generated option has the name of one of its own parameters")
        first = [by_name[name] for name in order]
        rest = [p for p in own + generated if p.name not in order]
        parameters = first + rest

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            for name in negated:
                kwargs[name] = not kwargs[name]
            return fn(**kwargs)

        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command  # type: ignore[return-value]

    return decorate
