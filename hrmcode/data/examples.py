"""The training-example record (``examples.jsonl`` of an ``examples`` artifact, ``accepted.jsonl``
of a ``validated-examples`` artifact). ``hrmcode train`` reads exactly this.

Levels: ``plan`` (H level: what to change, in which order), ``edit`` (L level: SEARCH/REPLACE
blocks), ``tool`` (state -> action -> observation), ``coord`` (agent assignments), ``solve``
(problem -> whole solution). ``input.text`` is what the model sees, ``target`` what it must
produce; the loss is taken on the target only. Documented in ``docs/examples.md``.

A multi-turn example (a recorded agent trajectory) also has ``messages``: the whole conversation
as the acting model saw it (system, user, assistant, user = an observation, ...). Train renders it
as one chat and takes the loss on the assistant turns only; ``input.text`` is then its first user
message and ``target`` its first assistant turn (the single-turn view of the first step).
``reward`` is the episode's outcome (1.0 resolved, 0.0 failed), which train can mask or weight
by; it is null for examples that are not outcomes of an episode. Both keys are left out of a
record when null, so a single-turn record is written exactly as before they existed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from hrmcode.data.schema import validate_record

LEVELS = ("plan", "edit", "tool", "coord", "solve")
Level = Literal["plan", "edit", "tool", "coord", "solve"]
Split = Literal["train", "heldout"]
Role = Literal["system", "user", "assistant"]
OPTIONAL_KEYS = ("messages", "reward")  # left out of a record when null


class ExampleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the prompt the model sees")
    context: dict = Field(default_factory=dict, description="structured context (files, tests, state)")


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str


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
    messages: list[Turn] | None = Field(None, description="a multi-turn example's whole conversation; loss on its "
                                                          "assistant turns")
    reward: float | None = Field(None, ge=0.0, le=1.0, description="the episode's reward (1.0 resolved, 0.0 failed)")

    @field_validator("messages")
    @classmethod
    def _messages_have_a_reply(cls, value: list[Turn] | None) -> list[Turn] | None:
        if value is not None and not any(turn.role == "assistant" and turn.content.strip() for turn in value):
            raise ValueError("messages must hold a non-empty assistant turn")
        return value

    @model_serializer(mode="wrap")
    def _without_null_optionals(self, handler):
        record = handler(self)
        for key in OPTIONAL_KEYS:
            if record.get(key) is None:
                record.pop(key, None)
        return record

    @field_validator("target")
    @classmethod
    def _target_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("target must not be empty")
        return value


def compared_texts(record: dict) -> tuple[str, str]:
    """(what the model sees, what it produces) of an example record, as duplicate and contamination
    checks compare them: ``input.text`` and ``target``, or for a multi-turn example every
    non-assistant turn and every assistant turn (two trajectories that share their first step are
    different examples)."""
    messages = record.get("messages")
    if messages is None:
        return record["input"]["text"], record["target"]
    return ("\n".join(m["content"] for m in messages if m["role"] != "assistant"),
            "\n".join(m["content"] for m in messages if m["role"] == "assistant"))


def parse_example(record: dict, where: str = "") -> Example:
    return validate_record(Example, record, where, "example", "docs/examples.md", count_more=False)
