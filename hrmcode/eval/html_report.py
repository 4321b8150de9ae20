"""Static HTML pages of eval runs, for people: ``report.html`` (one run), ``compare.html`` (two runs
side by side, ``eval compare --html``) and ``trajectories.html`` (``eval swe``: each attempt's steps,
its final diff and the graded tests).

What a page shows: the run's headline numbers (from ``summary.json``), the pass rate per language
as a bar, and every case with its outcome, time, the model's reply and the test output (the last
try's), each in a collapsed section.

Guarantees: a page is one self-contained file (inline CSS, no script, no external request, no
image) that opens from disk in any browser; every value taken from the run (replies, commands,
test output, ids) is HTML-escaped, so a reply holding markup or a ``<script>`` shows as text and
never runs in the reader's browser; terminal escape sequences (colours, cursor moves, titles) are
dropped, and every other character that would hide or reorder text (C0/C1 controls, bidirectional
overrides and isolates, zero-width characters, lone surrogates) shows as a marked ``U+XXXX``, so the
page shows the characters the run holds, in their order; a line too long for the page wraps inside
its box; a text longer than ``TEXT_LIMIT`` characters is cut at its start and the cut is said. Not
guaranteed: that a page is a verdict (``summary.json`` and ``results.jsonl`` are; a page only
presents them), or that records written by another hrmcode version show every field (an unknown
record shape shows its id, score and raw JSON).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hrmcode.atomic import write_text
from hrmcode.eval.compare import case_score, load_runs
from hrmcode.jsonl import read_jsonl

REPORT = "report.html"
TRAJECTORIES = "trajectories.html"
TEXT_LIMIT = 20_000  # characters of one reply or output shown; the end is kept (errors come last)
BENCH_LANGUAGE = {"humaneval": "python", "livecodebench": "python"}  # benches whose records name none

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1b1b;background:#fff}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:22px 0 8px}
table{border-collapse:collapse;margin:6px 0 14px}th,td{border:1px solid #d0d0d0;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f2f2f2}
.bar{display:inline-block;width:200px;height:14px;background:#c62828;vertical-align:middle}
.bar>span{display:block;height:14px;background:#2e7d32}
.passed{background:#2e7d32;color:#fff}.failed{background:#c62828;color:#fff}.partial{background:#f9a825}
.outcome{padding:2px 8px;border-radius:3px;font-weight:600;white-space:nowrap}
pre{background:#f7f7f7;border:1px solid #e0e0e0;padding:8px;overflow-x:auto;max-width:1100px;white-space:pre-wrap;
overflow-wrap:anywhere}
.ctl{color:#b00020;background:#fde7e9;font-size:11px;padding:0 2px;border-radius:2px}
table.sides{table-layout:fixed;width:100%}table.sides pre{max-width:none}
h3,h4{font-size:14px;margin:8px 0 4px}
details{margin:2px 0}summary{cursor:pointer;color:#0b57d0}.note{color:#666}
.step{border-left:3px solid #0b57d0;padding-left:10px;margin:10px 0}
"""


@dataclass
class CaseView:
    """What one ``results.jsonl`` record shows, whatever the benchmark."""

    id: str
    language: str
    score: float  # 1.0 passed, 0.0 failed, between: the fraction of samples that passed
    seconds: float
    reply: str
    output: str

    @property
    def outcome(self) -> str:
        return "passed" if self.score >= 1.0 else "failed" if self.score <= 0.0 else "partial"


def _seconds(record: dict) -> float:
    timing = record.get("seconds")
    if isinstance(timing, dict):
        return float(sum(v for v in timing.values() if isinstance(v, (int, float))))
    return float(record.get("model_s", 0.0) or 0.0) + float(record.get("test_s", 0.0) or 0.0)


def _last_reply(chat: Sequence[dict]) -> str:
    replies = [m.get("content", "") for m in chat if m.get("role") == "assistant"]
    return replies[-1] if replies else ""


def case_view(record: dict, bench: str) -> CaseView:
    """The reply and output of a record of any benchmark (polyglot, humaneval, livecodebench, swe)."""
    language = record.get("language") or BENCH_LANGUAGE.get(bench, "")
    if "model_patch" in record:  # swe
        grade = record.get("grade") or {}
        tests = {**grade.get("fail_to_pass", {}), **grade.get("pass_to_pass", {})}
        lines = [f"{status:10} {test}" for test, status in sorted(tests.items())]
        why = record.get("error") or grade.get("detail") or ""
        reply, output = record["model_patch"], "\n".join([why, *lines]).strip()
    elif "chat" in record:  # polyglot
        reply, output = _last_reply(record["chat"]), record.get("last_test_output", "")
    elif "samples" in record:  # humaneval, livecodebench: one block per sample
        samples = record["samples"]
        reply = "\n\n".join(f"# sample {i + 1}\n{s.get('completion', s.get('code', ''))}" for i, s in enumerate(samples))
        output = "\n".join(f"sample {i + 1}: {s.get('result') or ('passed' if s.get('passed') else s.get('error'))}"
                           for i, s in enumerate(samples))
    else:
        reply, output = "", json.dumps(record, indent=1, default=str)
    return CaseView(record["id"], language, case_score(record), _seconds(record), reply, output)


# Terminal escape sequences: CSI (colours, cursor moves), OSC (titles, links; ended by BEL or ST), and the
# two-character escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
# What a browser would draw as nothing, or use to reorder or hide the text around it: C0 controls but tab,
# newline and carriage return, DEL and C1, bidirectional embeddings/overrides/isolates and marks, zero-width
# characters, the BOM, and lone surrogates (which would also stop the page from being written as UTF-8).
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e"
                        "\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]")


def _text(value: object) -> str:
    """``value`` as HTML text: escaped, terminal escape sequences dropped, invisible characters marked."""
    text = _ANSI.sub("", str(value))
    parts = []
    last = 0
    for match in _INVISIBLE.finditer(text):
        parts.append(html.escape(text[last:match.start()], quote=True))
        parts.append(f'<span class="ctl">U+{ord(match.group()):04X}</span>')
        last = match.end()
    parts.append(html.escape(text[last:], quote=True))
    return "".join(parts)


def _pre(text: str) -> str:
    if len(text) > TEXT_LIMIT:
        cut = len(text) - TEXT_LIMIT
        return f'<p class="note">({cut} earlier characters not shown)</p><pre>{_text(text[-TEXT_LIMIT:])}</pre>'
    return f"<pre>{_text(text)}</pre>" if text else '<p class="note">(empty)</p>'


def _bar(fraction: float) -> str:
    width = max(0.0, min(1.0, fraction)) * 100
    return f'<span class="bar" title="{width:.1f}%"><span style="width:{width:.2f}%"></span></span>'


def _outcome(view: CaseView) -> str:
    label = view.outcome if view.outcome != "partial" else f"{view.score:.2f}"
    return f'<span class="outcome {view.outcome}">{_text(label)}</span>'


def _table(header: Sequence[str] | None, rows: Iterable[Sequence[str]], widths: Sequence[int] = ()) -> str:
    """A table (no header row when ``header`` is None); ``widths``: fixed column widths in percent."""
    cols = ""
    if widths:
        cols = "<colgroup>" + "".join(f'<col style="width:{w}%">' for w in widths) + "</colgroup>"
    head = "<tr>" + "".join(f"<th>{_text(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    css = ' class="sides"' if widths else ""
    return f"<table{css}>{cols}{head}{body}</table>"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def _languages(views: Sequence[CaseView]) -> str:
    groups: dict[str, list[CaseView]] = {}
    for view in views:
        groups.setdefault(view.language or "-", []).append(view)
    rows = []
    for language, members in sorted(groups.items()):
        passed = sum(v.score for v in members)
        rate = passed / len(members)
        rows.append([_text(language), str(len(members)), f"{passed:g}", f"{_bar(rate)} {100 * rate:.1f}%"])
    return _table(["language", "cases", "passed", "pass rate"], rows)


def _summary_rows(summary: dict) -> list[list[str]]:
    model = summary.get("model")
    rows = [["model", _text(model.get("model") if isinstance(model, dict) else model)]] if model else []
    for key in ("score", "cases", "completed", "segments_per_case", "verdict_rules"):
        if key in summary:
            rows.append([key, _text(summary[key])])
    return rows


def render_run(bench: str, records: Sequence[dict], summary: dict) -> str:
    """``report.html`` of one run."""
    views = [case_view(r, bench) for r in records]
    cases = []
    for view in views:
        details = (f"<details><summary>reply and test output</summary><h3>reply</h3>{_pre(view.reply)}"
                   f"<h3>test output</h3>{_pre(view.output)}</details>")
        cases.append([_text(view.id), _text(view.language), _outcome(view), f"{view.seconds:.2f}", details])
    body = (f"<h1>eval {_text(bench)}</h1>{_table(None, _summary_rows(summary))}"
            f"<h2>per language</h2>{_languages(views)}"
            f"<h2>cases ({len(views)})</h2>{_table(['case', 'language', 'outcome', 'seconds', ''], cases)}")
    return _page(f"eval {bench}", body)


def render_compare(bench: str, run_a: str, run_b: str, records_a: Sequence[dict], records_b: Sequence[dict],
                   summary_a: dict, summary_b: dict) -> str:
    """``compare.html``: both runs' numbers, then every case of either run side by side, the
    regressed first, then the improved, the unchanged and those in one run only."""
    views_a = {r["id"]: case_view(r, bench) for r in records_a}
    views_b = {r["id"]: case_view(r, bench) for r in records_b}

    def change(case: str) -> tuple[int, str]:
        a, b = views_a.get(case), views_b.get(case)
        if a is None or b is None:
            return 3, "only in " + ("B" if a is None else "A")
        return (0, "regressed") if b.score < a.score else (1, "improved") if b.score > a.score else (2, "same")

    rows = []
    for case in sorted(set(views_a) | set(views_b), key=lambda c: (change(c)[0], c)):
        cells = [_text(case), _text(change(case)[1])]
        for view in (views_a.get(case), views_b.get(case)):
            if view is None:
                cells.append("-")
                continue
            cells.append(f"{_outcome(view)} {view.seconds:.2f}s<details><summary>reply and output</summary>"
                         f"<h4>reply</h4>{_pre(view.reply)}<h4>output</h4>{_pre(view.output)}</details>")
        rows.append(cells)
    head = _table(["", "A", "B"], [["run", _text(run_a), _text(run_b)],
                                   ["score", _text(summary_a.get("score")), _text(summary_b.get("score"))]])
    body = (f"<h1>eval compare: {_text(bench)}</h1>{head}"
            f"<h2>per language</h2><h3>A</h3>{_languages(list(views_a.values()))}"
            f"<h3>B</h3>{_languages(list(views_b.values()))}"
            f"<h2>cases</h2>{_table(['case', 'change', 'A', 'B'], rows, widths=(16, 8, 38, 38))}")
    return _page(f"eval compare {bench}", body)


def _step(step: dict) -> str:
    action = step.get("action") or {}
    if action.get("command"):
        label, what = "command", str(action["command"])
    elif action.get("edits"):
        label, what = "edits", json.dumps(action["edits"], indent=1, ensure_ascii=False)
    else:  # a format error (or a record of another shape): what the model replied
        label, what = "reply", str(action.get("raw", ""))
    thought = f"<p>{_text(action['thought'])}</p>" if action.get("thought") else ""
    seconds = step.get("seconds")
    exit_code = "" if step.get("exit_code") is None else f"exit {_text(step['exit_code'])}, "  # none for submit
    return (f'<div class="step"><b>step {_text(step.get("index"))}</b> ({_text(action.get("kind", ""))}, '
            f"{exit_code}"
            f"{float(seconds) if isinstance(seconds, (int, float)) else 0.0:.2f}s){thought}"
            f"<h4>{label}</h4>{_pre(what)}<h4>output</h4>{_pre(str(step.get('observation') or ''))}</div>")


def render_trajectories(trajectories: Sequence[dict], results: Sequence[dict]) -> str:
    """``trajectories.html``: per attempt, the problem, each step's command and output, the final
    diff and the graded tests."""
    by_id = {r["id"]: r for r in results}
    sections = []
    for trajectory in trajectories:
        result = by_id.get(trajectory["id"], {})
        view = case_view(result, "swe") if result else None
        badge = _outcome(view) if view else '<span class="note">(no result)</span>'
        steps = "".join(_step(s) for s in trajectory.get("steps", []))
        sections.append(
            f"<h2>{_text(trajectory['id'])} {badge}</h2>"
            f"<p>model {_text(trajectory.get('model'))}, exit {_text(trajectory.get('exit_status'))}, "
            f"{len(trajectory.get('steps', []))} steps, reward {_text(trajectory.get('reward'))}</p>"
            f"<details><summary>problem</summary>{_pre(trajectory.get('problem', ''))}</details>"
            f"<details><summary>steps</summary>{steps}</details>"
            f"<details open><summary>final diff</summary>{_pre(view.reply if view else '')}</details>"
            f"<details open><summary>tests</summary>{_pre(view.output if view else '')}</details>")
    return _page("eval swe trajectories", "<h1>eval swe: trajectories</h1>" + "".join(sections))


def write_compare_page(run_a: str | Path, run_b: str | Path, path: Path,
                       workspace: Path | str | None = None) -> Path:
    """Write ``render_compare`` of two eval runs to ``path`` (temp then rename)."""
    a, b = load_runs(run_a, run_b, workspace)
    page = render_compare(a.params.get("bench"), str(a.path), str(b.path), list(read_jsonl(a.file("results.jsonl"))),
                          list(read_jsonl(b.file("results.jsonl"))), a.stats, b.stats)
    write_text(path, page)
    return path
