"""``ServeSettings``: what one server allows a request and a connection.

Declared once here, with help text and ranges (``hrmcode.options.option``), and read by the app
(``hrmcode.serve.app``), the server (``hrmcode.serve.server``) and the ``hrmcode serve`` options,
which are generated from these fields. This module imports neither FastAPI nor uvicorn, so the
command line can read it without loading the server. Nothing here checks values; the command
line checks the ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

from hrmcode.options import option


@dataclass(frozen=True)
class ServeSettings:
    """What one server allows a request and a connection (the ``hrmcode serve`` options)."""

    api_key: str | None = None
    max_tokens_cap: int = option(1024, "Largest max_tokens a request may ask for (tokens); more is a 400.", min=1)
    default_max_tokens: int = option(256, "max_tokens when a request gives none (tokens; capped).", min=1)
    max_request_tokens: int = option(
        16384, "Most tokens one request may ask to generate: prompts x n x max_tokens; more is a 400. The "
               "default lets one prompt ask for n=16 at a max_tokens of 1024.", min=1)
    max_concurrency: int = option(8, "Generations running at once, decoded together as one batch (continuous "
                                     "batching: requests join and leave between decode steps); 1 runs them one "
                                     "at a time.", min=1)
    max_queue: int = option(8, "Requests waiting for a slot; beyond that a request gets 429.", min=0)
    max_body_bytes: int = option(1 << 20, "Largest request body (bytes); more is a 413.", min=1024)
    client_timeout_s: float = option(
        30.0, "Seconds a client may take to send a request's headers once it has started, to send its body, and to "
              "take each part of the answer; then the connection is closed (a late body gets 408).",
        flags=("--client-timeout",), min=0.1)
    idle_timeout_s: float = option(
        5.0, "Seconds a connection may send nothing, before its first request or between requests, before it "
             "is closed.",
        flags=("--idle-timeout",), min=0.1)
    max_segments: int | None = option(
        None, "Looped models (hrm, trm): most segments a request runs, when it gives no max_segments of its own "
              "(default: the model's own count). A request may ask for up to the larger of this and the model's "
              "count; responses report what ran in usage.segments.", min=1)
    halt_threshold: float | None = option(
        None, "ACT models: halt a request once its Q head's halt probability reaches this (0 to 1, exclusive; lower "
              "halts sooner), when it gives no halt_threshold of its own (default: the trained rule).",
        min=0.0, max=1.0)
