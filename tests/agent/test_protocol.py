"""The agent protocol: mini-swe-agent's action parsing, submission rule, observations and prompts."""

from __future__ import annotations

import pytest

from hrmcode.agent.protocol import (
    PLAN_HEADING, SUBMIT_MARKER, SUBMIT_SENTINEL, FormatError, edit_observation, observation_text, parse_action,
    submission, system_prompt, task_prompt,
)
from hrmcode.sandbox.base import ExecResult

SR = "I fix the sign.\n\nsrc/calc.py\n```python\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n```\n"


def test_one_bash_block_is_a_bash_action_with_its_thought():
    action = parse_action("THOUGHT: look around first.\n\n```bash\nls -la && cat setup.py\n```\n")
    assert (action.kind, action.command, action.thought) == ("bash", "ls -la && cat setup.py", "THOUGHT: look around first.")


def test_mini_swe_agent_2_fence_is_accepted():
    assert parse_action("x\n```mswea_bash_command\n  grep -rn foo .\n```").command == "grep -rn foo ."


@pytest.mark.parametrize("text, found", [
    ("no block at all", 0),
    ("```python\nprint(1)\n```", 0),
    ("```bash\nls\n```\nthen\n```bash\npwd\n```", 2),
])
def test_not_exactly_one_action_is_a_format_error_naming_how_many(text, found):
    with pytest.raises(FormatError) as caught:
        parse_action(text)
    assert caught.value.n_actions == found
    message = str(caught.value)
    assert message.startswith("Format error:\n\n<error>\n")
    assert f"found {found} actions" in message
    assert "```bash\n<action>\n```" in message


def test_empty_command_is_a_format_error():
    with pytest.raises(FormatError, match="empty"):
        parse_action("```bash\n\n```")


def test_the_sentinel_alone_submits_and_with_more_is_a_command():
    assert parse_action(f"done\n```bash\n{SUBMIT_SENTINEL}\n```").kind == "submit"
    action = parse_action(f"```bash\n{SUBMIT_SENTINEL} && cat patch.txt\n```")
    assert (action.kind, action.command) == ("bash", f"{SUBMIT_SENTINEL} && cat patch.txt")


def test_search_replace_blocks_are_an_edit_action():
    action = parse_action(SR)
    assert action.kind == "edit"
    assert action.thought == "I fix the sign."
    [edit] = action.edits
    assert (edit.path, edit.before, edit.after) == ("src/calc.py", "    return a - b\n", "    return a + b\n")


def test_bash_block_and_edits_together_are_a_format_error():
    with pytest.raises(FormatError, match="a bash block and SEARCH/REPLACE blocks"):
        parse_action(SR + "\n```bash\npytest\n```\n")


def test_bash_block_and_a_broken_search_replace_block_are_a_format_error_too():
    broken = "src/calc.py\n```python\n<<<<<<< SEARCH\n    return a - b\n```\n"
    with pytest.raises(FormatError, match="a bash block and SEARCH/REPLACE blocks"):
        parse_action(broken + "\n```bash\npytest\n```\n")


def test_malformed_search_replace_block_says_what_is_wrong():
    broken = "src/calc.py\n```python\n<<<<<<< SEARCH\n    return a - b\n```\n"
    with pytest.raises(FormatError, match="does not parse: .*no '=======' line"):
        parse_action(broken)


def test_edit_outside_the_work_dir_is_a_format_error():
    escape = SR.replace("src/calc.py", "../../etc/passwd.txt")
    with pytest.raises(FormatError, match="not a path inside"):
        parse_action(escape)


def test_a_divider_line_in_prose_does_not_spoil_a_bash_action():
    assert parse_action("Plan\n=======\nfirst look\n```bash\nls\n```").command == "ls"


def test_submission_rule_is_mini_swe_agents():
    assert submission(f"\n{SUBMIT_MARKER}\ndiff --git a/x b/x\n", 0) == "diff --git a/x b/x\n"
    assert submission(f"{SUBMIT_MARKER}\n", 1) is None  # a failing command does not submit
    assert submission(f"note\n{SUBMIT_MARKER}\n", 0) is None  # the marker must be the first line
    assert submission("", 0) is None


def _result(stdout: str = "", stderr: str = "", exit_code: int | None = 0, **kw) -> ExecResult:
    return ExecResult(exit_code=exit_code, stdout=stdout, stderr=stderr, wall_s=kw.pop("wall_s", 0.1), **kw)


def test_short_observation_has_returncode_and_whole_output():
    assert observation_text(_result("a\n", "b\n", 2), 100) == "<returncode>2</returncode>\n<output>\na\nb\n</output>"


def test_long_observation_keeps_head_and_tail_and_says_how_much_was_elided():
    output = "".join(chr(ord("a") + i % 26) for i in range(2503))
    text = observation_text(_result(output), 1000)
    assert "<warning>\nThe output of your last command was too long." in text
    assert f"<output_head>\n{output[:500]}\n</output_head>" in text
    assert f"<output_tail>\n{output[-500:]}\n</output_tail>" in text
    assert "<elided_chars>\n1503 characters elided\n</elided_chars>" in text
    assert output[500:-500] not in text


def test_output_of_exactly_max_chars_is_not_cut():
    assert "<output>\n" + "x" * 50 + "</output>" in observation_text(_result("x" * 50), 50)


def test_killed_command_says_why_and_returns_minus_one():
    text = observation_text(_result("partial", exit_code=None, timed_out=True, wall_s=60.04), 100)
    assert text.startswith("<exception>The command was killed after 60.0 seconds: it ran past its time limit.</exception>\n"
                           "<returncode>-1</returncode>")
    memory = observation_text(_result(exit_code=None, memory_exceeded=True), 100)
    assert "ran out of memory" in memory
    cut = observation_text(_result("x", stdout_truncated=True), 100)
    assert "kept only the beginning of the command's stdout" in cut


def test_edit_observation_names_changed_files_and_failures():
    assert edit_observation(["a.py", "b.py"], "") == "<returncode>0</returncode>\n<output>\nChanged: a.py, b.py\n</output>"
    failed = edit_observation([], "# 1 edit failed to apply!")
    assert failed.startswith("<returncode>1</returncode>") and "No file changed." in failed


def test_task_prompt_has_the_problem_the_submit_command_and_the_plan_under_a_heading():
    plain = task_prompt("the sum is wrong")
    assert plain.startswith("Please solve this issue: the sum is wrong\n")
    assert f"`{SUBMIT_SENTINEL}`" in plain
    assert PLAN_HEADING not in plain
    planned = task_prompt("the sum is wrong", "1. read calc.py\n2. fix add()")
    assert f"\n{PLAN_HEADING}\n\n" in planned and "1. read calc.py\n2. fix add()" in planned
    assert planned.index("the sum is wrong") < planned.index(PLAN_HEADING) < planned.index("## Recommended Workflow")


def test_system_prompt_asks_for_one_bash_block():
    assert "exactly ONE bash code block" in system_prompt() and "```bash\nyour_command_here\n```" in system_prompt()


def test_prompt_examples_parse_under_the_protocol():
    """The examples the prompts show the model are themselves valid replies."""
    example = system_prompt().split("<format_example>\n")[1].split("</format_example>")[0]
    assert parse_action(example).command == "your_command_here"
    sr_example = task_prompt("x").split("(instead of a bash block):\n\n")[1].split("\n\nThe SEARCH text")[0]
    assert parse_action(sr_example).edits[0].path == "path/to/file.py"
