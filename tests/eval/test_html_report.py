"""The HTML pages of eval runs: what they show for each benchmark's records, that nothing from the
run can inject markup, the pages a real run and ``eval compare --html`` write, and how they render
in a real headless browser (Debian's Chromium), checked on the screenshot's pixels."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hrmcode.eval.html_report import TEXT_LIMIT, case_view, render_run, render_trajectories

HOSTILE = '<script>document.title="owned"</script><img src=x onerror=alert(1)>'


def _polyglot(case: str, language: str, passed: bool, reply: str = "ok", output: str = "") -> dict:
    return {"id": case, "language": language, "tests_outcomes": [passed], "passed": passed, "model_s": 1.25,
            "test_s": 0.5, "chat": [{"role": "user", "content": "fix"}, {"role": "assistant", "content": reply}],
            "last_test_output": output}


def test_each_benchmark_record_shows_its_reply_output_score_and_time():
    humaneval = {"id": "humaneval/HumanEval/0", "n": 2, "correct": 1, "model_s": 1.0, "test_s": 0.25,
                 "samples": [{"completion": "return 1", "result": "passed", "passed": True},
                             {"completion": "return 2", "result": "failed: AssertionError", "passed": False}]}
    view = case_view(humaneval, "humaneval")
    assert (view.language, view.score, view.outcome, view.seconds) == ("python", 0.5, "partial", 1.25)
    assert "# sample 2\nreturn 2" in view.reply and "sample 2: failed: AssertionError" in view.output
    swe = {"id": "t@1", "language": "python", "resolved": False, "model_patch": "diff --git a/x b/x",
           "seconds": {"agent": 2.0, "grade": 1.5}, "error": None,
           "grade": {"fail_to_pass": {"tests/test_x.py::test_a": "failed"}, "pass_to_pass": {}, "detail": "exit 1"}}
    view = case_view(swe, "swe")
    assert (view.score, view.seconds, view.reply) == (0.0, 3.5, "diff --git a/x b/x")
    assert view.output == "exit 1\nfailed     tests/test_x.py::test_a"
    view = case_view(_polyglot("polyglot/go/x", "go", True, reply="final reply", output="PASS"), "polyglot")
    assert (view.outcome, view.reply, view.output, view.seconds) == ("passed", "final reply", "PASS", 1.75)


def test_pages_escape_everything_from_the_run_and_cut_long_output():
    records = [_polyglot(HOSTILE, "go", False, reply=HOSTILE, output="x" * (TEXT_LIMIT + 7) + "END")]  # 10 over
    page = render_run("polyglot", records, {"score": 0.0, "model": {"model": HOSTILE}})
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;" in page
    assert "(10 earlier characters not shown)" in page and "xEND</pre>" in page
    trajectory = {"id": "t@1", "model": HOSTILE, "problem": HOSTILE, "exit_status": "submitted", "reward": 0.0,
                  "steps": [{"index": 1, "action": {"kind": "bash", "command": HOSTILE, "thought": HOSTILE},
                             "observation": HOSTILE, "exit_code": 0}]}
    page = render_trajectories([trajectory], [])
    assert "<script" not in page and "<img" not in page and page.count("&lt;script&gt;") == 5


def test_per_language_pass_rates():
    records = [_polyglot(f"polyglot/python/{i}", "python", i < 3) for i in range(4)]
    records += [_polyglot(f"polyglot/go/{i}", "go", i < 1) for i in range(4)]
    page = render_run("polyglot", records, {"score": 50.0})
    assert "<td>go</td><td>4</td><td>1</td>" in page and "25.0%" in page
    assert "<td>python</td><td>4</td><td>3</td>" in page and "75.0%" in page
    assert page.count('class="outcome passed"') == 4 and page.count('class="outcome failed"') == 4


def test_a_run_writes_its_report_and_compare_writes_both_side_by_side(cli, tmp_path):
    runs = {}
    for model in ("oracle", "stub"):
        runs[model] = tmp_path / model
        result = cli("--json", "eval", "humaneval", "--model", model, "--limit", "3", "--out", runs[model],
                     "--unsafe-no-sandbox")
        assert result.exit_code == 0, result.stderr
        manifest = json.loads((runs[model] / "manifest.json").read_text())
        assert "report.html" in {o["name"] for o in manifest["outputs"]}
    assert (runs["oracle"] / "report.html").read_text().count('class="outcome passed"') == 3
    assert (runs["stub"] / "report.html").read_text().count('class="outcome failed"') == 3
    result = cli("--json", "eval", "compare", runs["oracle"], runs["stub"], "--html", tmp_path / "compare.html")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["html"] == str(tmp_path / "compare.html")
    page = (tmp_path / "compare.html").read_text()
    assert page.count("<td>regressed</td>") == 3 and str(runs["stub"]) in page


# -- rendered in a real browser ---------------------------------------------------------------------
GREEN, RED = (0x2E, 0x7D, 0x32), (0xC6, 0x28, 0x28)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless browser here (scripts/test.sh installs Debian's chromium)")


def _screenshot(page: Path, png: Path) -> None:
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--force-device-scale-factor=1", "--window-size=1000,700", f"--screenshot={png}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)


def _runs(pixels, width: int, height: int, colour: tuple[int, int, int]) -> list[tuple[int, int]]:
    """(row, length) of the longest horizontal run of ``colour`` on each row that has one."""
    found = []
    for y in range(height):
        best = length = 0
        for x in range(width):
            length = length + 1 if all(abs(a - b) <= 8 for a, b in zip(pixels[x, y][:3], colour)) else 0
            best = max(best, length)
        if best:
            found.append((y, best))
    return found


def test_chromium_draws_each_language_bar_at_its_pass_rate(tmp_path):
    image = pytest.importorskip("PIL.Image")
    records = [_polyglot(f"polyglot/python/{i}", "python", i < 3) for i in range(4)]  # 75 %
    records += [_polyglot(f"polyglot/go/{i}", "go", i < 1) for i in range(4)]  # 25 %
    page = tmp_path / "report.html"
    page.write_text(render_run("polyglot", records, {"score": 50.0}))
    png = tmp_path / "shot.png"
    _screenshot(page, png)
    shot = image.open(png).convert("RGB")
    pixels, (width, height) = shot.load(), shot.size
    # the bars are 200 px wide and 14 px tall: green for the passed part, red for the rest; the
    # outcome badges are green or red too, but narrower than either bar's green part is not
    green = [(y, n) for y, n in _runs(pixels, width, height, GREEN) if n >= 40]
    red = [(y, n) for y, n in _runs(pixels, width, height, RED) if n >= 40]
    bars = {}
    for y, n in green:
        bars.setdefault(y, {})["green"] = n
    for y, n in red:
        bars.setdefault(y, {})["red"] = n
    rows = [(y, v["green"], v["red"]) for y, v in bars.items() if "green" in v and "red" in v]
    assert rows, "no pass-rate bar was drawn"
    first_bar = min(y for y, _, _ in rows)
    go = [(g, r) for y, g, r in rows if y - first_bar < 14]  # languages are sorted: go first
    python = [(g, r) for y, g, r in rows if 20 <= y - first_bar < 60]
    assert go and python, rows
    assert all(abs(g / (g + r) - 0.25) < 0.02 and abs(g + r - 200) <= 2 for g, r in go)
    assert all(abs(g / (g + r) - 0.75) < 0.02 and abs(g + r - 200) <= 2 for g, r in python)


def test_chromium_runs_no_script_from_a_hostile_reply(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_run("polyglot", [_polyglot("case", "go", False, reply=HOSTILE)], {"score": 0.0}))
    dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    assert "<title>eval polyglot</title>" in dom and "owned" not in dom.split("</title>")[0]
    assert "<script" not in dom and "<img" not in dom  # the reply is text in the DOM, not elements


def test_terminal_escapes_are_dropped_and_invisible_characters_marked():
    reply = "\x1b[1;31mRED\x1b[0m \x1b]0;OSC-TITLE\x07x = 1  # \u202eevil\u202c nul\x00 lone\ud83d zw\u200b"
    page = render_run("polyglot", [_polyglot("case\u202e", "go", False, reply=reply, output="\x1b[32mok\x1b[0m")],
                      {"score": 0.0})
    page.encode("utf-8")  # a lone surrogate no longer stops the page from being written
    assert not any(c in page for c in "\x1b\x00\u202e\u202c\u200b\ud83d")
    assert "RED x = 1  # " in page and "OSC-TITLE" not in page and ">ok</pre>" in page
    for code in ("202E", "202C", "0000", "D83D", "200B"):
        assert f'<span class="ctl">U+{code}</span>' in page
    assert 'case<span class="ctl">U+202E</span>' in page  # ids too


def test_a_format_error_step_shows_what_the_model_replied():
    steps = [{"index": 1, "action": {"kind": "format_error", "thought": "", "raw": "I would run <ls>"},
              "observation": "no command", "exit_code": None, "seconds": None},
             {"index": 2, "action": {"kind": "edit", "thought": "t", "edits": [{"path": "a.py"}]},
              "observation": None, "exit_code": 0, "seconds": 0.5}]
    page = render_trajectories([{"id": "t@1", "steps": steps}], [])
    assert "<h4>reply</h4><pre>I would run &lt;ls&gt;</pre>" in page
    assert "<h4>edits</h4>" in page and "a.py" in page and "(edit, exit 0, 0.50s)" in page
    assert "(format_error, 0.00s)" in page  # no "exit None"


def test_chromium_wraps_a_long_line_inside_the_page(tmp_path):
    image = pytest.importorskip("PIL.Image")
    page = tmp_path / "report.html"
    page.write_text(render_run("polyglot", [_polyglot("case", "go", False, reply="x" * 5000)], {"score": 0.0})
                    .replace("<details>", "<details open>"))
    png = tmp_path / "shot.png"
    _screenshot(page, png)
    shot = image.open(png).convert("RGB")
    width, height = shot.size
    # the body's right margin (24 px) stays white: the reply's box did not push the table past the window
    assert all(shot.getpixel((width - 8, y)) == (255, 255, 255) for y in range(height))
