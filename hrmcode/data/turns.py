"""The text of an agent's turns: the prompts, the observation format and the submit sentinel of
mini-swe-agent's text-based protocol, as ``hrmcode.agent.protocol`` speaks it.

It lives in ``data`` because it is a training format as much as a protocol: the agent loop sends
these texts to the model (``hrmcode.agent.protocol`` re-exports every name here, with the parsing
of replies it adds), and the ``tool`` level writes its executed reference runs in exactly these
texts (``hrmcode.data.synthesize.tool``), so a model trained on them is asked the same thing by
``hrmcode eval swe``. Pure text: nothing here runs a command or parses a reply.
"""

from __future__ import annotations

from hrmcode.sandbox.base import ExecResult

PROTOCOL = "mini-swe-agent-2.4.6-textbased+search-replace/1"
SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
SUBMIT_SENTINEL = f"echo {SUBMIT_MARKER}"


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
