"""The context policy: exact windows for small budgets, monotonic in the budget, never without system/task."""

from __future__ import annotations

import pytest

from hrmcode.agent.context import (
    CONTEXT_POLICY, ContextOverflow, ContextPolicy, drop_marker, elision_marker, estimate_tokens, sent_messages,
)


def conversation(steps: int, obs_chars: int = 100, action_chars: int = 5) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "S" * 10}, {"role": "user", "content": "T" * 10}]
    for k in range(1, steps + 1):
        messages.append({"role": "assistant", "content": f"a{k}" + "a" * (action_chars - 2)})
        messages.append({"role": "user", "content": str(k) + "o" * (obs_chars - 1)})
    return messages


def fit(messages, budget):
    return ContextPolicy(budget, len, overhead_tokens=0).fit(messages)


MARK = len(elision_marker(1, 100))  # what an elided 100-char observation costs (counting chars)


def test_everything_is_sent_when_it_fits_or_the_budget_is_unlimited():
    messages = conversation(3)
    full = 20 + 3 * 105
    for budget in (0, full):
        window = fit(messages, budget)
        assert window.messages == messages
        assert (window.sent, window.elided, window.dropped, window.tokens) == (list(range(8)), [], [], full)


def test_older_observations_are_elided_oldest_first_before_any_step_is_dropped():
    messages = conversation(3)
    full = 20 + 3 * 105
    window = fit(messages, full - 1)  # one elision is enough
    assert window.elided == [3] and window.dropped == [] and window.sent == list(range(8))
    assert window.messages[3] == {"role": "user", "content": "[observation of step 1 elided: 100 chars]"}
    assert window.tokens == full - 100 + MARK
    window = fit(messages, full - (100 - MARK) - 1)  # needs both older observations elided
    assert window.elided == [3, 5] and window.dropped == []
    assert window.messages[7] == messages[7]  # the latest observation is kept whole


def test_whole_steps_are_dropped_oldest_first_with_one_marker_saying_how_many():
    messages = conversation(3, action_chars=60)
    elided_all_older = 20 + 3 * 60 + 2 * MARK + 100
    window = fit(messages, elided_all_older - 1)
    assert window.dropped == [2, 3] and window.elided == [5]
    assert window.sent == [0, 1, 4, 5, 6, 7]
    assert window.messages[2] == {"role": "user", "content": drop_marker(1)}
    assert window.messages[2]["content"] == "[1 earlier step (steps 1-1) dropped to fit the context]"
    assert window.messages[3:] == [messages[4], {"role": "user", "content": elision_marker(2, 100)}] + messages[6:]
    one_dropped = 20 + len(drop_marker(1)) + 60 + MARK + 60 + 100
    assert window.tokens == one_dropped
    window = fit(messages, one_dropped - 1)
    assert window.dropped == [2, 3, 4, 5] and window.elided == [] and window.sent == [0, 1, 6, 7]
    assert window.messages[2]["content"] == "[2 earlier steps (steps 1-2) dropped to fit the context]"


def test_a_drop_that_costs_more_than_it_saves_goes_on_to_the_next_step():
    messages = conversation(3)  # a 5-char action plus an elided observation cost less than the drop marker
    window = fit(messages, 20 + 3 * 5 + 2 * MARK + 100 - 1)
    assert window.dropped == [2, 3, 4, 5] and window.tokens == 20 + len(drop_marker(2)) + 5 + 100


def test_latest_observation_goes_last_then_the_run_overflows():
    messages = conversation(3)
    smallest = 20 + len(drop_marker(2)) + 5 + len(elision_marker(3, 100))
    window = fit(messages, smallest)
    assert window.sent == [0, 1, 6, 7] and window.elided == [7] and window.tokens == smallest
    assert [m["content"] for m in window.messages[:2]] == ["S" * 10, "T" * 10]
    with pytest.raises(ContextOverflow, match="latest action"):
        fit(messages, smallest - 1)


def test_system_and_task_alone_too_big_overflow_at_the_start():
    with pytest.raises(ContextOverflow, match="system prompt and the task"):
        fit(conversation(0), 19)
    assert fit(conversation(0), 20).sent == [0, 1]


def test_observations_no_longer_than_their_marker_are_never_replaced():
    messages = conversation(3, obs_chars=10, action_chars=60)  # a marker is longer than the observation
    window = fit(messages, 20 + 3 * 70 - 1)
    assert window.elided == [] and window.dropped == [2, 3] and window.messages[3:] == messages[4:]


@pytest.mark.parametrize("obs_chars, action_chars", [(60, 5), (60, 60), (10, 30), (300, 40)])
def test_bigger_budget_keeps_a_superset_and_never_loses_system_or_task(obs_chars, action_chars):
    messages = conversation(6, obs_chars, action_chars)
    previous = None
    for budget in range(20, 20 + 6 * (obs_chars + action_chars) + 5):
        try:
            window = fit(messages, budget)
        except ContextOverflow:
            assert previous is None  # overflow only below every budget that fits
            continue
        assert window.sent[:2] == [0, 1] and window.messages[:2] == messages[:2]
        assert window.tokens <= budget
        kept = set(window.sent) - set(window.elided)
        if previous is not None:
            assert set(window.sent) >= set(previous.sent)
            assert kept >= set(previous.sent) - set(previous.elided)
        previous = window
    assert previous.messages == messages


def test_token_counts_use_the_given_counter_plus_overhead_and_default_to_chars_over_4():
    assert estimate_tokens("") == 0 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    window = ContextPolicy(0).fit(conversation(1))
    assert window.tokens == sum(estimate_tokens(m["content"]) + 4 for m in conversation(1))
    words = ContextPolicy(0, lambda text: len(text.split()), overhead_tokens=1).fit(conversation(1))
    assert words.tokens == 4 * 1 + 4


def test_record_names_the_policy():
    record = fit(conversation(2), 0).record()
    assert record == {"policy": CONTEXT_POLICY, "sent": [0, 1, 2, 3, 4, 5], "elided": [], "dropped": [], "tokens": 230}


@pytest.mark.parametrize("obs_chars, action_chars", [(60, 5), (60, 60), (300, 40)])
def test_each_window_is_rebuilt_exactly_from_its_record(obs_chars, action_chars):
    messages = conversation(5, obs_chars, action_chars)
    kinds = set()
    for budget in range(20, 20 + 5 * (obs_chars + action_chars) + 5, 3):
        try:
            window = fit(messages, budget)
        except ContextOverflow:
            continue
        assert sent_messages(messages, window.record()) == window.messages
        kinds.add((bool(window.elided), bool(window.dropped)))
    assert kinds >= {(False, False), (True, False), (False, True)}
