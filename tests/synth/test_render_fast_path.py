"""``render_edits`` skips re-parsing SEARCH/REPLACE blocks whose parse is certain; the replies it
writes must be exactly those of the full parse-and-apply round trip, and the shortcut must stand
aside whenever a block or path could read differently."""

from __future__ import annotations

import random

import pytest

from hrmcode import edits
from hrmcode.edits import parse_edits, render_search_replace

LINES = ["def f(x):\n", "    return x\n", "\n", "x = 1\n", "x = 1\n", "  x = 1\n", "y\r\n", "# note\n", "\tpass\n",
         "=======\n", "<<<<<<< SEARCH\n", ">>>>>>> REPLACE\n", "=====\u2028\n", "```\n", "z"]
PATHS = ["a.py", "src/b.go", "x.py:", "**y.py**", "`z.py`", "c d.py", "dir/e.rs"]


def _cases(seed: int, count: int):
    rng = random.Random(seed)
    for _ in range(count):
        path = rng.choice(PATHS)
        before = "".join(rng.choice(LINES) for _ in range(rng.randint(0, 14)))
        lines = before.splitlines(keepends=True)
        for _ in range(rng.randint(1, 3)):
            if lines and rng.random() < 0.7:
                lines[rng.randrange(len(lines))] = rng.choice(LINES)
            else:
                lines.insert(rng.randint(0, len(lines)), rng.choice(LINES))
        yield path, before, "".join(lines)


def _render(before_files, after_files):
    try:
        return edits.render_edits(before_files, after_files, "diff")
    except ValueError as exc:
        return f"ValueError: {exc}"


def test_render_edits_equals_the_full_round_trip(monkeypatch):
    fast = [_render({p: b} if b else {}, {p: a}) for p, b, a in _cases(1, 1500)]
    monkeypatch.setattr(edits, "_parsed_blocks", lambda path, blocks: None)  # always parse the text
    slow = [_render({p: b} if b else {}, {p: a}) for p, b, a in _cases(1, 1500)]
    assert fast == slow
    assert sum(r.startswith("ValueError") for r in fast) > 10  # marker lines: no format can carry them


@pytest.mark.parametrize("seed", [2, 3])
def test_parsed_blocks_are_what_parsing_gives(seed):
    certain = uncertain = 0
    for path, before, after in _cases(seed, 800):
        for context in (1, 3, None):
            blocks = edits._search_replace_blocks(before, after, context)
            text = "".join(render_search_replace(path, s, r) for s, r in blocks)
            shortcut = edits._parsed_blocks(path, blocks)
            if shortcut is None:
                uncertain += 1
                continue
            certain += 1
            assert shortcut == parse_edits(text, "diff", [path])
    assert certain > 150 and uncertain > 100
