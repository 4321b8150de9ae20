"""The agent's turn-taking protocol: mini-swe-agent's text-based protocol, plus SEARCH/REPLACE edits.

Written to the protocol of mini-swe-agent 2.4.6 (``minisweagent/config/mini_textbased.yaml``,
``models/utils/actions_text.py``, ``environments/local.py``), read from its source:

- The model answers with its reasoning (a THOUGHT) and exactly ONE fenced shell block. mini-swe-agent
  2.x fences it as ```` ```mswea_bash_command ````, 1.x (and the trajectories models were trained on)
  as ```` ```bash ````; both are accepted, the prompts ask for ```` ```bash ````.
- Zero or several blocks is a format error; its message (mini-swe-agent's ``format_error_template``)
  is sent back as the next user message.
- The task is submitted when a command's output starts with the line
  ``COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT`` and the command exits 0 (mini-swe-agent's
  ``_check_finished``); the rest of the output is the submission. A reply whose command is exactly
  ``SUBMIT_SENTINEL`` submits without running anything.
- An observation is ``<returncode>`` plus ``<output>``; output longer than ``max_chars`` is cut to its
  head and tail with a warning and ``<elided_chars>N characters elided</elided_chars>`` between them.

hrmcode's addition: instead of a shell block, a reply may hold Aider SEARCH/REPLACE blocks
(``hrmcode/edits.py``'s ``diff`` format, what the ``edit`` level trains), which the loop applies to
the session's files. A reply with both a shell block and SEARCH/REPLACE blocks is a format error.

The texts (system and task prompts, the observation format, the submit sentinel) are in
``hrmcode.data.turns``, re-exported here: the ``tool`` level of synthesize writes its executed
reference runs in the same texts, and ``data`` may not import ``agent``.

Not taken from mini-swe-agent: its tool-calling mode, its jinja templates (the same texts are plain
strings here), the ``<system_information>`` block (it would leak the host's uname into training data),
and its cost limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hrmcode.data.turns import (  # the texts of the turns; re-exported: the protocol's names live here
    PLAN_HEADING, PROTOCOL, SUBMIT_MARKER, SUBMIT_SENTINEL, SYSTEM_PROMPT, edit_observation, observation_text,
    system_prompt, task_prompt,
)
from hrmcode.edits import Edit, MalformedEdit, parse_edits

__all__ = ["PLAN_HEADING", "PROTOCOL", "SUBMIT_MARKER", "SUBMIT_SENTINEL", "SYSTEM_PROMPT", "Action", "FormatError",
           "edit_observation", "observation_text", "parse_action", "submission", "system_prompt", "task_prompt"]

# mini-swe-agent 2.x's action_regex, widened to 1.x's ```bash fence
_ACTION_RE = re.compile(r"```(?:bash|mswea_bash_command)\s*\n(.*?)\n```", re.DOTALL)
_SEARCH_HEAD_RE = re.compile(r"^<{5,9} SEARCH", re.MULTILINE)


class FormatError(Exception):
    """A reply that holds no valid action; ``str(exc)`` is the message fed back to the model."""

    def __init__(self, error: str, n_actions: int):
        self.error = error
        self.n_actions = n_actions
        super().__init__(_format_error_text(error, n_actions))


@dataclass
class Action:
    kind: str  # "bash" | "edit" | "submit"
    command: str = ""
    edits: list[Edit] = field(default_factory=list)
    thought: str = ""  # the text before the action


def parse_action(text: str) -> Action:
    """The one action in a model reply: exactly one shell block, or SEARCH/REPLACE blocks.

    Raises ``FormatError`` for none, several, both kinds, an empty command, or a SEARCH/REPLACE block
    that does not parse (its message then says what is wrong with it). Edit paths are as the model
    wrote them (checked to be relative and inside the work dir); the loop resolves them against the
    session's files.
    """
    blocks = list(_ACTION_RE.finditer(text))
    rest = _ACTION_RE.sub("", text)
    edits: list[Edit] = []
    edit_error: MalformedEdit | None = None
    try:
        edits = parse_edits(rest, "diff", [])
    except MalformedEdit as exc:
        edit_error = exc
    if len(blocks) > 1:
        raise FormatError(f"Expected exactly 1 action, found {len(blocks)}.", len(blocks))
    if blocks and (edits or (edit_error is not None and _SEARCH_HEAD_RE.search(rest))):
        raise FormatError("Expected exactly 1 action, found a bash block and SEARCH/REPLACE blocks; send them in "
                          "separate replies.", 1 + len(edits))
    if blocks:
        command = blocks[0].group(1).strip()
        if not command:
            raise FormatError("The bash block is empty.", 1)
        thought = text[:blocks[0].start()].strip()
        if command == SUBMIT_SENTINEL:
            return Action(kind="submit", command=command, thought=thought)
        return Action(kind="bash", command=command, thought=thought)
    if edit_error is not None and _SEARCH_HEAD_RE.search(rest):
        raise FormatError(f"The SEARCH/REPLACE block does not parse: {edit_error}", 0)
    if edits:
        return Action(kind="edit", edits=edits, thought=_edit_thought(text, edits[0].path))
    raise FormatError("Expected exactly 1 action, found 0.", 0)


def _edit_thought(text: str, first_path: str) -> str:
    """The text before the first SEARCH/REPLACE block, without the path line and fence above its marker."""
    head = _SEARCH_HEAD_RE.search(text)
    lines = text[:head.start() if head else 0].rstrip("\n").split("\n")
    for _ in range(2):  # at most a fence and a path line sit above the marker
        if lines and (lines[-1].lstrip().startswith(("```", "~~~")) or first_path in lines[-1]):
            lines.pop()
    return "\n".join(lines).strip()


def submission(output: str, exit_code: int | None) -> str | None:
    """mini-swe-agent's ``_check_finished``: the submission when ``output`` (leading whitespace
    stripped) starts with the line ``SUBMIT_MARKER`` and the command exited 0, else None."""
    lines = output.lstrip().splitlines(keepends=True)
    if lines and lines[0].strip() == SUBMIT_MARKER and exit_code == 0:
        return "".join(lines[1:])
    return None


def _format_error_text(error: str, n_actions: int) -> str:
    """mini-swe-agent's ``format_error_template`` (its finish_reason branch aside)."""
    return f"""\
Format error:

<error>
{error}
</error>

Here is general guidance on how to format your response:

Please always provide EXACTLY ONE action in triple backticks, found {n_actions} actions.

Please format your action in triple backticks as shown in <response_example>.

<response_example>
Here are some thoughts about why you want to perform the action.

```bash
<action>
```
</response_example>

If you have completed your assignment, please consult the first message about how to
submit your solution (you will not be able to continue working on this task after that)."""
