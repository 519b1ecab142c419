"""The verdict of scripts/netem-vm (bench/netem_vm.py) from the central's account: what it calls a failure."""

from __future__ import annotations

from typing import Any

from bench.netem_vm import judge

BACK = 1_000_000.0  # when the guest's network came back


def _events(n: int) -> list[dict[str, Any]]:
    events = [{"id": f"e{i}", "seq": i, "kind": "meter_reading", "state": "observed"} for i in range(1, n - 1)]
    events += [
        {"id": f"e{n - 1}", "seq": n - 1, "kind": "meter_offline", "state": "raised", "node_wall_time": BACK + 5}
    ]
    events += [{"id": f"e{n}", "seq": n, "kind": "meter_offline", "state": "cleared", "node_wall_time": BACK + 6}]
    return events


def _node(max_seq: int, received: int, unused: int = 0, dead: int = 0, kept: int = 0) -> dict[str, Any]:
    """The central's row: ``dead`` dead-lettered since the node's last start, ``kept`` dead letters in its outbox."""
    missing = max_seq - received - unused
    return {
        "max_seq": max_seq,
        "seq_unused": unused,
        "seq_missing": missing,
        "health": {"sync": {"dead_lettered": dead}, "dead_letters": kept},
    }


def test_every_event_once_and_the_alerts_soon_after_the_return_pass() -> None:
    assert judge(_node(40, 40), _events(40), BACK, {"reading": 0}) == []


def test_a_lost_event_a_double_a_dead_letter_a_queued_event_and_a_late_alert_each_fail() -> None:
    events = _events(40)
    assert any("lost" in f for f in judge(_node(41, 40), events, BACK, {}))
    doubled = [*events, dict(events[3])]
    assert any("stored twice: 1 id(s), 1 seq(s)" in f for f in judge(_node(40, 40), doubled, BACK, {}))
    assert any("dead-lettered" in f for f in judge(_node(40, 40, dead=2), events, BACK, {}))
    # dead-lettered before a SIGKILL: the restarted node's totals say 0, its outbox keeps them
    assert any("1 dead letter(s) in the node's outbox" in f for f in judge(_node(40, 40, kept=1), events, BACK, {}))
    assert any("left in the node's outbox" in f for f in judge(_node(40, 40), events, BACK, {"alert": 1}))
    assert any("after the network came back" in f for f in judge(_node(40, 40), events, BACK - 600, {}))
    no_alert = [e for e in events if e["kind"] != "meter_offline"]
    assert any("meter_offline raised and cleared" in f for f in judge(_node(38, 38), no_alert, BACK, {}))
