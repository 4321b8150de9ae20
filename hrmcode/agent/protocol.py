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

Not taken from mini-swe-agent: its tool-calling mode, its jinja templates (the same texts are plain
strings here), the ``<system_information>`` block (it would leak the host's uname into training data),
and its cost limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hrmcode.edits import Edit, MalformedEdit, parse_edits
from hrmcode.sandbox.base import ExecResult

PROTOCOL = "mini-swe-agent-2.4.6-textbased+search-replace/1"
SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
SUBMIT_SENTINEL = f"echo {SUBMIT_MARKER}"

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


SYSTEM_PROMPT = """\
You are a helpful assistant that can interact with a computer.

Your response must contain exactly ONE bash code block with ONE command (or commands connected with && or ||), \
or SEARCH/REPLACE blocks that edit files.
Include a THOUGHT section before your command where you explain your reasoning process.
Format your response as shown in <format_example>.

<format_example>
Your reasoning and analysis here. Explain why you want to perform the action.

```bash
your_command_here
```
</format_example>

Failure to follow these rules will cause your response to be rejected.
"""


def system_prompt() -> str:
    """The system message (mini-swe-agent's ``system_template``, with SEARCH/REPLACE edits allowed)."""
    return SYSTEM_PROMPT


_TASK_TEMPLATE = """\
Please solve this issue: {problem}
{plan}
You can execute bash commands and edit files to implement the necessary changes.

## Recommended Workflow

This workflow should be done step-by-step so that you can iterate on your changes and any possible problems.

1. Analyze the codebase by finding and reading relevant files
2. Create a script to reproduce the issue
3. Edit the source code to resolve the issue
4. Verify your fix works by running your script again
5. Test edge cases to ensure your fix is robust
6. Submit your changes and finish your work by issuing the following command: `{sentinel}`.
   Do not combine it with any other command. <important>After this command, you cannot continue working on this task.</important>

## Important Rules

1. Every response must contain exactly one action
2. The action must be enclosed in triple backticks
3. Directory or environment variable changes are not persistent. Every action is executed in a new subshell \
in the repository's root directory.
   However, you can prefix any action with `MY_ENV_VAR=MY_VALUE cd /path/to/working/dir && ...` or write/load \
environment variables from files
4. Do not modify the tests or the test configuration: changes to them are discarded before grading

## Formatting your response

Here is an example of a correct response:

<example_response>
THOUGHT: I need to understand the structure of the repository first. Let me check what files are in the \
current directory to get a better understanding of the codebase.

```bash
ls -la
```
</example_response>

## Useful command examples

### Create a new file:

```bash
cat <<'EOF' > newfile.py
import numpy as np
hello = "world"
print(hello)
EOF
```

### Edit files with sed:

```bash
# Replace all occurrences
sed -i 's/old_string/new_string/g' filename.py

# Replace only first occurrence
sed -i 's/old_string/new_string/' filename.py
```

### Edit files with SEARCH/REPLACE blocks (instead of a bash block):

path/to/file.py
```python
<<<<<<< SEARCH
    return a - b
=======
    return a + b
>>>>>>> REPLACE
```

The SEARCH text must match the file exactly; an empty SEARCH creates the file. You will be told which \
files changed, or why a block did not apply.

### View file content:

```bash
# View specific lines with numbers
nl -ba filename.py | sed -n '10,20p'
```
"""

PLAN_HEADING = "## Plan"


def task_prompt(problem: str, plan: str | None = None) -> str:
    """The first user message (mini-swe-agent's ``instance_template``); a planner's ``plan``, when
    given, follows the issue under ``PLAN_HEADING``."""
    plan_text = ""
    if plan is not None and plan.strip():
        plan_text = f"\n{PLAN_HEADING}\n\nA planner read the issue and wrote this plan:\n\n{plan.strip()}\n"
    return _TASK_TEMPLATE.format(problem=problem, plan=plan_text, sentinel=SUBMIT_SENTINEL)


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


_LONG_OUTPUT_WARNING = """\
<warning>
The output of your last command was too long.
Please try a different command that produces less output.
If you're looking at a file you can try use head, tail or sed to view a smaller number of lines selectively.
If you're using grep or find and it produced too much output, you can use a more selective search pattern.
If you really need to see something from the full command's output, you can redirect output to a file and \
then search in that file.
</warning>"""


def _exception_info(result: ExecResult) -> str:
    """Why the command did not end on its own, and what the sandbox cut; "" when nothing happened."""
    notes = []
    if result.timed_out:
        notes.append(f"The command was killed after {result.wall_s:.1f} seconds: it ran past its time limit.")
    elif result.memory_exceeded:
        notes.append("The command was killed: it ran out of memory.")
    elif result.exit_code is None:
        signal = f" by signal {result.killed_signal}" if result.killed_signal else ""
        notes.append(f"The command was killed{signal}.")
    for stream, cut in (("stdout", result.stdout_truncated), ("stderr", result.stderr_truncated)):
        if cut:
            notes.append(f"The sandbox kept only the beginning of the command's {stream}.")
    return " ".join(notes)


def observation_text(result: ExecResult, max_chars: int) -> str:
    """The observation of one command: mini-swe-agent's ``observation_template``.

    ``<returncode>`` is the exit status (-1 when the command was killed, as in mini-swe-agent), the
    output is stdout then stderr. Output longer than ``max_chars`` keeps its first ``max_chars // 2``
    and last ``max_chars - max_chars // 2`` characters, with a warning and the number of characters
    elided between them.
    """
    output = result.stdout + result.stderr
    parts = []
    info = _exception_info(result)
    if info:
        parts.append(f"<exception>{info}</exception>")
    parts.append(f"<returncode>{result.exit_code if result.exit_code is not None else -1}</returncode>")
    if len(output) <= max_chars:
        parts.append(f"<output>\n{output}</output>")
    else:
        head, tail = max_chars // 2, max_chars - max_chars // 2
        parts.append(_LONG_OUTPUT_WARNING)
        parts.append(f"<output_head>\n{output[:head]}\n</output_head>")
        parts.append(f"<elided_chars>\n{len(output) - max_chars} characters elided\n</elided_chars>")
        parts.append(f"<output_tail>\n{output[len(output) - tail:]}\n</output_tail>")
    return "\n".join(parts)


def edit_observation(changed: list[str], failures: str) -> str:
    """The observation of a SEARCH/REPLACE reply: returncode 0 when every block applied, else 1; the
    files that changed, then the reflection for the blocks that did not apply."""
    lines = [f"Changed: {', '.join(changed)}" if changed else "No file changed."]
    if failures:
        lines.append(failures)
    body = "\n\n".join(lines)
    return f"<returncode>{1 if failures else 0}</returncode>\n<output>\n{body}\n</output>"
