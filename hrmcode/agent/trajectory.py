"""An agent's trajectory: the whole conversation, and one state/action/observation/reward record per step.

``Trajectory.to_record()`` is the JSON record ``eval swe`` writes to ``trajectories.jsonl`` and
``Trajectory.from_record`` reads back (``from_record(to_record(t)) == t``). A record is also a
mini-swe-agent trajectory (``trajectory_format`` ``mini-swe-agent-1.1``): ``messages`` holds
``{"role", "content"}`` dicts and ``info`` carries ``exit_status`` (in mini-swe-agent's words),
``submission`` and ``model_stats.api_calls``, as its ``DefaultAgent.serialize`` writes them
(mini-swe-agent's inspector reads ``messages`` from one record saved as a JSON file). ``info`` and
``trajectory_format`` are derived from the fields and ignored when reading.

A step is one model call: the action it parsed to (``kind`` ``bash``, ``edit``, ``submit``, or
``format_error`` for a reply that held no valid action), the observation sent back, the command's
exit code, its reward (0 until graded; the last step carries the episode's), and its state: the
files the step changed and what the context policy sent (``hrmcode/agent/context.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from hrmcode.errors import InputError

TRAJECTORY_FORMAT = 1

# hrmcode's exit statuses in mini-swe-agent's words (its DefaultAgent and exceptions); a crash is
# named by its exception class there, which the record keeps in ``error``
_MINI_SWE_AGENT_STATUS = {
    "submitted": "Submitted",
    "step_limit": "LimitsExceeded",
    "time_limit": "TimeExceeded",
    "format_errors": "RepeatedFormatError",
    "context_overflow": "ContextWindowExceededError",
    "crash": "Crash",
}


@dataclass
class Step:
    """One state/action/observation/reward record."""

    index: int  # 1 for the first model call
    action: dict  # {"kind", "command"|"edits", "thought", "raw": the model's full reply}
    observation: str
    exit_code: int | None
    reward: float = 0.0  # 0 until graded; the last step carries the episode reward
    done: bool = False
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    state: dict = field(default_factory=dict)  # {"files_modified": [...], "context": {...}}


@dataclass
class Trajectory:
    problem: str
    policy: str  # the model's name
    messages: list[dict]  # the whole conversation (system, user, assistant, user...), unelided
    steps: list[Step]
    exit_status: str
    plan: str | None = None
    planner: str | None = None
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    format_errors: int = 0
    context_policy: str = ""  # the context policy's name/version
    protocol: str = ""  # the turn protocol's name/version (hrmcode.agent.protocol.PROTOCOL)
    submission: str = ""  # what the submit command printed after the sentinel line
    error: str | None = None  # a crash's "ExceptionType: message" and where it happened

    def to_record(self) -> dict:
        """JSON-ready, with ``format`` and mini-swe-agent's ``info`` / ``trajectory_format``."""
        record = {"format": TRAJECTORY_FORMAT, **asdict(self)}
        record["info"] = {
            "exit_status": _MINI_SWE_AGENT_STATUS.get(self.exit_status, self.exit_status),
            "submission": self.submission,
            "model_stats": {"api_calls": len(self.steps), "instance_cost": 0.0},
        }
        record["trajectory_format"] = "mini-swe-agent-1.1"
        return record

    @classmethod
    def from_record(cls, record: dict) -> Trajectory:
        """The trajectory a ``to_record()`` record holds; ``InputError`` for another format or a
        record missing a field."""
        if record.get("format") != TRAJECTORY_FORMAT:
            raise InputError(f"trajectory record of format {record.get('format')!r}; this hrmcode reads format "
                             f"{TRAJECTORY_FORMAT}", "write it again with this hrmcode's eval swe")
        names = {f.name for f in fields(cls)}
        try:
            steps = [Step(**step) for step in record["steps"]]
            return cls(**{**{k: v for k, v in record.items() if k in names}, "steps": steps})
        except (KeyError, TypeError) as exc:
            raise InputError(f"malformed trajectory record: {exc}", "each record must be a Trajectory.to_record()") from exc
