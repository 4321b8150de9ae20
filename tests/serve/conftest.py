import pytest

from hrmcode.serve.app import ServeSettings, create_app
from hrmcode.serve.server import background_server
from tests.serve.fakes import FakeEngine


@pytest.fixture(autouse=True)
def _rebind_output_streams():
    """The CLI runner closes the streams the output sink was bound to; rebind it after each test so library
    logs in later tests do not write to a closed file."""
    yield
    from hrmcode.cli._output import out

    out.configure()


@pytest.fixture
def serve():
    """``serve(engine, **settings)`` -> base URL of a server on 127.0.0.1 for the test's duration."""
    stack = []

    def start(engine=None, **settings):
        engine = engine or FakeEngine()
        ctx = background_server(create_app(engine, ServeSettings(**settings)))
        url = ctx.__enter__()
        stack.append(ctx)
        return url

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)
