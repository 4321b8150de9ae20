"""Problem statements for bug tasks, as SWE-smith writes them (``swesmith/issue_gen``).

``evidence(...)`` gathers what an issue may be written from: the failing tests' names, the changed
files and functions, the source of the first failing test, and a bounded excerpt of that test's
failure as the bug's validation run printed it (pytest's FAILURES section, else its summary line).
``template_statement(evidence, key)`` picks one of SWE-smith's template shapes (``get_static``'s
prompts that say nothing, name the files, the functions or the failing tests, and ``get_from_tests``'
test source plus test output), drawn by weight with ``key`` (the instance id: it ends in the hash
of the bug patch) as the seed, so reruns give the same bytes. SWE-smith's "bug type" variants are
left out: they name the bug's strategy. With an LM (``lm.ChatClient``), ``lm_messages`` is
SWE-smith's ``ig_v2`` prompt (the bug patch, the test output and the test source); a prompt too
long for the model's context counts as a refused answer.

Every statement is checked by ``find_leak`` against the ``Secrets`` of its instance: the instance
id, the bug strategy names (SWE-smith's and hrmcode's, ``op_flip``, ``func_pm_…``, ``lm_modify``…)
and the fix's lines (the text the fix puts back that the bugged repository does not already hold).
``problem_statement`` returns the first statement that does not leak: the LM's, else the template's,
else a template with the leaking evidence lines dropped, else SWE-smith's says-nothing prompt; the
``Statement`` records which and why (``leak``).

Guaranteed: no returned text contains the instance id or a strategy name (case-insensitive), or a
fix line within one of its lines (the last resort, SWE-smith's fixed says-nothing sentence, is
returned unchecked: it holds no evidence of the instance). Not guaranteed: that a statement is
sufficient to find the bug (SWE-smith's says-nothing prompt is one of its variants), or that a
paraphrase of the fix (an LM describing the right comparison in words) is caught.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from hrmcode.data.bugs.lm import PromptTooLong
from hrmcode.diffs import content_diffs

# SWE-smith's bug-type names (its procedural modifiers across languages, its LM and combine
# methods) and hrmcode's own: none may appear in a statement.
STRATEGY_NAMES = (
    "func_pm", "ctrl_shuffle", "ctrl_invert_if", "remove_assign", "remove_cond", "remove_loop", "remove_wrapper",
    "op_change_const", "op_change", "op_swap", "op_flip", "op_break_chains", "class_rm_base", "class_rm_funcs",
    "class_shuffle_funcs", "arg_swap", "bool_negate", "loop_off_by_one", "string_typo", "remove_try_catch",
    "return_null", "lm_modify", "lm_rewrite", "func_basic", "combine_file", "combine_module", "model_written",
)
MAX_OUTPUT_LINES = 40
MAX_OUTPUT_CHARS = 3000
MAX_SOURCE_LINES = 60
MAX_TESTS_LISTED = 20
SECTION = re.compile(r"^_{3,} (.+?) _{3,}$")
RULE = re.compile(r"^={3,}|^-{3,} Captured .* -{3,}$")  # the next section, or what the test printed


@dataclass(frozen=True)
class Evidence:
    """What an issue may be written from."""

    fail_to_pass: list[str]
    files: list[str]                  # the files the bug changed
    functions: list[str]              # the functions it changed
    test_source: str | None = None    # the first failing test's source
    test_output: str = ""             # its failure, as the validation run printed it (bounded)
    patch: str = ""                   # the bug-introducing diff (shown to an LM only, as SWE-smith's ig_v2 does)


@dataclass(frozen=True)
class Secrets:
    """What no statement may contain."""

    instance_id: str
    names: tuple[str, ...] = STRATEGY_NAMES
    fix_lines: tuple[str, ...] = ()


@dataclass
class Statement:
    text: str
    source: str                       # "lm", "template:<variant>"
    leak: str | None = None           # why a better statement was refused (the LM's: a leak, no text, too long)


class ChatModel(Protocol):
    def chat(self, messages: list[dict[str, str]]) -> str: ...


# -- evidence -------------------------------------------------------------------------------------

def head_line(test_id: str) -> str:
    """pytest's section title for a node id: ``a/t.py::C::test_x[1]`` -> ``C.test_x[1]``."""
    return ".".join(test_id.split("::")[1:]) or test_id


def failure_excerpt(output: str, test_id: str) -> str:
    """The failure section pytest printed for ``test_id`` (its traceback's last lines, where the
    error is; not what the test printed), else its short-summary line, else ""; bounded to
    ``MAX_OUTPUT_LINES`` lines and ``MAX_OUTPUT_CHARS``."""
    lines = output.splitlines()
    wanted = head_line(test_id)
    section: list[str] | None = None
    for index, line in enumerate(lines):
        match = SECTION.match(line.strip())
        if match and match.group(1) == wanted:
            section = []
            for following in lines[index + 1:]:
                if SECTION.match(following.strip()) or RULE.match(following):
                    break
                section.append(following)
            break
    if section is None:
        section = [line for line in lines if line.startswith(("FAILED ", "ERROR ")) and test_id in line][:1]
    while section and not section[0].strip():
        section.pop(0)
    while section and not section[-1].strip():
        section.pop()
    section = section[-MAX_OUTPUT_LINES:]
    text = "\n".join(section)
    return text[-MAX_OUTPUT_CHARS:]


def test_source(files: dict[str, str], test_id: str) -> str | None:
    """The source of the test function ``test_id`` names (a method when a class is named), bounded."""
    parts = test_id.split("::")
    if len(parts) < 2 or parts[0] not in files:
        return None
    name = parts[-1].split("[", 1)[0]
    owner = parts[-2] if len(parts) > 2 else None
    text = files[parts[0]]
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    scope: Iterable[ast.stmt] = tree.body
    if owner is not None:
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner]
        scope = classes[0].body if classes else []
    for node in scope:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            segment = ast.get_source_segment(text, node, padded=True) or ""
            return "\n".join(segment.splitlines()[:MAX_SOURCE_LINES])
    return None


def evidence(files: dict[str, str], patch: str, fail_to_pass: list[str], failure: str = "",
             functions: Iterable[str] = ()) -> Evidence:
    """The evidence of one bug: ``files`` the bugged tree (may be empty), ``failure`` the first
    failing test's ``failure_excerpt`` from its validation run; ``functions`` default to those the
    patch's hunk headers name."""
    diffs = content_diffs(patch)
    first = fail_to_pass[0] if fail_to_pass else ""
    named = list(functions) or [m.group(1) for d in diffs for h in d.hunks
                                for m in [re.search(r"\b(?:def|class|func|fn|function)\s+(\w+)", h.section or "")] if m]
    return Evidence(
        fail_to_pass=list(fail_to_pass),
        files=sorted({d.new_path or d.old_path or "" for d in diffs} - {""}),
        functions=sorted(set(named)),
        test_source=test_source(files, first) if first else None,
        test_output=failure[-MAX_OUTPUT_CHARS:],
        patch=patch,
    )


def secrets(instance_id: str, patch: str, bugged: dict[str, str]) -> Secrets:
    """The instance's secrets: its id, the strategy names (its own first) and the lines its fix
    puts back (the bug patch's removed lines) that no file of the bugged tree ``bugged`` holds (a
    line with no letter or digit, a lone ``)``, tells nothing)."""
    present = {line.strip() for text in bugged.values() for line in text.splitlines()}
    fix = []
    for diff in content_diffs(patch):
        for hunk in diff.hunks:
            for tag, text in hunk.lines:
                line = text.strip()
                if tag == "-" and re.search(r"\w", line) and line not in present and line not in fix:
                    fix.append(line)
    own = instance_id.rsplit(".", 1)[-1].split("__", 1)[0]  # "func_pm_op_flip" of "<repo>.func_pm_op_flip__<hash>"
    names = tuple(dict.fromkeys(n for n in (own, *STRATEGY_NAMES) if "_" in n))
    return Secrets(instance_id, names, tuple(fix))


def find_leak(text: str, secret: Secrets) -> str | None:
    """What of ``secret`` ``text`` gives away, or None."""
    lowered = text.lower()
    if secret.instance_id and secret.instance_id.lower() in lowered:
        return "the instance id"
    for name in secret.names:
        if name.lower() in lowered:
            return f"the strategy name {name!r}"
    lines = text.splitlines()
    for fix in secret.fix_lines:
        if any(fix in line for line in lines):
            return f"a line of the fix ({fix[:60]!r})"
    return None


# -- templates (swesmith/issue_gen/get_static.py and get_from_tests.py) ---------------------------

def _bullets(items: Iterable[str]) -> str:
    items = list(items)
    shown = items[:MAX_TESTS_LISTED]
    more = [f"... and {len(items) - len(shown)} more"] if len(items) > len(shown) else []
    return "\n".join(f"- {item}" for item in shown + more)


def _basic(ev: Evidence, rng: random.Random) -> str:
    return "There is a bug in this codebase. Please look into it and resolve the issue."


def _files(ev: Evidence, rng: random.Random) -> str:
    return ("There are bug(s) in this codebase, likely located in the following file(s):\n"
            f"{_bullets(ev.files)}\n\nPlease look into them and fix any bugs that you find.")


def _files_funcs(ev: Evidence, rng: random.Random) -> str:
    return ("There are bug(s) in this codebase, likely located in the following file(s).\n"
            f"{_bullets(ev.files)}\n\nI think these function(s) are relevant to the bug:\n{_bullets(ev.functions)}\n\n"
            "Please look into them and fix any bugs that you find.")


def _tests_f2p(ev: Evidence, rng: random.Random) -> str:
    return ("Several tests in the codebase are breaking.\n\nThe tests that are failing are:\n"
            f"{_bullets(ev.fail_to_pass)}\n\nPlease fix the codebase such that the tests pass.")


def _files_test(ev: Evidence, rng: random.Random) -> str:
    return ("There is a bug in this codebase. It seems to be related to the following files:\n"
            f"{_bullets(ev.files)}\n\nPlease look into these files and resolve the issue. "
            f"I believe a test case is also failing because of this bug:\n{rng.choice(ev.fail_to_pass)}")


def _from_tests(ev: Evidence, rng: random.Random) -> str:
    return ("Something is broken: this test fails.\n\n**Test Source Code**\n```python\n"
            f"{ev.test_source}\n```\n\n**Test Output**\n```\n{ev.test_output}\n```\n\n"
            "Please fix the codebase so that it behaves as the test expects.")


# (name, weight, builder, needs): SWE-smith's get_static pool without its bug-type prompts, plus get_from_tests
VARIANTS = (
    ("basic", 0.05, _basic, ()),
    ("files", 0.10, _files, ("files",)),
    ("files_funcs", 0.15, _files_funcs, ("files", "functions")),
    ("tests_f2p", 0.20, _tests_f2p, ("fail_to_pass",)),
    ("files_test", 0.20, _files_test, ("files", "fail_to_pass")),
    ("from_tests", 0.30, _from_tests, ("test_source", "test_output")),
)


def _rng(key: str) -> random.Random:
    return random.Random(int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16))


def template_statement(ev: Evidence, key: str) -> tuple[str, str]:
    """``(variant name, text)``: one variant drawn by weight, seeded by ``key``, among those the evidence fills."""
    rng = _rng(key)
    usable = [v for v in VARIANTS if all(getattr(ev, need) for need in v[3])]
    name, _, build, _ = rng.choices(usable, weights=[v[1] for v in usable], k=1)[0]
    return name, build(ev, rng)


def _without_leaking_lines(ev: Evidence, secret: Secrets) -> Evidence:
    def keep(text: str | None) -> str:
        return "\n".join(line for line in (text or "").splitlines() if find_leak(line, secret) is None)

    return Evidence(fail_to_pass=[t for t in ev.fail_to_pass if find_leak(t, secret) is None],
                    files=[f for f in ev.files if find_leak(f, secret) is None],
                    functions=[f for f in ev.functions if find_leak(f, secret) is None],
                    test_source=keep(ev.test_source) or None, test_output=keep(ev.test_output), patch="")


# -- an LM writes it (configs/issue_gen/ig_v2.yaml) ---------------------------------------------------

LM_SYSTEM = """You are a software engineer helping to create a realistic dataset of synthetic GitHub issues.

You will be given the following input:

1. Patch: A git diff that introduces a bug (in the <patch> tag).
2. Test output: The output of running the tests after the patch is applied (in the <test_output> tag).
3. Test source code: Source code for a test that failed (in the <test_source_code> tag).

Output: A realistic GitHub issue for the patch.

Guidelines:
- DO NOT explain the fix or what caused the bug itself; focus on how to reproduce the issue it introduces.
- Do not mention pytest or what exact test failed. Instead, generate a realistic issue.
- If possible, include how to reproduce the issue: a short script that prints an unexpected output,
  together with the expected output."""

LM_INSTANCE = """Now, write a GitHub issue for the following patch (diff output).

<IMPORTANT>
- DO NOT GIVE AWAY THE FIX! THE SOLUTION CODE SHOULD NEVER APPEAR IN YOUR RESPONSE.
- DO NOT SAY THAT EXISTING TEST(s) FAILED.
- DO NOT SUGGEST RUNNING ANY TESTING COMMANDS (e.g., pytest).
- Keep the issue text short, as a developer would write it.
</IMPORTANT>

<patch>
{patch}
</patch>

<test_output>
{test_output}
</test_output>

<test_source_code>
{test_source}
</test_source_code>

**Issue Text**
"""


def lm_messages(ev: Evidence) -> list[dict[str, str]]:
    return [{"role": "system", "content": LM_SYSTEM},
            {"role": "user", "content": LM_INSTANCE.format(patch=ev.patch.strip(), test_output=ev.test_output,
                                                           test_source=ev.test_source or "")}]


MIN_WORDS = 8  # an issue says what goes wrong in at least a sentence


def unusable(text: str, ev: Evidence) -> str | None:
    """Why an LM's text is no issue about this bug (None: it may be one): fewer than ``MIN_WORDS``
    words, mostly not words, or naming none of the changed files, changed functions or failing
    tests (what a reader needs to find the problem; a model's noise names none of them)."""
    tokens = text.split()
    if len(tokens) < MIN_WORDS:
        return f"the LM wrote {len(tokens)} words, not an issue"
    wordy = sum(1 for t in tokens if re.fullmatch(r"[A-Za-z][A-Za-z'-]*[.,:;!?)]*", t.strip("(`\"'")))
    if wordy < len(tokens) / 2:
        return "the LM's text is mostly not words"
    names = {PurePosixPath(f).name for f in ev.files} | set(ev.functions)
    names |= {t.split("::")[-1].split("[")[0] for t in ev.fail_to_pass}
    if not any(len(name) >= 3 and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) for name in names):
        return "the LM's text names none of the changed files, functions or failing tests"
    return None


def problem_statement(ev: Evidence, secret: Secrets, key: str, lm: ChatModel | None = None) -> Statement:
    """The statement of one bug: the LM's when ``lm`` is given and its text does not leak, else a
    template's (see the module docstring for the order)."""
    refused = None
    if lm is not None:
        try:
            text = lm.chat(lm_messages(ev)).strip()
        except PromptTooLong as exc:
            text, refused = "", exc.message
        else:
            refused = "the LM wrote nothing" if not text else find_leak(text, secret) or unusable(text, ev)
        if refused is None:
            return Statement(text, "lm")
        refused = f"LM: {refused}"
    variant, text = template_statement(ev, key)
    leak = find_leak(text, secret)
    if leak is None:
        return Statement(text, f"template:{variant}", refused)
    variant, text = template_statement(_without_leaking_lines(ev, secret), key)
    if find_leak(text, secret) is None:
        return Statement(text, f"template:{variant}", refused or f"template: {leak}")
    return Statement(_basic(ev, _rng(key)), "template:basic", refused or f"template: {leak}")


def statement_stats(statements: dict[str, Statement]) -> dict:
    """How the statements of a run were written: counts by source, and each refused text's reason."""
    by_source: dict[str, int] = {}
    for statement in statements.values():
        by_source[statement.source] = by_source.get(statement.source, 0) + 1
    refused = [{"instance_id": key, "reason": s.leak} for key, s in sorted(statements.items()) if s.leak]
    return {"by_source": dict(sorted(by_source.items())), "refused": refused}
