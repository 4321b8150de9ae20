"""``hrmcode eval polyglot|humaneval|livecodebench`` and ``hrmcode eval compare``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from hrmcode.cli._common import examples_epilog, workspace
from hrmcode.cli._errors import handle_errors
from hrmcode.cli._options import library_options, with_options
from hrmcode.cli._output import out
from hrmcode.agent.loop import AgentLimits
from hrmcode.eval.api import (
    EvalConfig,
    HumanEvalOptions,
    LiveCodeBenchOptions,
    PolyglotOptions,
    SweOptions,
    eval_humaneval,
    eval_livecodebench,
    eval_polyglot,
    eval_swe,
)
from hrmcode.eval.runner import enforce_threshold
from hrmcode.executor import ExecutorOptions, using

eval_app = typer.Typer(
    help="Score a model on a benchmark (polyglot, humaneval, livecodebench, swe) or compare two runs.",
    no_args_is_help=True,
)


def bench_options(record: type) -> Any:
    """The options every benchmark shares (``EvalConfig``) and the benchmark's own (``record``), generated
    from the library: --model, --model-name and --tasks first in --help, then the benchmark's own, then
    the rest."""
    own = library_options(record)
    return with_options(library_options(EvalConfig) + own + library_options(ExecutorOptions),
                        order=("model", "model_name", "tasks", *(option.name for option in own)))


def _config(ctx: typer.Context, options: dict[str, Any], record: type) -> tuple[EvalConfig, Any]:
    """Split the command's options into the shared ``EvalConfig`` and the benchmark's ``record``."""
    names = {field.name for field in dataclasses.fields(record)}
    own = record(**{k: v for k, v in options.items() if k in names})
    shared = {k: v for k, v in options.items() if k not in names}
    return EvalConfig(**shared, api_key=os.environ.get("OPENAI_API_KEY"), workspace=workspace(ctx)), own


def _segments_row(summary: dict) -> list[list]:
    """The mean segments per case row, when the model's generations reported segments."""
    return [["segments / case", summary["segments_per_case"]]] if "segments_per_case" in summary else []


def _render_pass_at_k(result) -> None:
    summary = result.summary
    rows = [["run", str(result.artifact.path)], ["model", summary["model"].get("model")],
            ["cases", summary["cases"]], ["samples", summary["samples"]],
            *[[f"pass@{k}", summary[f"pass@{k}"]] for k in summary["ks"] if f"pass@{k}" in summary],
            ["score (%)", summary["score"]], ["solved", summary["solved"]],
            ["model s", summary["seconds"]["model"]], ["test s", summary["seconds"]["test"]],
            *_segments_row(summary), ["ran / resumed", f"{result.ran} / {result.skipped}"]]
    for key in ("comparator", "release", "since", "until"):
        if key in summary:
            rows.append([key, summary[key] if summary[key] is not None else "-"])
    out.table(f"{summary['bench']}", ["metric", "value"], rows)
    if summary.get("difficulty"):
        out.table("by difficulty", ["difficulty", "cases", *[f"pass@{k}" for k in summary["ks"]]],
                  [[d, v["cases"], *[v.get(f"pass@{k}", "-") for k in summary["ks"]]] for d, v in summary["difficulty"].items()])


def _render_polyglot(result) -> None:
    s = result.summary
    tries = s["tries"]
    rows = [["run", str(result.artifact.path)], ["model", s["model"].get("model")], ["edit format", s["edit_format"]],
            ["cases", s["cases"]],
            *[[f"pass_rate_{i}", s[f"pass_rate_{i}"]] for i in range(1, tries + 1)],
            *[[f"pass_num_{i}", s[f"pass_num_{i}"]] for i in range(1, tries + 1)],
            ["score without the 6 stub-passing", s["score_without_stub_passing"]],
            ["percent well formed", s["percent_cases_well_formed"]], ["malformed responses", s["num_malformed_responses"]],
            ["syntax errors", s["syntax_errors"]], ["test timeouts", s["test_timeouts"]],
            ["model s / case", s["seconds_per_case"]], ["test s / case", s["test_seconds_per_case"]],
            ["prompt tokens", s["prompt_tokens"]], ["completion tokens", s["completion_tokens"]],
            *_segments_row(s), ["ran / resumed", f"{result.ran} / {result.skipped}"]]
    out.table("polyglot", ["metric", "value"], rows)
    out.table("by language", ["language", "cases", "passed", "pass rate (%)", "stub-passing"],
              [[lang, v["cases"], v["passed"], v["pass_rate"], v["stub_passing"]] for lang, v in s["languages"].items()])


FAILED_SHOWN = 40  # failed cases named in the table; --json and results.jsonl list all


def _render_failed(result) -> None:
    failed = result.failed
    if not failed:
        return
    rows = [[case] for case in failed[:FAILED_SHOWN]]
    if len(failed) > FAILED_SHOWN:
        rows.append([f"... and {len(failed) - FAILED_SHOWN} more (--json, or {result.artifact.path}/results.jsonl)"])
    out.table(f"failed cases ({len(failed)})", ["case"], rows)


def _finish(result, fail_under, render) -> None:
    def show() -> None:
        render(result)
        _render_failed(result)

    out.result(result.to_dict(), show)
    enforce_threshold(result, fail_under)


def _bench_command(name: str, help_text: str, examples: tuple[str, ...], record: type,
                   evaluate: Any, render: Any) -> None:
    """Register ``hrmcode eval NAME``: the shared and ``record``'s own options, ``evaluate``, then ``render``."""

    @eval_app.command(name, help=help_text, epilog=examples_epilog(*examples))
    @handle_errors
    @bench_options(record)
    def bench(ctx: typer.Context, **options: Any) -> None:
        chosen = ExecutorOptions.take(options)
        config, own = _config(ctx, options, record)
        with using(chosen, config.jobs):
            result = evaluate(config, own)
        _finish(result, config.fail_under, render)


def _render_swe(result) -> None:
    s = result.summary
    attempts = s["attempts"]
    rows = [["run", str(result.artifact.path)], ["models", ", ".join(s["models"])], ["planner", s["planner"] or "-"],
            ["tasks", s["cases"]], ["attempts per task", attempts], ["resolved rate (%)", s["resolved_rate"]],
            *[[key, s[key]] for key in (f"pass@{k}" for k in sorted({1, attempts})) if key in s],
            [f"best-of-{attempts} pick resolved (%)", s["best_of_n"]["resolved_rate"]],
            ["mean steps", s["mean_steps"]], ["FAIL_TO_PASS fixed (mean)", s["f2p_fixed_mean"]],
            ["PASS_TO_PASS broken", s["p2p_broken_total"]], ["empty patches", s["empty_patches"]],
            ["grading errors", s["grading_errors"]],
            ["prompt tokens", s["tokens"]["prompt"]], ["completion tokens", s["tokens"]["completion"]],
            ["agent s", s["seconds"]["agent"]], ["grade s", s["seconds"]["grade"]],
            *_segments_row(s), ["ran / resumed", f"{result.ran} / {result.skipped}"]]
    out.table("swe", ["metric", "value"], rows)
    out.table("exit status", ["status", "trajectories"], [[k, v] for k, v in s["exit_status"].items()])
    if len(s["by_model"]) > 1:
        out.table("by model", ["model", "attempts", "resolved", "resolved rate (%)"],
                  [[m, v["attempts"], v["resolved"], v["resolved_rate"]] for m, v in s["by_model"].items()])


SWE_EXAMPLES = (
    "hrmcode synthesize --source repo:./mypkg --test-cmd 'python -m pytest -q tests' && "
    "hrmcode eval swe --tasks repo-mypkg --model oracle",
    "hrmcode eval swe --tasks repo-mypkg --model stub --model oracle --model-weights 1,3 -j 2",
    "hrmcode eval swe --tasks repo-mypkg --model openai:http://127.0.0.1:8000/v1 --model-name m --planner oracle "
    "--attempts 4 --temperature 0.8 --search best-of-n --step-limit 20",
    "hrmcode eval swe --tasks repo-mypkg --model openai:http://127.0.0.1:8000/v1 --model-name m --temperature 0.8 "
    "--search mcts --search-widening --search-budget 40",
    "hrmcode eval swe --tasks repo-mypkg --model oracle --runtime swerex:bwrap",
)


def _swe_command() -> None:
    """Register ``hrmcode eval swe``: the shared options but --model (repeatable here), ``SweOptions``
    and the agent's ``AgentLimits``."""
    shared = [option for option in library_options(EvalConfig) if option.name != "model"]
    own = library_options(SweOptions)

    @eval_app.command("swe", help="Agents in repositories: each task's repository in a sandbox session (or a "
                                  "SWE-ReX deployment, --runtime), the model acts through shell commands until it "
                                  "submits, the patch is graded on the pristine tests in --backend's sandbox "
                                  "(SWE-bench's report and predictions; trajectories with rewards).",
                      epilog=examples_epilog(*SWE_EXAMPLES))
    @handle_errors
    @with_options(shared + own + library_options(AgentLimits) + library_options(ExecutorOptions),
                  order=("models", "model_name", "tasks", *(option.name for option in own if option.name != "models")))
    def swe(ctx: typer.Context, **options: Any) -> None:
        chosen = ExecutorOptions.take(options)
        own_names = {field.name for field in dataclasses.fields(SweOptions)}
        agent_names = {field.name for field in dataclasses.fields(AgentLimits)}
        models = options["models"]
        config = EvalConfig(model=models[0] if models else "", api_key=os.environ.get("OPENAI_API_KEY"),
                            workspace=workspace(ctx),
                            **{k: v for k, v in options.items() if k not in own_names | agent_names})
        with using(chosen, config.jobs):
            result = eval_swe(config, SweOptions(**{k: v for k, v in options.items() if k in own_names}),
                              AgentLimits(**{k: v for k, v in options.items() if k in agent_names}))
        _finish(result, config.fail_under, _render_swe)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")

    for name, help_text, examples, record, evaluate, render in (
        ("polyglot", "Aider's polyglot benchmark (225 exercises, 6 languages) with Aider's protocol and metrics.",
         ("hrmcode fetch polyglot --from polyglot-benchmark && hrmcode eval polyglot --model oracle -j 2",
          "hrmcode eval polyglot --model stub --languages go,java",
          "hrmcode eval polyglot --model openai:http://127.0.0.1:8000/v1 --model-name m --edit-format diff --fail-under 20"),
         PolyglotOptions, eval_polyglot, _render_polyglot),
        ("humaneval", "HumanEval: completions run against check(candidate) in the sandbox; pass@k.",
         ("hrmcode eval humaneval --model oracle",
          "hrmcode eval humaneval --model samples:samples.jsonl --k 1",
          "hrmcode eval humaneval --model openai:http://127.0.0.1:8000/v1 --model-name m --n 10 --temperature 0.8 -j 4"),
         HumanEvalOptions, eval_humaneval, _render_pass_at_k),
        ("livecodebench", "LiveCodeBench: stdin/functional problems run for real in the sandbox; pass@1, pass@5.",
         ("hrmcode fetch livecodebench --from test6.jsonl && hrmcode eval livecodebench --model oracle",
          "hrmcode eval livecodebench --model samples:codegen.json --comparator tolerant",
          "hrmcode eval livecodebench --model openai:http://127.0.0.1:8000/v1 --model-name m --n 5 --since 2024-08-01"),
         LiveCodeBenchOptions, eval_livecodebench, _render_pass_at_k),
    ):
        _bench_command(name, help_text, examples, record, evaluate, render)
    _swe_command()

    @eval_app.command("compare", help="List the cases that regressed and improved from RUN_A to RUN_B.",
                      epilog=examples_epilog("hrmcode eval compare runs/base runs/new", "hrmcode --json eval compare A B",
                                            "hrmcode eval compare A B --html compare.html"))
    @handle_errors
    def compare(
        ctx: typer.Context,
        run_a: Annotated[Path, typer.Argument(help="The baseline eval run (directory).")],
        run_b: Annotated[Path, typer.Argument(help="The eval run to compare with it (directory).")],
        html: Annotated[Path | None, typer.Option("--html", help="Also write both runs side by side as one HTML "
                                                                 "page (each case's outcome, reply and test output).")] = None,
    ) -> None:
        from hrmcode.eval.compare import compare_runs
        from hrmcode.eval.html_report import write_compare_page

        report = compare_runs(run_a, run_b, workspace=workspace(ctx))
        if html is not None:
            report["html"] = str(write_compare_page(run_a, run_b, html, workspace=workspace(ctx)))

        def render() -> None:
            out.table(f"{report['bench']}: A {report['score_a']}% -> B {report['score_b']}%", ["", "cases"], [
                ["compared", report["compared"]], ["regressed", len(report["regressed"])],
                ["improved", len(report["improved"])], ["unchanged", report["unchanged"]],
                ["only in A", len(report["only_in_a"])], ["only in B", len(report["only_in_b"])]])
            for title in ("regressed", "improved"):
                if report[title]:
                    out.table(title, ["case", "A", "B"], [[c["id"], c["a"], c["b"]] for c in report[title]])

        out.result(report, render)
