"""``hrmcode analyze``: a profile of every task of a ``tasks`` artifact -> an ``analysis`` artifact
(``analysis.parquet``, one row per task) and a summary by source, language, domain and stage.

Everything is computed with vectorised polars expressions over the whole file (``tasks.jsonl`` is
read with ``pl.read_ndjson`` and an explicit schema; path->content maps are read as their JSON
text and measured with regular expressions), never with a per-task Python loop.

Columns (all counts are integers):
- ``id, source, language, kind, title``; ``languages``: the task's languages plus the languages of
  the files its patch touches (by extension).
- Complexity: ``files_touched`` (files in the solution patch; else solution files; else editable
  files; at least 1), ``hunks`` and ``lines_added``/``lines_removed`` (of the solution patch; 0
  for whole-file solutions), ``solution_lines`` (patch: lines added; function tasks: solution
  lines beyond the prompt; other whole-file solutions: their lines; 0 without a solution),
  ``functions`` (patch: distinct non-empty hunk headings; whole files: function/method
  definitions), ``tests`` (repo-patch: FAIL_TO_PASS + PASS_TO_PASS; stdin/functional: cases;
  function: ``assert`` statements; exercise: test functions/cases in the test files).
- ``tools``: programs needed, from language, kind and test command: git and docker (repo-patch;
  docker when the task names an image), python/pytest, go, cargo, node/npm/jest, javac/junit/gradle,
  g++/cmake.
- Domain: ``score_<domain>`` = number of domain keyword hits (whole words, case-insensitive; words
  are runs of letters, digits, ``+`` and ``#``) in the title, prompt, repository name and file paths, for web, data_science, systems, devops, backend,
  frontend, mobile, game, security and general. ``domain`` = the specialised domain with the
  highest score when that score is at least 2 (ties: the order above), else ``general``.
- ``stage`` (curriculum) and ``stage_name``, first rule that matches:
  4 ``tool_use``: kind ``repo-patch`` (a repository, git and a test runner must be driven);
  3 ``multi_file``: ``files_touched`` >= 2;
  2 ``algorithmic``: kind stdin/functional, or ``solution_lines`` > 10, or the solution loops
  (``for x in``, ``for (``, ``while``, ``loop {``, ``.forEach(``);
  1 ``syntax``: everything else (short, loop-free, single-file).
- ``estimated_agents`` = min(6, 1 + (files_touched - 1) // 2 + [stage 4] + [more than one language]);
  ``coordination`` = ``none`` (1 agent), ``handoff`` (2: plan then edit), ``team`` (3+: a planner
  splitting files among editors); ``hierarchical_depth`` = 1 + [functions > 1 or files_touched > 1]
  + [stage 4] (1..3 planning levels).

Not guaranteed: the keyword domain is a heuristic, and file/line counts taken from JSON text can be
off by a few for paths or contents with unusual escapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from hrmcode.artifacts import ArtifactWriter, load_artifact, output_location
from hrmcode.data.sources._common import EXTENSION_LANGUAGE
from hrmcode.errors import InputError
from hrmcode.reporting import reporter

DOMAIN_KEYWORDS: dict[str, tuple[str, ...]] = {
    "web": ("http", "https", "url", "html", "css", "web", "website", "browser", "request", "response", "cookie",
            "django", "flask", "fastapi", "starlette", "tornado", "aiohttp", "requests", "httpx", "urllib", "rest",
            "api", "json", "websocket", "server", "client", "route", "router", "endpoint", "jinja", "template"),
    "data_science": ("pandas", "numpy", "scipy", "dataframe", "series", "matrix", "tensor", "statistics", "mean",
                     "median", "regression", "dataset", "csv", "parquet", "plot", "matplotlib", "seaborn", "sklearn",
                     "torch", "model", "training", "feature", "column", "columns", "array", "arrays", "dtype",
                     "xarray", "pyarrow", "polars", "histogram", "probability", "variance"),
    "systems": ("memory", "pointer", "thread", "threads", "mutex", "lock", "concurrency", "concurrent", "parallel",
                "process", "kernel", "syscall", "buffer", "allocator", "alloc", "cache", "bit", "bits", "byte",
                "bytes", "binary", "socket", "file", "filesystem", "io", "stream", "signal", "unsafe", "os"),
    "devops": ("docker", "container", "kubernetes", "k8s", "deploy", "deployment", "ci", "pipeline", "yaml",
               "terraform", "ansible", "helm", "config", "configuration", "environment", "logging", "monitoring",
               "cli", "shell", "bash", "command", "git", "build", "package", "install", "cloud", "aws", "moto"),
    "backend": ("database", "sql", "sqlalchemy", "query", "orm", "schema", "migration", "transaction", "redis",
                "postgres", "mysql", "sqlite", "queue", "worker", "service", "auth", "session", "user", "users",
                "account", "bank", "ledger", "pydantic", "validation", "serializer", "model", "models", "record"),
    "frontend": ("ui", "component", "react", "vue", "angular", "dom", "css", "style", "layout", "render",
                 "button", "widget", "click", "view", "display", "markdown", "color", "colour", "font", "svg"),
    "mobile": ("android", "ios", "mobile", "swift", "kotlin", "flutter", "phone", "touch", "gesture", "tablet"),
    "game": ("game", "games", "player", "players", "board", "chess", "poker", "card", "cards", "dice", "score",
             "bowling", "tennis", "puzzle", "sudoku", "maze", "minesweeper", "tic", "tac", "toe", "dominoes", "robot"),
    "security": ("security", "crypto", "cryptography", "cipher", "encrypt", "decrypt", "hash", "hashing", "password",
                 "token", "jwt", "oauth", "ssl", "tls", "certificate", "vulnerability", "injection", "xss",
                 "sanitize", "secret", "key", "keys", "signature", "rot13", "affine"),
    "general": ("algorithm", "function", "string", "strings", "list", "lists", "integer", "integers", "number",
                "numbers", "sort", "sorted", "search", "recursion", "tree", "graph", "parse", "parser", "count",
                "sum", "prime", "sequence", "array", "loop"),
}
DOMAINS = tuple(DOMAIN_KEYWORDS)
SPECIALISED = DOMAINS[:-1]
DOMAIN_MIN_SCORE = 2
STAGE_NAMES = {1: "syntax", 2: "algorithmic", 3: "multi_file", 4: "tool_use"}

TASK_SCHEMA = {
    "id": pl.String,
    "source": pl.String,
    "language": pl.String,
    "languages": pl.List(pl.String),
    "kind": pl.String,
    "title": pl.String,
    "prompt": pl.String,
    "files": pl.String,  # path -> content map, as JSON text
    "editable": pl.List(pl.String),
    "solution": pl.Struct({"files": pl.String, "patch": pl.String}),
    "tests": pl.Struct({
        "files": pl.String,
        "cases": pl.List(pl.Struct({"public": pl.Boolean})),
        "fail_to_pass": pl.List(pl.String),
        "pass_to_pass": pl.List(pl.String),
        "command": pl.String,
    }),
    "metadata": pl.Struct({"repo": pl.String, "image_name": pl.String, "canonical_solution": pl.String}),
}

JSON_KEY = r'"((?:[^"\\]|\\.)*)"\s*:'
PATCH_FILE = r"(?m)^diff --git a/\S+ b/(\S+)"
HUNK_HEADING = r"(?m)^@@ [^@]*@@ ?(.*\S.*)$"
DEFINITION = (
    r"(?m)^[ \t]*(?:(?:pub(?:\(\w+\))?|async|export|static|public|private|protected|final|inline|virtual)\s+)*"
    r"(?:def|fn|func|function)\s+\w"
    r"|(?:public|private|protected)\s+(?:static\s+)?(?:final\s+)?[\w<>\[\],]+\s+\w+\s*\("
)
LOOP = r"\bfor\s+\w+(?:\s*,\s*\w+)*\s+in\b|\bfor\s*\(|\bwhile\b|\bloop\s*\{|\.forEach\("
TEST_DEF = (
    r"\bdef test\w*\s*\(|\bfunc Test\w*\s*\(|#\[test\]|@Test\b|\bTEST_CASE\s*\("
    r"|\b(?:x?test|it)\s*\(\s*(?:\\\"|'|`|\")"
)


def _unescape_lines(column: str) -> pl.Expr:
    """A path->content map's JSON text with ``\\n``/``\\t`` escapes turned back into real newlines and
    tabs, so that line-anchored and word-boundary patterns work on the contents."""
    return pl.col(column).fill_null("{}").str.replace_all("\\n", "\n", literal=True).str.replace_all("\\t", "\t", literal=True)


def _keys(column: str) -> pl.Expr:
    return pl.col(column).fill_null("{}").str.extract_all(JSON_KEY).list.eval(pl.element().str.extract(JSON_KEY))


def _ext_languages(paths: pl.Expr) -> pl.Expr:
    return paths.list.eval(
        pl.element().str.extract(r"(\.[A-Za-z0-9+]+)$").str.to_lowercase()
        .replace_strict(EXTENSION_LANGUAGE, default=None, return_dtype=pl.String)
    ).list.drop_nulls()


_KEYWORD_TABLE = pl.DataFrame(
    [(word, domain) for domain, words in DOMAIN_KEYWORDS.items() for word in sorted(set(words))],
    schema={"word": pl.String, "domain": pl.String}, orient="row",
)


def _domain_scores(texts: pl.DataFrame) -> pl.DataFrame:
    """``score_<domain>`` columns: keyword hits per row. The texts are split into words once and
    joined against the keyword table (one pass, instead of one regex scan per domain)."""
    tokens = texts.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), pl.col("text").str.extract_all(r"[a-z0-9+#]+").alias("word")
    ).explode("word")
    hits = tokens.join(_KEYWORD_TABLE, on="word", how="inner").group_by("row", "domain").agg(pl.len().cast(pl.Int64).alias("n"))
    rows = pl.DataFrame({"row": pl.arange(0, texts.height, eager=True, dtype=pl.UInt32)})
    for domain in DOMAINS:
        per_domain = hits.filter(pl.col("domain") == domain).select("row", pl.col("n").alias(f"score_{domain}"))
        rows = rows.join(per_domain, on="row", how="left", maintain_order="left")
    return rows.select(pl.col(f"score_{d}").fill_null(0) for d in DOMAINS)


def profile(tasks: pl.DataFrame) -> pl.DataFrame:
    """One analysis row per task row (see the module docstring for every column)."""
    base = tasks.select(
        "id", "source", "language", "kind",
        pl.col("title").fill_null(""),
        pl.col("prompt").fill_null(""),
        pl.col("languages").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.col("editable").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.col("files"),
        pl.col("solution").struct.field("files").alias("solution_files"),
        pl.col("solution").struct.field("patch").fill_null("").alias("patch"),
        pl.col("tests").struct.field("files").alias("test_files"),
        pl.col("tests").struct.field("cases").list.len().fill_null(0).alias("n_cases"),
        pl.col("tests").struct.field("fail_to_pass").list.len().fill_null(0).alias("n_f2p"),
        pl.col("tests").struct.field("pass_to_pass").list.len().fill_null(0).alias("n_p2p"),
        pl.col("tests").struct.field("command").fill_null("").alias("command"),
        pl.col("metadata").struct.field("repo").fill_null("").alias("repo"),
        pl.col("metadata").struct.field("image_name").alias("image_name"),
        pl.col("metadata").struct.field("canonical_solution").alias("canonical_solution"),
    )
    base = base.with_columns(
        _unescape_lines("solution_files").alias("solution_files"),
        _unescape_lines("test_files").alias("test_files"),
        _unescape_lines("files").alias("files"),
    )
    has_patch = pl.col("patch").str.len_chars() > 0
    measured = base.with_columns(
        pl.col("patch").str.extract_all(PATCH_FILE).list.eval(pl.element().str.extract(PATCH_FILE)).alias("patch_paths"),
        _keys("solution_files").alias("solution_paths"),
        _keys("files").alias("file_paths"),
        pl.col("patch").str.count_matches(r"(?m)^@@ ").alias("hunks"),
        (pl.col("patch").str.count_matches(r"(?m)^\+") - pl.col("patch").str.count_matches(r"(?m)^\+\+\+ ")).alias("lines_added"),
        (pl.col("patch").str.count_matches(r"(?m)^-") - pl.col("patch").str.count_matches(r"(?m)^--- ")).alias("lines_removed"),
        pl.col("patch").str.extract_all(HUNK_HEADING).list.eval(pl.element().str.extract(HUNK_HEADING).str.strip_chars())
        .list.unique().list.len().alias("patch_functions"),
        pl.col("solution_files").str.count_matches(DEFINITION).alias("file_functions"),
        pl.col("solution_files").str.count_matches("\n", literal=True).alias("solution_file_lines"),
        pl.col("files").str.count_matches("\n", literal=True).alias("starting_lines"),
        pl.when(pl.col("canonical_solution").is_not_null()).then(pl.col("canonical_solution"))
        .when(has_patch).then(pl.col("patch")).otherwise(pl.col("solution_files")).str.contains(LOOP).alias("loops"),
        pl.col("test_files").str.count_matches(TEST_DEF).alias("test_defs"),
        pl.col("test_files").str.count_matches(r"\bassert\b").alias("asserts"),
    ).with_columns(
        pl.when(has_patch).then(pl.col("patch_paths").list.len())
        .when(pl.col("solution_paths").list.len() > 0).then(pl.col("solution_paths").list.len())
        .otherwise(pl.col("editable").list.len()).clip(lower_bound=1).alias("files_touched"),
        pl.when(has_patch).then(pl.col("lines_added"))
        .when(pl.col("kind") == "function").then((pl.col("solution_file_lines") - pl.col("starting_lines")).clip(lower_bound=0))
        .otherwise(pl.col("solution_file_lines")).alias("solution_lines"),
        pl.when(has_patch).then(pl.col("patch_functions")).otherwise(pl.col("file_functions")).alias("functions"),
        pl.when(pl.col("kind") == "repo-patch").then(pl.col("n_f2p") + pl.col("n_p2p"))
        .when(pl.col("kind").is_in(["stdin", "functional"])).then(pl.col("n_cases"))
        .when(pl.col("kind") == "function").then(pl.col("asserts"))
        .otherwise(pl.col("test_defs")).alias("tests"),
        pl.concat_list(pl.col("language"), pl.col("languages"), _ext_languages(pl.col("patch_paths")))
        .list.unique().list.sort().list.filter(pl.element() != "unknown").alias("all_languages"),
    )
    langs = pl.col("all_languages")
    command = pl.col("command")
    tool_rules: list[tuple[str, pl.Expr]] = [
        ("git", pl.col("kind") == "repo-patch"),
        ("docker", (pl.col("kind") == "repo-patch") & pl.col("image_name").is_not_null()),
        ("python", langs.list.contains("python")),
        ("pytest", command.str.contains(r"\bpytest\b")),
        ("go", langs.list.contains("go") | command.str.contains(r"\bgo test\b")),
        ("cargo", langs.list.contains("rust") | command.str.contains(r"\bcargo\b")),
        ("node", langs.list.contains("javascript") | langs.list.contains("typescript")),
        ("npm", command.str.contains(r"\bnpm\b")),
        ("jest", command.str.contains(r"\b(?:npm|jest)\b") & langs.list.contains("javascript")),
        ("javac", langs.list.contains("java")),
        ("junit", langs.list.contains("java") & (pl.col("tests") > 0)),
        ("gradle", command.str.contains(r"gradle")),
        ("g++", langs.list.contains("cpp") | langs.list.contains("c")),
        ("cmake", command.str.contains(r"\bcmake\b")),
    ]
    domain_text = pl.concat_str(
        [pl.col("title"), pl.col("prompt"), pl.col("repo"), pl.col("patch_paths").list.join(" "),
         pl.col("file_paths").list.join(" ")],
        separator=" ",
    ).str.to_lowercase()
    scored = measured.with_columns(
        pl.concat_list([pl.when(rule).then(pl.lit(tool)) for tool, rule in tool_rules]).list.drop_nulls().alias("tools"),
    ).hstack(_domain_scores(measured.select(domain_text.alias("text"))))
    specialised = pl.concat_list([pl.col(f"score_{d}") for d in SPECIALISED])
    staged = scored.with_columns(
        pl.when(specialised.list.max() >= DOMAIN_MIN_SCORE)
        .then(specialised.list.arg_max().replace_strict(dict(enumerate(SPECIALISED)), return_dtype=pl.String))
        .otherwise(pl.lit("general")).alias("domain"),
        pl.when(pl.col("kind") == "repo-patch").then(4)
        .when(pl.col("files_touched") >= 2).then(3)
        .when(pl.col("kind").is_in(["stdin", "functional"]) | (pl.col("solution_lines") > 10) | pl.col("loops").fill_null(False)).then(2)
        .otherwise(1).cast(pl.Int8).alias("stage"),
    ).with_columns(
        pl.col("stage").replace_strict(STAGE_NAMES, return_dtype=pl.String).alias("stage_name"),
        pl.min_horizontal(
            pl.lit(6),
            1 + (pl.col("files_touched") - 1) // 2 + (pl.col("stage") == 4).cast(pl.Int64)
            + (pl.col("all_languages").list.len() > 1).cast(pl.Int64),
        ).alias("estimated_agents"),
        (1 + ((pl.col("functions") > 1) | (pl.col("files_touched") > 1)).cast(pl.Int64)
         + (pl.col("stage") == 4).cast(pl.Int64)).alias("hierarchical_depth"),
    ).with_columns(
        pl.when(pl.col("estimated_agents") == 1).then(pl.lit("none"))
        .when(pl.col("estimated_agents") == 2).then(pl.lit("handoff"))
        .otherwise(pl.lit("team")).alias("coordination"),
    )
    complexity = ["files_touched", "hunks", "lines_added", "lines_removed", "solution_lines", "functions", "tests"]
    return staged.select(
        "id", "source", "language", pl.col("all_languages").alias("languages"), "kind", "title",
        *[pl.col(c).cast(pl.Int64) for c in complexity],
        "tools", "domain", *[pl.col(f"score_{d}").cast(pl.Int64) for d in DOMAINS],
        "stage", "stage_name", pl.col("estimated_agents").cast(pl.Int64), "coordination",
        pl.col("hierarchical_depth").cast(pl.Int64),
    )


def summarize(analysis: pl.DataFrame) -> dict[str, Any]:
    """Counts by source/language, domain and stage (the table ``hrmcode analyze`` prints)."""
    by_source_language = (
        analysis.group_by("source", "language")
        .agg(
            pl.len().alias("tasks"),
            pl.col("files_touched").mean().round(2).alias("mean_files"),
            pl.col("tests").mean().round(1).alias("mean_tests"),
            *[(pl.col("stage") == s).sum().alias(f"stage_{s}") for s in STAGE_NAMES],
        )
        .sort("source", "language")
    )
    by_domain = analysis.group_by("domain").agg(pl.len().alias("tasks")).sort(["tasks", "domain"], descending=[True, False])
    by_stage = analysis.group_by("stage", "stage_name").agg(pl.len().alias("tasks")).sort("stage")
    return {
        "tasks": analysis.height,
        "by_source_language": by_source_language.to_dicts(),
        "by_domain": by_domain.to_dicts(),
        "by_stage": by_stage.to_dicts(),
    }


def read_tasks(path: Path) -> pl.DataFrame:
    try:
        return pl.read_ndjson(path, schema=TASK_SCHEMA)
    except Exception as exc:  # noqa: BLE001 - polars raises ComputeError and friends for bad JSON
        raise InputError(f"{path}: cannot read as tasks ({' '.join(str(exc).split())[:200]})",
                         "regenerate it with `hrmcode fetch`") from None


def analyze(
    ref: str | Path,
    out: Path | str | None = None,
    workspace: Path | str | None = None,
    name: str | None = None,
    force: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Profile the tasks artifact ``ref``; returns ``(analysis artifact, summary)``.

    ``out`` holding anything but an earlier analysis is refused unless ``force``."""
    tasks_artifact = load_artifact(ref, "tasks", workspace=workspace)
    tasks_path = tasks_artifact.file("tasks.jsonl")
    with reporter().task("analyze", 3) as bar:
        tasks = read_tasks(tasks_path)
        bar.advance()
        if tasks.height == 0:
            raise InputError(f"{tasks_path} has no tasks", "fetch a source with records first")
        analysis = profile(tasks)
        bar.advance()
        summary = summarize(analysis)
        artifact_name = name or tasks_artifact.name
        params = {"input": str(tasks_artifact.path)}
        out_dir, update_latest = output_location("analyze", artifact_name, out, workspace, params, replace=force)
        with ArtifactWriter(out_dir, "analysis", name=artifact_name, params=params, inputs=[tasks_artifact],
                            update_latest=update_latest, replace=force) as writer:
            analysis.write_parquet(writer.path("analysis.parquet"), compression="zstd", statistics=False)
            writer.add("analysis.parquet", records=analysis.height)
            artifact = writer.finish(summary)
        bar.advance()
    reporter().log(f"analyzed {analysis.height} tasks from {tasks_artifact.path}")
    return artifact, summary
