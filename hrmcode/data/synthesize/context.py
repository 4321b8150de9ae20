"""What every synthesis rule reads about one task: the fix as per-file diffs, the files before
and after it where the task carries them, the test command, and the task's analysis profile.

The fix is, in order of preference: ``solution.patch`` (SWE-smith: the reverse of the
bug-introducing ``patch``, computed by ``fetch``), else the difference between the starting
files and ``solution.files`` (exercises, HumanEval). Nothing here is invented: a task without
a fix yields an empty ``fix`` and the rules that need one emit nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hrmcode.data.synthesize.symbols import language_of
from hrmcode.diffs import FileDiff, apply_file_diff, content_diffs, diff_texts

# SWE-smith's per-language default test commands, used when a
# repo-patch task carries none of its own.
SWE_SMITH_TEST_COMMANDS = {
    "python": "pytest --disable-warnings --color=no --tb=no --verbose",
    "go": "go test -v ./...",
    "rust": "cargo test --verbose",
}


@dataclass
class TaskContext:
    task: dict
    profile: dict
    fix: list[FileDiff] = field(default_factory=list)
    before: dict[str, str] = field(default_factory=dict)  # whole files before the fix, where known
    after: dict[str, str] = field(default_factory=dict)  # whole files after the fix, where known
    run: dict | None = None  # the task's executed reference run, kept or not (tool.execute_reference_runs)
    # its tests run from its repository's files (``repo:PATH`` tasks, ``repository.jsonl`` beside them),
    # not in the image its ``image_name`` names (SWE-smith's name for it, which hrmcode never builds)
    from_repository: bool = False

    @property
    def id(self) -> str:
        return self.task["id"]

    @property
    def language(self) -> str:
        return self.task.get("language") or "python"

    @property
    def kind(self) -> str:
        return self.task.get("kind", "")

    @property
    def prompt(self) -> str:
        return self.task.get("prompt", "")

    @property
    def tests(self) -> dict:
        return self.task.get("tests") or {}

    @property
    def metadata(self) -> dict:
        return self.task.get("metadata") or {}

    def fix_paths(self) -> list[str]:
        return [d.path for d in self.fix]

    def file_language(self, path: str) -> str:
        return language_of(path) or self.language

    def test_command(self) -> str | None:
        """The task's own command, else SWE-smith's default for the language; SWE-smith's pytest
        default is narrowed to the FAIL_TO_PASS test files, as SWE-smith's ``get_test_cmd`` does."""
        command = self.tests.get("command")
        if self.kind != "repo-patch":
            return command or None
        base = SWE_SMITH_TEST_COMMANDS.get(self.language)
        if not command:
            command = base
        if command and command == base and self.language == "python":
            files = list(dict.fromkeys(t.split("::", 1)[0] for t in self.tests.get("fail_to_pass", []) if "::" in t))
            if files:
                return f"{command} {' '.join(files)}"
        return command


def build_context(task: dict, profile: dict, run: dict | None = None, from_repository: bool = False) -> TaskContext:
    ctx = TaskContext(task=task, profile=profile, run=run, from_repository=from_repository)
    files = task.get("files") or {}
    solution = task.get("solution") or {}
    patch = solution.get("patch")
    if patch:
        ctx.fix = content_diffs(patch)
        for diff in ctx.fix:
            if diff.old_path in files:
                ctx.before[diff.path] = files[diff.old_path]
                ctx.after[diff.path] = apply_file_diff(files[diff.old_path], diff)
    elif solution.get("files"):
        for path in sorted(solution["files"]):
            after = solution["files"][path]
            before = files.get(path, "")
            if before == after:
                continue
            diff = diff_texts(path if before else None, path, before, after)
            if not diff.hunks:
                continue
            ctx.fix.append(diff)
            ctx.before[path] = before
            ctx.after[path] = after
    return ctx

