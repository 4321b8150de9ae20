"""tests/data: the fixtures folder holds exercise trees in their real layout (with their own
`*_test.py` files); they are data, not tests of hrmcode, so pytest must not collect them."""

from __future__ import annotations

import pytest

collect_ignore_glob = ["fixtures/*"]


@pytest.fixture(autouse=True)
def _fresh_output_streams():
    """The CLI sink keeps the streams of the last CliRunner call, which are closed afterwards; a
    later library test that logs a warning would write to a closed file. Rebind to the current ones."""
    from hrmcode.cli._output import out

    out.configure()
    yield
