"""Offline SWE-smith: bug-fix tasks made from any local git repository (``--source repo:PATH``).

Procedure (SWE-smith's procedural ``func_pm_*`` generation plus its ``valid``/``gather`` steps):

1. Read the repository's tracked files at HEAD (``git ls-files``; text files only). Candidate
   functions are those of tracked ``*.py`` files that are not tests (``test_*.py``,
   ``*_test.py``, ``tests/``, ``conftest.py``).
2. Candidate bugs: every site of every transform in ``transforms`` over every candidate function,
   shuffled with ``seed``; the first ``max_bugs`` are tried.
3. Run the test command on the clean tree once (the reference run), then on each bugged tree, in
   the sandbox (``hrmcode.sandbox``, no network), with strict verdicts
   (``hrmcode.sandbox.reports.pytest_report.run_suite``, its strict checks on, as ``validate``
   runs them later): per-test outcomes come only from hrmcode's pytest reporter (full node ids,
   subtests), never from the output the tested code prints; a run whose report is missing, torn
   or disagrees with the exit status gives no verdict. The bugged tree differs from HEAD in the bugged file only
   (tests, ``conftest.py`` and config are HEAD's).
4. Keep a bug only when at least one of the reference's passing tests does not pass on the bugged
   tree (FAIL_TO_PASS; a test missing from the report has not passed) and at least one still
   passes (PASS_TO_PASS), and the run gave a verdict (not timed out, report complete).
5. Emit SWE-smith task instances (the 9-field schema: ``instance_id`` =
   ``<owner>__<repo>.<commit8>.func_pm_<type>__<hash8>``, ``repo``, ``patch`` = the bug-introducing
   diff, FAIL_TO_PASS, PASS_TO_PASS, ``created_at`` = the commit's date (so reruns give the same
   bytes), ``image_name`` = "" (no Docker image: the tree is run from the host's files),
   ``base_commit`` = HEAD, ``problem_statement`` = "" (no LM writes issues here, so the prompt is
   built from the failing tests, as for the first SWE-smith release's rows without one)),
   normalised by the ``swe-smith`` source into a ``tasks`` artifact whose tasks also carry the
   bugged files (``files``/``editable``) so edit examples can show whole files. ``instances.jsonl``
   is kept beside ``tasks.jsonl``, and ``repository.jsonl`` holds the repository's files at HEAD
   (``path``, ``text``), so ``validate`` can run an example's FAIL_TO_PASS / PASS_TO_PASS tests.

Not guaranteed: that every candidate is tried within a time budget (each costs one test run);
that test ids are stable across runs of flaky suites.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hrmcode.artifacts import Artifact, ArtifactWriter, output_location
from hrmcode.data.bugs.transforms import candidate_bugs
from hrmcode.data.testfiles import is_test_path
from hrmcode.diffs import apply_file_diff, content_diffs, tree_patch
from hrmcode.errors import InputError, ToolchainMissing, UsageError
from hrmcode.reporting import reporter
from hrmcode.sandbox.base import Limits
from hrmcode.sandbox.reports.pytest_report import run_suite

STATUS = re.compile(r"^(?:(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b|"
                    r"(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(\S+::\S+))")
MAX_FILE_BYTES = 1 << 20
REPOSITORY = "repository.jsonl"  # the repository's files at HEAD, beside tasks.jsonl


def parse_pytest_log(log: str) -> dict[str, str]:
    """``{test id: status}`` from verbose (``id STATUS``) and ``-rA`` summary (``STATUS id``) lines:
    SWE-smith's parser, for reading the logs of SWE-smith's own runs. Never a verdict here: the
    tested code writes that output, ids with spaces are cut and subtests are lost."""
    results: dict[str, str] = {}
    for line in log.splitlines():
        match = STATUS.match(line.strip())
        if not match:
            continue
        test, status = (match.group(1), match.group(2)) if match.group(1) else (match.group(4), match.group(3))
        test = test.split(" - ", 1)[0]
        # a test that errors in teardown after passing is reported twice; the failure wins
        if results.get(test) in ("FAILED", "ERROR") and status == "PASSED":
            continue
        results[test] = status
    return results


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ToolchainMissing("git is not installed", "apt-get install git") from None
    if done.returncode != 0:
        raise InputError(f"{repo}: git {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}",
                         "repo:PATH must be a git repository with at least one commit")
    return done.stdout


@dataclass
class RepoInfo:
    path: Path
    owner: str
    name: str
    commit: str
    created_at: str
    files: dict[str, str]

    @property
    def repo_name(self) -> str:
        return f"{self.owner}__{self.name}.{self.commit[:8]}"


def read_repo(path: str | Path) -> RepoInfo:
    repo = Path(path).expanduser().resolve()
    if not repo.is_dir():
        raise InputError(f"repo:{path}: no such directory", "give the path of a local git repository")
    if not (repo / ".git").exists():
        raise InputError(f"repo:{path} is not a git repository", "run `git init && git add -A && git commit` there first")
    commit = _git(repo, "rev-parse", "HEAD").strip()
    created = _git(repo, "log", "-1", "--format=%cI").strip()
    owner, name = "local", repo.name
    try:
        url = _git(repo, "remote", "get-url", "origin").strip()
        match = re.search(r"[:/]([^/:]+)/([^/]+?)(?:\.git)?$", url)
        if match:
            owner, name = match.group(1), match.group(2)
    except InputError:
        pass  # no remote: a local-only repository
    files: dict[str, str] = {}
    for rel in _git(repo, "ls-files", "-z").split("\0"):
        if not rel:
            continue
        full = repo / rel
        if not full.is_file() or full.stat().st_size > MAX_FILE_BYTES:
            continue
        try:
            files[rel] = full.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary files are not needed to run Python tests here
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return RepoInfo(repo, re.sub(r"[^A-Za-z0-9_.-]", "_", owner), clean, commit, created, files)


@dataclass
class Candidate:
    path: str
    function: str
    kind: str
    bugged: str  # the whole bugged file


def candidates(info: RepoInfo, seed: int) -> list[Candidate]:
    found: list[Candidate] = []
    for path in sorted(info.files):
        if not path.endswith(".py") or is_test_path(path, "python"):
            continue
        source = info.files[path]
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for site, bugged in candidate_bugs(source, node):
                    found.append(Candidate(path, node.name, site.kind, bugged))
    unique = {c.bugged: c for c in found}  # two sites giving the same text are one bug
    ordered = sorted(unique.values(), key=lambda c: (c.path, c.function, c.kind, c.bugged))
    random.Random(seed).shuffle(ordered)
    return ordered


def bug_patch(path: str, before: str, after: str) -> str:
    """A git-style unified diff of one file (the bug-introducing ``patch``)."""
    return tree_patch({path: before}, {path: after})


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def pytest_command(test_cmd: str) -> str:
    if "pytest" in test_cmd and not re.search(r"(^|\s)-r\w*A", test_cmd):
        return f"{test_cmd} -rA"
    return test_cmd


@dataclass
class BugResult:
    artifact: Artifact | None
    stats: dict = field(default_factory=dict)


def repo_tasks(
    path: str,
    *,
    test_cmd: str | None,
    seed: int = 0,
    max_bugs: int = 50,
    timeout_s: float = 120.0,
    workspace: Path | str | None = None,
    out: Path | str | None = None,
    dry_run: bool = False,
    sandbox=None,
) -> BugResult:
    """Inject, validate and gather bugs of the repository at ``path`` into a ``tasks`` artifact."""
    if not test_cmd:
        raise UsageError("--source repo:PATH needs --test-cmd", "e.g. --test-cmd 'python -m pytest tests'")
    info = read_repo(path)
    pool = candidates(info, seed)
    tried = pool[:max_bugs]
    stats: dict = {"repo": str(info.path), "commit": info.commit, "candidates": len(pool), "tried": len(tried),
                   "by_type_tried": dict(sorted(Counter(c.kind for c in tried).items()))}
    if dry_run:
        return BugResult(None, stats)
    if not tried:
        raise InputError(f"repo:{path} has no Python function a bug can be injected into",
                         "repo:PATH needs non-test Python code")
    if sandbox is None:
        from hrmcode.sandbox import get_sandbox

        sandbox = get_sandbox()
    command = pytest_command(test_cmd)
    limits = Limits(timeout_s=timeout_s, memory_mb=4096)
    # strict, as validate runs these tests later: both see the same reporter checks
    reference = run_suite(sandbox, info.files, command, limits, strict=True)
    passing = reference.passing()
    if not passing:
        why = reference.problem or f"{len(reference.outcomes)} tests, none passed"
        raise InputError(f"the reference run of `{command}` gives no passing test: {why}",
                         "check --test-cmd; it must run pytest over the repository's tests, which must pass at HEAD")
    stats["reference_tests"] = len(reference.outcomes)
    stats["reference_passing"] = len(passing)
    instances: list[dict] = []
    rejected: Counter = Counter()
    with reporter().task("validate bugs", total=len(tried)) as bar:
        for candidate in tried:
            # only the bugged file is the candidate's: tests, conftest and config stay as at HEAD
            files = {**info.files, candidate.path: candidate.bugged}
            run = run_suite(sandbox, files, command, limits, changed=[candidate.path], strict=True)
            bar.advance()
            if run.problem is not None:
                rejected["timed_out" if run.result.timed_out else "no_complete_report"] += 1
                continue
            # counted against the reference's passing tests: a test missing from the report did not pass
            fail_to_pass = run.not_passed(passing)
            pass_to_pass = sorted(passing - set(fail_to_pass))
            if not fail_to_pass:
                rejected["no_test_broke"] += 1
                continue
            if not pass_to_pass:
                rejected["no_test_kept_passing"] += 1
                continue
            patch = bug_patch(candidate.path, info.files[candidate.path], candidate.bugged)
            instances.append({
                "instance_id": f"{info.repo_name}.func_pm_{candidate.kind}__{short_hash(patch)}",
                "repo": info.repo_name,
                "patch": patch,
                "FAIL_TO_PASS": fail_to_pass,
                "PASS_TO_PASS": pass_to_pass,
                "created_at": info.created_at,
                "image_name": "",
                "base_commit": info.commit,
                "problem_statement": "",
            })
    stats["kept"] = len(instances)
    stats["rejected"] = dict(sorted(rejected.items()))
    stats["by_type_kept"] = dict(sorted(Counter(i["instance_id"].split(".func_pm_")[1].split("__")[0]
                                                for i in instances).items()))
    if not instances:
        raise InputError(f"none of the {len(tried)} candidate bugs in repo:{path} broke a test while others kept passing",
                         "raise --max-bugs, or check that --test-cmd runs the tests of the code")
    artifact = _write_tasks(info, instances, command, stats, seed, workspace, out)
    return BugResult(artifact, stats)


def _write_tasks(info: RepoInfo, instances: list[dict], command: str, stats: dict, seed: int,
                 workspace: Path | str | None, out: Path | str | None) -> Artifact:
    from hrmcode.data.sources.swe_smith import to_task

    name = f"repo-{info.name}"
    params = {"source": "swe-smith", "repo": str(info.path), "commit": info.commit, "test_cmd": command, "seed": seed}
    out_dir, update_latest = output_location("fetch", name, out, workspace, params)
    tasks = []
    for instance in sorted(instances, key=lambda i: i["instance_id"]):
        task = to_task(instance, instance["instance_id"])
        changed = [p for p in task.metadata.get("changed_files", []) if p in info.files]
        bugged = {}
        for diff in content_diffs(instance["patch"]):
            if diff.path in changed:
                bugged[diff.path] = apply_file_diff(info.files[diff.path], diff)
        tests = task.tests.model_copy(update={"command": command})
        tasks.append(task.model_copy(update={"files": bugged, "editable": sorted(bugged), "tests": tests}))
    by_language = Counter(t.language for t in tasks)
    with ArtifactWriter(out_dir, "tasks", name=name, params=params, seed=seed, update_latest=update_latest) as writer:
        writer.write_jsonl("instances.jsonl", sorted(instances, key=lambda i: i["instance_id"]))
        writer.write_jsonl("tasks.jsonl", tasks)
        writer.write_jsonl(REPOSITORY, [{"path": p, "text": t} for p, t in sorted(info.files.items())])
        artifact = writer.finish({**stats, "source": "swe-smith", "origin": f"repo:{info.path}",
                                  "records": len(tasks), "languages": dict(by_language)})
    reporter().log(f"{len(tasks)} bug tasks from {info.path} -> {artifact.path}")
    return artifact

