"""aiokafka's repeats held back (shared.kafka_clients.RepeatsHeldBack); the fault test
(tests/e2e/test_faults.py) holds the logs of a broker restart to a bound."""

from __future__ import annotations

import logging

from shared.kafka_clients import RepeatsHeldBack


def _record(name: str, msg: str, at: float, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    record.created = at
    return record


def test_a_repeat_within_the_window_is_held_back_and_counted_in_the_next_one_let_through():
    held = RepeatsHeldBack(every_s=10)
    template = "Unable connect to node with id %s: %s"
    passed = [held.filter(_record("aiokafka", template, t / 1000, 1, "refused")) for t in range(0, 10_000, 1)]
    assert passed[0] and not any(passed[1:]), "one let through in the first 10 s, 9,999 held back"
    after = _record("aiokafka", template, 10.0, 1, "refused")
    assert held.filter(after)
    assert after.getMessage() == "Unable connect to node with id 1: refused [9999 more like this in 10s, not logged]"
    again = _record("aiokafka", template, 20.5, 1, "refused")
    assert held.filter(again) and again.getMessage() == "Unable connect to node with id 1: refused"


def test_other_templates_and_loggers_are_let_through():
    held = RepeatsHeldBack(every_s=10)
    assert held.filter(_record("aiokafka", "Unable connect to node with id %s: %s", 0.0, 1, "refused"))
    assert held.filter(_record("aiokafka", "Unable to update metadata from %s", 0.1, [1]))
    assert held.filter(_record("aiokafka.consumer.fetcher", "Unable to update metadata from %s", 0.2, [1]))
    for at in (0.3, 0.4):  # the project's own records are never held back, nor aiokafka's news
        assert held.filter(_record("shared.kafka", "dispatch-orders: outage while handling %d events", at, 1))
        joined = _record("aiokafka.consumer.group_coordinator", "Joined group %r", at, "g", level=logging.INFO)
        assert held.filter(joined)
