"""Meter reading: counter sanity (rollover, reset, implausible jumps, gaps), health, and the poll schedule."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from common.clock import ManualClock
from common.config import ButtonPin
from hal.modbus import CrcError, NoResponseError, ShortFrameError, SlaveExceptionError, WrongResponderError
from meter_node.config import HouseholdSection, MeterEntry
from meter_node.profiles import load_profile
from meter_node.reader import CounterSanity, MeterHealth, MeterReader, error_class


def sanity(**kw: float | None) -> CounterSanity:
    args: dict = {"meter_id": "m1", "max_flow_l_min": 60.0, "rollover_litres": 65536.0, "resolution_l": 1.0}
    args.update(kw)
    return CounterSanity(**args)


# ---------------------------------------------------------------------------------------- counter sanity
def test_first_reading_and_normal_use() -> None:
    s = sanity()
    assert s.update(0.0, 1000.0) == (1000.0, "first", [])
    assert s.update(10.0, 1005.0) == (1005.0, "ok", [])
    assert s.update(20.0, 1005.0) == (1005.0, "ok", [])


def test_failed_read_is_a_gap_and_changes_nothing() -> None:
    s = sanity()
    s.update(0.0, 1000.0)
    assert s.update(10.0, None) == (None, "gap", [])
    # the next read is judged against the last good one, over the whole elapsed time
    assert s.update(20.0, 1015.0) == (1015.0, "ok", [])


def test_rollover_keeps_the_total_counting() -> None:
    s = sanity()
    s.update(0.0, 65530.0)
    total, verdict, events = s.update(10.0, 4.0)  # 6 L to the top, 4 L past it
    assert (total, verdict, events) == (65540.0, "rollover", [])
    assert s.update(20.0, 10.0)[0] == 65546.0


def test_drop_that_is_not_a_plausible_rollover_is_a_reset() -> None:
    s = sanity()
    s.update(0.0, 30000.0)  # not near the top: a drop to 4 L is a replaced or reset meter
    total, verdict, events = s.update(10.0, 4.0)
    assert (total, verdict) == (None, "reset")
    assert [e.kind for e in events] == ["meter_reset"]
    assert events[0].payload["previous_litres"] == 30000.0 and events[0].payload["new_litres"] == 4.0
    assert events[0].key == "m1" and events[0].state == "observed"
    # the continuous total carries on from where it was: use after the reset counts, the reset itself does not
    assert s.update(20.0, 9.0) == (30005.0, "ok", [])


def test_large_wrap_beyond_max_flow_is_a_reset_not_a_rollover() -> None:
    s = sanity()
    s.update(0.0, 65000.0)
    total, verdict, _ = s.update(10.0, 5000.0)  # wrapping would mean 5536 L in 10 s
    assert (total, verdict) == (None, "reset")


def test_a_small_drop_is_float_jitter_not_a_reset() -> None:
    s = sanity(resolution_l=0.0)
    s.update(0.0, 1000.4)
    assert s.update(10.0, 1000.1) == (1000.4, "jitter", [])
    assert s.update(20.0, 999.8)[1] == "reset"  # 0.6 L down is more than jitter


@pytest.mark.parametrize(
    ("elapsed", "delta", "verdict"),
    [
        (10.0, 10.0 + 1.0 + 1.0, "ok"),  # 60 L/min x 10 s + one step + slack: exactly allowed
        (10.0, 10.0 + 1.0 + 1.01, "implausible"),  # just over
        (3600.0, 3000.0, "ok"),  # an hour of gap allows a lot of use
    ],
)
def test_implausible_jump_both_sides_of_the_limit(elapsed: float, delta: float, verdict: str) -> None:
    s = sanity()
    s.update(0.0, 100.0)
    total, got, events = s.update(elapsed, 100.0 + delta)
    assert got == verdict
    if verdict == "implausible":
        assert total is None and [e.kind for e in events] == ["implausible_reading"]
        assert events[0].payload["allowed_litres"] == pytest.approx(12.0)
    else:
        assert total == 100.0 + delta and events == []


def test_coarse_pulse_meter_is_not_implausible() -> None:
    """A 10 L pulse meter read every second moves 10 L at once: one resolution step is always allowed."""
    s = sanity(resolution_l=10.0)
    s.update(0.0, 100.0)
    assert s.update(1.0, 110.0) == (110.0, "ok", [])


def test_a_lone_spike_is_dropped_and_the_counter_goes_on() -> None:
    s = sanity()
    s.update(0.0, 100.0)
    assert s.update(1.0, 50000.0)[1] == "implausible"
    assert s.update(2.0, 101.0) == (101.0, "ok", [])


def test_a_new_level_that_holds_is_a_replaced_meter() -> None:
    s = sanity(confirm_reads=3)
    s.update(0.0, 100.0)
    assert s.update(1.0, 40000.0)[1] == "implausible"
    total, verdict, events = s.update(2.0, 40000.0)
    assert verdict == "implausible" and events == []  # at most one event per meter per 10 minutes
    total, verdict, events = s.update(3.0, 40001.0)
    assert (total, verdict) == (None, "reset")
    assert events[0].kind == "meter_reset" and events[0].payload["reason"] == "jump_confirmed"
    assert s.update(4.0, 40002.0) == (101.0, "ok", [])


def test_implausible_events_are_rate_limited_with_a_count() -> None:
    s = sanity(confirm_reads=100)
    s.update(0.0, 100.0)
    first = s.update(1.0, 50000.0)[2]
    quiet = [s.update(1.0 + i, 60000.0 + 20000.0 * (i % 2))[2] for i in range(1, 5)]
    assert len(first) == 1 and all(q == [] for q in quiet)
    later = s.update(700.0, 90000.0)[2]
    assert later[0].payload["suppressed_since_last"] == 4


def test_float_meter_without_rollover_drop_is_reset() -> None:
    s = sanity(rollover_litres=None, resolution_l=0.0)
    s.update(0.0, 4_000_000_000.0)
    assert s.update(10.0, 5.0)[1] == "reset"


def test_state_survives_a_restart_without_trusting_old_time() -> None:
    s = sanity()
    s.update(0.0, 30000.0)
    s.update(10.0, 5.0)  # reset: offset now carries the total
    saved = s.to_state()
    again = sanity()
    again.restore(saved)
    # after a restart the elapsed time is unknown: a big rise is accepted, a drop is still a reset
    assert again.update(5.0, 905.0) == (30900.0, "ok", [])
    assert again.update(6.0, 100.0)[1] == "reset"


# ---------------------------------------------------------------------------------------------- health
def test_health_ok_degraded_offline_and_back() -> None:
    h = MeterHealth(meter_id="m1", offline_after_s=60.0, started_at=0.0)
    assert h.record(1.0, None) == [] and h.status == "ok"
    assert h.record(2.0, "crc") == [] and h.status == "ok"  # one lost frame in 20 reads is noise
    h.record(3.0, None)
    events = h.record(4.0, "no_response")
    assert h.status == "degraded" and [e.kind for e in events] == ["meter_health"]
    assert events[0].payload["crc"] == 1 and events[0].payload["no_response"] == 1
    h.record(5.0, None)
    assert h.status == "degraded"  # stays degraded until the window is clean
    assert h.counters["reads_ok"] == 3 and h.counters["reads_failed"] == 2
    h.record(30.0, "no_response")
    assert h.check(64.9) == []  # 59.9 s since the last good read
    events = h.check(65.0)
    assert h.status == "offline"
    assert [(e.kind, e.state) for e in events] == [("meter_health", "observed"), ("meter_offline", "raised")]
    assert events[1].payload["no_response"] == 2 and events[1].severity == "warning"
    assert h.record(80.0, "no_response") == []  # still offline: no second alert
    events = h.record(90.0, None)
    assert h.status == "degraded"  # back, but with recent failures
    assert ("meter_offline", "cleared") in [(e.kind, e.state) for e in events]


def test_meter_never_heard_goes_offline_from_start() -> None:
    h = MeterHealth(meter_id="m1", offline_after_s=60.0, started_at=100.0)
    h.record(101.0, "no_response")
    assert h.check(159.9) == []
    assert [e.kind for e in h.check(160.0)] == ["meter_health", "meter_offline"]


def test_recovers_to_ok_once_the_window_is_clean() -> None:
    h = MeterHealth(meter_id="m1", offline_after_s=600.0, started_at=0.0, window=5)
    h.record(1.0, "crc")
    h.record(2.0, "crc")
    assert h.status == "degraded"
    for t in range(3, 7):
        h.record(float(t), None)
    assert h.status == "degraded"  # the window still holds one failure
    events = h.record(7.0, None)
    assert h.status == "ok" and events[0].payload["previous"] == "degraded"


@pytest.mark.parametrize(
    ("exc", "name"),
    [
        (NoResponseError("x"), "no_response"),
        (CrcError("x"), "crc"),
        (SlaveExceptionError("x", exception_code=2), "slave_exception"),
        (WrongResponderError("x"), "wrong_responder"),
        (ShortFrameError("x"), "short_frame"),
        (OSError("port gone"), "port_error"),
    ],
)
def test_error_classes(exc: BaseException, name: str) -> None:
    assert error_class(exc) == name


# --------------------------------------------------------------------------------------------- schedule
class ScriptedBus:
    """Answers reads from a function of (slave, time); for the schedule only (the real bus is in node tests)."""

    def __init__(self, clock: ManualClock, answer: Callable[[int, float], list[int] | BaseException]) -> None:
        self.clock = clock
        self.answer = answer
        self.reads: list[tuple[int, int, int, int, float]] = []

    def read_registers(self, slave: int, address: int, count: int, function_code: int = 3) -> list[int]:
        self.reads.append((slave, address, count, function_code, self.clock.monotonic()))
        self.clock.advance(0.05)  # a bus turn takes time
        result = self.answer(slave, self.clock.monotonic())
        if isinstance(result, BaseException):
            raise result
        return result


def entry(mid: str, address: int, profile: str, interval: float, offline_after: float = 60.0) -> MeterEntry:
    return MeterEntry(
        id=mid,
        address=address,
        profile=profile,
        poll_interval_s=interval,
        offline_after_s=offline_after,
        household=HouseholdSection(resident=mid.upper(), ok_button=ButtonPin(pin=5)),
    )


def test_each_meter_on_its_own_interval_one_schedule() -> None:
    clock = ManualClock(monotonic=0.0)
    litres = load_profile("u32_le_litres")
    pulses = load_profile("pulse_u32_10l")
    bus = ScriptedBus(clock, lambda slave, t: (litres if slave == 1 else pulses).encode(1000.0))
    reader = MeterReader(bus, [entry("a", 1, "u32_le_litres", 1.0), entry("b", 2, "pulse_u32_10l", 5.0)], clock=clock)
    reads = []
    while clock.monotonic() < 20.0:
        clock.advance(max(0.0, reader.next_due() - clock.monotonic()))
        reads += reader.poll_due()
    per_meter = {mid: sum(r.meter_id == mid for r in reads) for mid in ("a", "b")}
    assert per_meter["a"] in (20, 21) and per_meter["b"] in (4, 5)
    assert {(s, a, c, fc) for s, a, c, fc, _ in bus.reads} == {(1, 8, 2, 3), (2, 0, 2, 4)}
    assert all(r.total_litres == 1000.0 and r.error is None for r in reads)


def test_offline_meter_is_polled_less_and_raises_then_clears() -> None:
    clock = ManualClock(monotonic=0.0)
    profile = load_profile("u32_le_litres")
    alive = {"b": True}

    def answer(slave: int, t: float) -> list[int] | BaseException:
        if slave == 2 and not alive["b"]:
            return NoResponseError("silence")
        return profile.encode(500.0)

    bus = ScriptedBus(clock, answer)
    reader = MeterReader(
        bus, [entry("a", 1, "u32_le_litres", 1.0), entry("b", 2, "u32_le_litres", 1.0, 30.0)], clock=clock
    )
    alive["b"] = False
    detections = []
    while clock.monotonic() < 300.0:
        clock.advance(max(0.0, reader.next_due() - clock.monotonic()))
        for read in reader.poll_due():
            detections += [(read.meter_id, d.kind, d.state) for d in read.detections]
    assert ("b", "meter_offline", "raised") in detections
    assert reader.status("b") == "offline" and reader.status("a") == "ok"
    b_reads = [r for r in bus.reads if r[0] == 2 and r[4] > 60.0]
    assert len(b_reads) <= 9  # every 30 s once offline, not every second
    assert reader.health()["b"]["no_response"] >= 30
    alive["b"] = True
    while clock.monotonic() < 340.0:
        clock.advance(max(0.0, reader.next_due() - clock.monotonic()))
        for read in reader.poll_due():
            detections += [(read.meter_id, d.kind, d.state) for d in read.detections]
    assert ("b", "meter_offline", "cleared") in detections
