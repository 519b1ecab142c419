"""Crash safety against the real central: a child node is SIGKILLed at random moments while it enqueues and
syncs, 20 times (the bench, `changbai-bench --only crash_safety`, does 200); every event whose ``put`` returned is at the central exactly once, no seq number is used twice,
and every seq gap is explained by an ``outbox_resumed`` event (readings of an unfinished group commit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.bench_crash_safety import NODE_ID, check, crash_rounds

ROUNDS = 20


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_durable(central: Any, tmp_path: Path) -> None:
    token = central.register(NODE_ID, "meter")
    report = crash_rounds(central.url, token, tmp_path / "node", ROUNDS, lambda: central.events(NODE_ID), seed=7)
    print(f"{report.durable} events durable over {ROUNDS} rounds")
    assert report.durable > 4 * ROUNDS  # the children did real work between kills
    assert report.missing == []
    assert report.duplicates == 0
    assert report.seq_conflicts == 0
    assert report.unexplained_gaps == []
    node = central.node(NODE_ID)
    assert node["seq_conflicts"] == 0


def test_the_check_catches_a_lost_event_and_an_unexplained_gap(tmp_path: Path) -> None:
    """The checker itself must be able to fail."""
    (tmp_path / "durable.txt").write_text("a\nb\nc\n")
    events: list[dict[str, Any]] = [
        {"id": "a", "seq": 1, "kind": "flow", "payload": {}},
        {"id": "b", "seq": 2, "kind": "flow", "payload": {}},
        {"id": "x", "seq": 5, "kind": "flow", "payload": {}},
        {"id": "y", "seq": 9, "kind": "outbox_resumed", "payload": {"seq_not_stored_from": 3, "seq_not_stored_to": 3}},
        {"id": "z", "seq": 9, "kind": "flow", "payload": {}},
    ]
    report = check(tmp_path, events, 1, 0.0)
    assert report.missing == ["c"]
    assert report.seq_conflicts == 1
    assert report.unexplained_gaps == [4, 6, 7, 8]
