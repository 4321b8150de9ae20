"""What the model is sent when the conversation outgrows its context: a deterministic, documented policy.

The conversation is ``[system, task, (assistant 1, observation 1), ..., (assistant P, observation P)]``
(a format error's feedback is step k's observation too). ``ContextPolicy.fit`` sends it whole when it
fits ``budget`` tokens; otherwise it walks one fixed sequence of ever smaller windows and sends the
first that fits:

1. the observations of steps 1, 2, ..., P-1 (oldest first) are replaced, one at a time, by the user
   message ``[observation of step N elided: K chars]`` (an observation no longer than its marker is
   kept as it is);
2. then, all of those elided, whole steps 1, 2, ..., P-1 are dropped (oldest first), and one user
   message right after the task says how many: ``[N earlier steps (steps 1-N) dropped to fit the
   context]`` (the model then sees two user messages in a row; hrmcode's prompt format allows it);
3. then the latest observation is elided too;
4. if even the system prompt, the task and the latest assistant message (with its observation
   elided) do not fit, ``ContextOverflow`` (the run ends with exit status ``context_overflow``).

So the system prompt and the task are never elided or dropped, and since the sequence does not depend
on the budget, a bigger budget always sends a superset of what a smaller one sends (monotonic).

A message costs ``count_tokens(content) + overhead_tokens`` (4 by default: role markers and
separators). The default ``count_tokens`` is an ESTIMATE, ``ceil(len(text) / 4)`` characters per
token; pass the model's tokenizer for an exact count. Counts are cached per message index (the
conversation only grows), so fitting costs O(steps) per call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

CONTEXT_POLICY = "keep-system-task-latest-v1"
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """A chars/4 estimate of a text's token count (rounded up); not a tokenizer."""
    return (len(text) + 3) // 4


def elision_marker(step: int, chars: int) -> str:
    return f"[observation of step {step} elided: {chars} chars]"


def drop_marker(steps: int) -> str:
    return f"[{steps} earlier step{'s' if steps != 1 else ''} (steps 1-{steps}) dropped to fit the context]"


class ContextOverflow(Exception):
    """Even the system prompt, the task and the latest action do not fit the budget."""


@dataclass
class ContextWindow:
    """What is sent: ``messages``, and which indices of the whole conversation they come from."""

    messages: list[dict[str, str]]
    sent: list[int]  # indices of the conversation sent, in order (elided ones included, as their marker)
    elided: list[int]  # indices whose content was replaced by an elision marker
    dropped: list[int]  # indices not sent at all (whole steps; one drop marker stands for them)
    tokens: int  # what the window costs under the policy's count

    def record(self) -> dict:
        """The ``Step.state["context"]`` record."""
        return {"policy": CONTEXT_POLICY, "sent": self.sent, "elided": self.elided, "dropped": self.dropped,
                "tokens": self.tokens}


def sent_messages(messages: list[dict[str, str]], record: dict) -> list[dict[str, str]]:
    """The messages a step was sent, rebuilt from the whole conversation and the step's
    ``state["context"]`` record (``ContextWindow.record``): what training needs to learn each action
    under the prompt it was taken with."""
    elided, dropped = set(record["elided"]), record["dropped"]
    out = []
    for index in record["sent"]:
        if dropped and index == dropped[-1] + 1:  # the marker stands where the dropped steps were
            out.append({"role": "user", "content": drop_marker(len(dropped) // 2)})
        if index in elided:
            step = (index - 1) // 2
            out.append({"role": messages[index]["role"],
                        "content": elision_marker(step, len(messages[index]["content"]))})
        else:
            out.append(messages[index])
    return out


class ContextPolicy:
    """``fit(messages)`` for one growing conversation, with its token counts cached."""

    name = CONTEXT_POLICY

    def __init__(self, budget: int, count_tokens: Callable[[str], int] | None = None,
                 overhead_tokens: int = MESSAGE_OVERHEAD_TOKENS):
        self.budget = budget  # 0 = unlimited
        self.count_tokens = count_tokens or estimate_tokens
        self.overhead_tokens = overhead_tokens
        self._costs: list[int] = []  # per message index; the conversation only grows

    def _cost(self, text: str) -> int:
        return self.count_tokens(text) + self.overhead_tokens

    def fit(self, messages: list[dict[str, str]]) -> ContextWindow:
        """The window to send (see the module docstring); ``ContextOverflow`` when nothing fits."""
        if len(messages) < 2 or len(messages) % 2:
            raise ValueError(f"a conversation is system, task and (assistant, observation) pairs; got {len(messages)} messages")
        while len(self._costs) < len(messages):
            self._costs.append(self._cost(messages[len(self._costs)]["content"]))
        costs = self._costs
        steps = (len(messages) - 2) // 2
        full = sum(costs[:len(messages)])
        if self.budget <= 0 or full <= self.budget:
            return self._window(messages, 0, 0, False, full)
        base = costs[0] + costs[1]
        if steps == 0:
            raise ContextOverflow(f"the system prompt and the task take {base} tokens; the context holds {self.budget}")

        def obs(k: int) -> int:  # index of step k's observation
            return 2 * k + 1

        # what eliding step k's observation saves (0 when its marker is no shorter)
        saving = [0] * (steps + 1)
        for k in range(1, steps + 1):
            marker = self._cost(elision_marker(k, len(messages[obs(k)]["content"])))
            saving[k] = max(0, costs[obs(k)] - marker)

        total = full
        for e in range(1, steps):  # phase 1: elide older observations, oldest first
            total -= saving[e]
            if total <= self.budget:
                return self._window(messages, e, 0, False, total)
        for d in range(1, steps):  # phase 2: drop whole older steps, oldest first
            total -= costs[2 * d] + costs[obs(d)] - saving[d]
            with_marker = total + self._cost(drop_marker(d))
            if with_marker <= self.budget:
                return self._window(messages, steps - 1, d, False, with_marker)
        dropped = steps - 1
        last = base + costs[2 * steps] + costs[obs(steps)] - saving[steps]
        last += self._cost(drop_marker(dropped)) if dropped else 0
        if last <= self.budget:  # phase 3: the latest observation elided too
            return self._window(messages, steps - 1, dropped, True, last)
        raise ContextOverflow(f"the system prompt, the task and the latest action take {last} tokens even with "
                              f"every observation elided; the context holds {self.budget}")

    def _window(self, messages: list[dict[str, str]], elide_upto: int, drop_upto: int, elide_latest: bool,
                tokens: int) -> ContextWindow:
        """Steps 1..drop_upto dropped, observations of steps 1..elide_upto (and the latest one when
        ``elide_latest``) elided where that saves tokens."""
        steps = (len(messages) - 2) // 2
        out = [messages[0], messages[1]]
        sent, elided = [0, 1], []
        if drop_upto:
            out.append({"role": "user", "content": drop_marker(drop_upto)})
        for k in range(drop_upto + 1, steps + 1):
            action, observation = 2 * k, 2 * k + 1
            out.append(messages[action])
            content = messages[observation]["content"]
            marker = elision_marker(k, len(content))
            if (k <= elide_upto or (elide_latest and k == steps)) and self._cost(marker) < self._costs[observation]:
                out.append({"role": messages[observation]["role"], "content": marker})
                elided.append(observation)
            else:
                out.append(messages[observation])
            sent += [action, observation]
        dropped = list(range(2, 2 + 2 * drop_upto))
        return ContextWindow(messages=out, sent=sent, elided=elided, dropped=dropped, tokens=tokens)
