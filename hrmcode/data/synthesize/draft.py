"""``Draft``: an example as a rule produces it, before the pipeline adds id, split, stage and
provenance; and the small text helpers every rule shares (so prompts are laid out one way)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FENCE_RUN = re.compile(r"^\s*(`{3,})", re.M)


@dataclass
class Draft:
    level: str
    rule: str  # "<level>/<how>", recorded in provenance
    text: str  # what the model sees
    target: str  # what it must produce
    language: str
    context: dict = field(default_factory=dict)
    messages: list[dict] | None = None  # a multi-turn example's conversation (Example.messages)
    reward: float | None = None  # the episode's reward (Example.reward)
    model_written: bool = False  # a model wrote the target (a recorded agent's turns)


def fenced(path: str, content: str) -> str:
    """A file listing as the edit formats show files: path line, then a fence long enough."""
    longest = max((len(m.group(1)) for m in _FENCE_RUN.finditer(content)), default=0)
    fence = "`" * max(3, longest + 1)
    body = content if content.endswith("\n") or not content else content + "\n"
    return f"{path}\n{fence}\n{body}{fence}\n"


def header(task: dict, level: str) -> str:
    """First lines of every input: which level is asked for, the task's language and title/repo."""
    lines = [f"### {level}", f"language: {task.get('language', '')}"]
    repo = (task.get("metadata") or {}).get("repo")
    if isinstance(repo, str) and repo:
        lines.append(f"repository: {repo}")
    if task.get("title"):
        lines.append(f"title: {task['title']}")
    return "\n".join(lines) + "\n\n"


def problem_and_files(task: dict, level: str, files: dict[str, str]) -> str:
    """Header, problem statement and file listings; the statement is left out when it is the
    text of a listed file (HumanEval's prompt is its stub), so nothing is shown twice."""
    prompt = task.get("prompt", "").strip()
    listed = "".join(fenced(p, t) for p, t in sorted(files.items()))
    if prompt and any(prompt == t.strip() for t in files.values()):
        return header(task, level) + listed
    return header(task, level) + prompt + "\n\n" + listed
