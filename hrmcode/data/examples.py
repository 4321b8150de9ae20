"""The training-example record (``examples.jsonl`` of an ``examples`` artifact, ``accepted.jsonl``
of a ``validated-examples`` artifact). ``hrmcode train`` reads exactly this.

Levels: ``plan`` (H level: what to change, in which order), ``edit`` (L level: SEARCH/REPLACE
blocks), ``tool`` (state -> action -> observation), ``coord`` (agent assignments), ``solve``
(problem -> whole solution). ``input.text`` is what the model sees, ``target`` what it must
produce; the loss is taken on the target only. Documented in ``docs/examples.md``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hrmcode.data.schema import validate_record

LEVELS = ("plan", "edit", "tool", "coord", "solve")
Level = Literal["plan", "edit", "tool", "coord", "solve"]
Split = Literal["train", "heldout"]


class ExampleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the prompt the model sees")
    context: dict = Field(default_factory=dict, description="structured context (files, tests, state)")


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(default_factory=list, description="sha256 of the input artifacts' manifests")
    rule: str = Field(description="which synthesis rule made the example, e.g. 'plan/from-reverse-patch'")
    model_written: bool = Field(False, description="true when an LLM wrote part of the target")


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    task_id: str
    source: str
    level: Level
    input: ExampleInput
    target: str
    language: str
    stage: int = Field(ge=1, le=4, description="curriculum stage 1-4 from analyze")
    split: Split
    provenance: Provenance

    @field_validator("target")
    @classmethod
    def _target_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("target must not be empty")
        return value


def parse_example(record: dict, where: str = "") -> Example:
    return validate_record(Example, record, where, "example", "docs/examples.md", count_more=False)
