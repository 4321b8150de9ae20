import pytest


@pytest.fixture(autouse=True)
def _rebind_output_streams():
    """The CLI runner closes the streams the output sink was bound to; rebind it after each test so library
    logs in later tests do not write to a closed file."""
    yield
    from hrmcode.cli._output import out

    out.configure()
