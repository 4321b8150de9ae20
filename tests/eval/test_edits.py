"""hrmcode.edits: parsing, applying and rendering the whole / diff / udiff formats."""

from __future__ import annotations

import pytest

from hrmcode.edits import (
    FORMATS,
    Edit,
    MalformedEdit,
    apply_edits,
    apply_edits_partial,
    parse_edits,
    render_edits,
    render_search_replace,
    render_udiff,
    render_whole,
)
from tests.eval.polyglot_pairs import exercise_pairs

SRC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    pass\n"


def test_whole_with_decorated_filename_and_language_tag():
    reply = "Here is the fix.\n\n**calc.py**\n```python\ndef add(a, b):\n    return a + b\n```\n"
    edits = parse_edits(reply, "whole", ["calc.py", "other.py"])
    assert edits == [Edit("calc.py", "whole", None, "def add(a, b):\n    return a + b\n")]
    assert apply_edits({"calc.py": SRC}, edits)["calc.py"] == "def add(a, b):\n    return a + b\n"


def test_whole_without_filename_uses_the_only_file_else_is_malformed():
    reply = "```\nx = 1\n```\n"
    assert parse_edits(reply, "whole", ["a.py"])[0].path == "a.py"
    with pytest.raises(MalformedEdit, match="no filename"):
        parse_edits(reply, "whole", ["a.py", "b.py"])


def test_whole_unclosed_fence_is_malformed():
    with pytest.raises(MalformedEdit, match="not closed"):
        parse_edits("a.py\n```\nx = 1\n", "whole", ["a.py"])


def test_whole_basename_resolves_to_nested_path():
    reply = "Forth.java\n```java\nclass Forth {}\n```\n"
    assert parse_edits(reply, "whole", ["src/main/java/Forth.java"])[0].path == "src/main/java/Forth.java"


def test_path_escaping_the_exercise_is_malformed():
    with pytest.raises(MalformedEdit, match="not a path inside"):
        parse_edits("../../etc/passwd\n```\nx\n```\n", "whole", ["a.py", "b.py"])


def test_search_replace_exact_and_multiple_blocks():
    reply = (
        "calc.py\n```python\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n```\n\n"
        "calc.py\n```python\n<<<<<<< SEARCH\n    pass\n=======\n    return a * b\n>>>>>>> REPLACE\n```\n"
    )
    result = apply_edits({"calc.py": SRC}, parse_edits(reply, "diff", ["calc.py"]))
    assert result["calc.py"] == SRC.replace("a - b", "a + b").replace("pass", "return a * b")


def test_search_replace_tolerates_indentation_offset_and_trailing_space():
    # the model dropped the function's indentation and added a trailing space
    reply = "calc.py\n```\n<<<<<<< SEARCH\nreturn a - b \n=======\nreturn a + b\n>>>>>>> REPLACE\n```\n"
    result = apply_edits({"calc.py": SRC}, parse_edits(reply, "diff", ["calc.py"]))
    assert "    return a + b\n" in result["calc.py"]


def test_search_replace_empty_search_creates_a_file():
    reply = "helper.py\n```\n<<<<<<< SEARCH\n=======\nX = 1\n>>>>>>> REPLACE\n```\n"
    edits = parse_edits(reply, "diff", ["calc.py"])
    assert apply_edits({"calc.py": SRC}, edits) == {"calc.py": SRC, "helper.py": "X = 1\n"}


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("calc.py\n```\n<<<<<<< SEARCH\nx\n```\n", "no '======='"),
        ("calc.py\n```\n<<<<<<< SEARCH\nx\n=======\ny\n```\n", "no '>>>>>>> REPLACE'"),
        ("calc.py\n```\n=======\ny\n>>>>>>> REPLACE\n```\n", "without a '<<<<<<< SEARCH'"),
        ("Sure:\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", "without a filename"),
    ],
)
def test_search_replace_malformed(reply, message):
    with pytest.raises(MalformedEdit, match=message):
        parse_edits(reply, "diff", ["calc.py", "b.py"])


def test_search_that_does_not_match_reports_and_keeps_the_others():
    reply = (
        "calc.py\n```\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n```\n"
        "calc.py\n```\n<<<<<<< SEARCH\n    return 42\n=======\n    return 0\n>>>>>>> REPLACE\n```\n"
    )
    edits = parse_edits(reply, "diff", ["calc.py"])
    files, failures = apply_edits_partial({"calc.py": SRC}, edits)
    assert "a + b" in files["calc.py"] and len(failures) == 1 and "return 42" in failures[0]
    with pytest.raises(MalformedEdit, match="(?s)1 edit failed to apply.*other 1 edits were applied"):
        apply_edits({"calc.py": SRC}, edits)


def test_udiff_ignores_line_numbers_and_missing_space_on_blank_context():
    reply = (
        "```diff\n--- calc.py\n+++ calc.py\n@@ -40,7 +40,7 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n\n"
        "@@ @@\n def mul(a, b):\n-    pass\n+    return a * b\n```\n"
    )
    result = apply_edits({"calc.py": SRC}, parse_edits(reply, "udiff", ["calc.py"]))
    assert result["calc.py"] == SRC.replace("a - b", "a + b").replace("pass", "return a * b")


def test_udiff_hunk_with_wrong_context_falls_back_to_its_changed_section():
    reply = "```diff\n--- calc.py\n+++ calc.py\n@@ @@\n def add(x, y):\n-    return a - b\n+    return a + b\n```\n"
    result = apply_edits({"calc.py": SRC}, parse_edits(reply, "udiff", ["calc.py"]))
    assert "return a + b" in result["calc.py"]


def test_udiff_that_matches_nothing_is_malformed():
    reply = "```diff\n--- calc.py\n+++ calc.py\n@@ @@\n-    return 42\n+    return 0\n```\n"
    with pytest.raises(MalformedEdit, match="does not match"):
        apply_edits({"calc.py": SRC}, parse_edits(reply, "udiff", ["calc.py"]))


def test_udiff_new_file_and_missing_header():
    reply = "```diff\n--- /dev/null\n+++ new.py\n@@ -0,0 +1 @@\n+X = 1\n```\n"
    assert apply_edits({}, parse_edits(reply, "udiff", ["calc.py"])) == {"new.py": "X = 1\n"}
    with pytest.raises(MalformedEdit, match="without '--- path'"):
        parse_edits("```diff\n@@ @@\n-a\n+b\n```\n", "udiff", ["calc.py"])


def test_reply_without_edits_is_not_malformed():
    for fmt in ("diff", "udiff"):
        assert parse_edits("I think the code is fine.", fmt, ["calc.py"]) == []


def test_renderers_emit_what_the_parser_reads():
    assert parse_edits(render_whole("a.py", "x = 1"), "whole", ["a.py"]) == [Edit("a.py", "whole", None, "x = 1\n")]
    assert parse_edits(render_search_replace("a.py", "x = 1\n", "x = 2\n"), "diff", ["a.py"]) == [
        Edit("a.py", "diff", "x = 1\n", "x = 2\n")
    ]
    edit = parse_edits(render_udiff("a.py", "x = 1\ny = 2\n", "x = 1\ny = 3\n"), "udiff", ["a.py"])
    assert apply_edits({"a.py": "x = 1\ny = 2\n"}, edit) == {"a.py": "x = 1\ny = 3\n"}


def test_whole_render_picks_a_longer_fence_for_markdown_content():
    text = "# Notes\n```python\nprint(1)\n```\n"
    assert apply_edits({"a.md": ""}, parse_edits(render_whole("a.md", text), "whole", ["a.md"])) == {"a.md": text}


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_uses_small_blocks_when_they_are_unambiguous(fmt):
    before = {"m.py": "".join(f"line {i}\n" for i in range(100))}
    after = {"m.py": before["m.py"].replace("line 50\n", "line fifty\n")}
    reply = render_edits(before, after, fmt)
    assert apply_edits(before, parse_edits(reply, fmt, ["m.py"])) == after
    if fmt != "whole":
        assert len(reply) < 200


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_repeated_lines_stays_correct(fmt):
    before = {"r.go": "}\n}\n}\nx\n}\n}\n}\n"}
    after = {"r.go": "}\n}\n}\nx\n}\ny\n}\n}\n"}
    assert apply_edits(before, parse_edits(render_edits(before, after, fmt), fmt, ["r.go"])) == after


def test_render_refuses_deletion():
    with pytest.raises(ValueError, match="cannot delete"):
        render_edits({"a.py": "x\n"}, {}, "diff")


def _with_final_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


@pytest.mark.shared
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_on_every_polyglot_stub_to_reference_pair(shared_dir, fmt):
    pairs = exercise_pairs(shared_dir / "polyglot-benchmark")
    assert len(pairs) == 225
    for exercise, before, after in pairs:
        reply = render_edits(before, after, fmt)
        got = apply_edits(before, parse_edits(reply, fmt, list(before)))
        # edited files end with a newline (the one normalisation); untouched files are byte-identical
        expected = {
            path: before[path] if path in before and _with_final_newline(before[path]) == _with_final_newline(text)
            else _with_final_newline(text)
            for path, text in after.items()
        }
        assert got == expected, exercise
