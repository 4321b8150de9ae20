"""The one task record every source normalises into (``tasks.jsonl`` of a ``tasks`` artifact).

A task is self-contained: everything needed to show it to a model and to test an answer is
in the record (starting files, test files or cases, reference solution, test command), so a
task can be executed in the sandbox without the original dataset on disk. The source's own
fields are kept unchanged in ``metadata``. See ``docs/tasks.md`` for one example per source.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hrmcode.errors import InputError

ModelT = TypeVar("ModelT", bound=BaseModel)

LANGUAGES = ("python", "go", "rust", "java", "javascript", "cpp")
TaskKind = Literal["function", "exercise", "stdin", "functional", "repo-patch"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TestCase(_Strict):
    """One input/output pair (LiveCodeBench). ``input`` is stdin text, or one JSON value per line
    (one per argument) for functional problems; ``output`` is the expected stdout or JSON value."""

    __test__ = False  # not a pytest class

    input: str
    output: str
    public: bool = True


class Tests(_Strict):
    """How an answer is checked. Which fields are set depends on the task kind."""

    __test__ = False

    files: dict[str, str] = Field(default_factory=dict, description="test files, path -> content (never shown to a model)")
    cases: list[TestCase] = Field(default_factory=list, description="stdin/functional cases")
    fail_to_pass: list[str] = Field(default_factory=list, description="SWE-style tests that must go from failing to passing")
    pass_to_pass: list[str] = Field(default_factory=list, description="SWE-style tests that must keep passing")
    command: str | None = Field(None, description="the test command, run in the task's working directory")
    entry_point: str | None = Field(None, description="HumanEval entry point / LiveCodeBench func_name")


class Solution(_Strict):
    """The reference answer: whole files (path -> content), or a unified diff against the starting state."""

    files: dict[str, str] = Field(default_factory=dict)
    patch: str | None = None


class Task(_Strict):
    """One task. ``id`` is source-qualified (``polyglot/python/forth``, ``humaneval/HumanEval/0``)."""

    id: str
    source: str
    language: str = Field(description="primary language")
    languages: list[str] = Field(default_factory=list, description="every language the task touches")
    kind: TaskKind
    title: str = ""
    prompt: str = Field(description="what a model is shown: instructions, problem statement or function prompt")
    files: dict[str, str] = Field(default_factory=dict, description="starting files, path -> content (stubs, build files)")
    editable: list[str] = Field(default_factory=list, description="paths in `files` a model may change")
    solution: Solution = Field(default_factory=Solution)
    tests: Tests = Field(default_factory=Tests)
    metadata: dict = Field(default_factory=dict, description="the source's original fields, unchanged")

    @field_validator("id", "source", "prompt")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Task":
        if not self.id.startswith(self.source + "/"):
            raise ValueError(f"id {self.id!r} must start with its source {self.source!r}/")
        if not self.languages:
            self.languages = [self.language]
        elif self.language not in self.languages:
            raise ValueError(f"language {self.language!r} is not in languages {self.languages}")
        missing = [p for p in self.editable if p not in self.files]
        if missing:
            raise ValueError(f"editable paths not in files: {missing}")
        return self


def validate_record(model: type[ModelT], record: dict, where: str, what: str, doc: str, *,
                    count_more: bool = True) -> ModelT:
    """``record`` validated as ``model``, pydantic's report turned into a one-line ``InputError``: the first
    error (and, with ``count_more``, how many more), pointing at ``doc`` for the schema of a ``what``."""
    try:
        return model.model_validate(record)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "record"
        more = f" (+{exc.error_count() - 1} more)" if count_more and exc.error_count() > 1 else ""
        prefix = f"{where}: " if where else ""
        raise InputError(
            f"{prefix}not a valid hrmcode {what}: {loc}: {first['msg']}{more}",
            f"see {doc} for the schema",
        ) from None


def parse_task(record: dict, where: str = "") -> Task:
    """Validate one record, turning pydantic's report into a one-line ``InputError``."""
    return validate_record(Task, record, where, "task", "docs/tasks.md")
