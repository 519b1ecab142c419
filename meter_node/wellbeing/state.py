"""The wellbeing monitor's whole state: one dataclass, saved and restored by common.statefile, versioned.

Version 1 was the state of the rules before the per-household model (issue 14): a dict listed by hand. Its day
history, meter bookkeeping and away date carry over; the learned profile does not (the model learns silences,
not the old per-half-hour maxima) and the open incidents are the alert book's. Version 3 adds ``reported_since``,
version 4 ``Run.brisk``, version 5 ``pulse_gap``, version 6 the check-in (``ask_t``, ``asking``), version 7 what an
answer leaves unlearned (``learn_from``, ``paired_learn_from``, ``Day.first_learned``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from common.catalogue import Severity

VERSION = 7


@dataclass
class Run:
    """Water moving now (a flow run): when it began, its last rise, litres above base, an "I'm OK" during it."""

    start: float
    last: float
    litres: float = 0.0
    ack: float = 0.0
    used: bool = False  # stood out from the floor as a use at least once
    brisk: bool = False  # and at a person's pace (use_min within two minutes) at least once


@dataclass
class Day:
    """The local day now going."""

    date: str
    start_t: float
    end_t: float
    morning_t: float
    volume: float = 0.0
    first_use: float | None = None  # the first sign of life from morning_t (the morning rule's)
    first_learned: float | None = None  # the same, leaving out answers to a check-in (what the model learns)
    longest_run: float = 0.0
    away: bool = False


@dataclass
class DayRecord:
    """A closed day, as the rules learn from it."""

    date: str
    weekend: bool
    volume: float
    coverage: float
    first_use_s: float | None
    longest_run_s: float
    away: bool


@dataclass
class WellbeingState:
    """Everything a monitor needs to carry on after a restart (JSON through common.statefile)."""

    last_t: float | None = None
    last_total: float | None = None
    resolution: float = 0.0  # smallest rise seen: the meter's pulse size (0: none seen yet)
    gaps: list[list[float]] = field(default_factory=list)  # [start, end] not observed; [start, end, 1.0]: no use in it
    rises: list[list[float]] = field(default_factory=list)  # [t, litres over the floor, over base] in the window
    last_rise_t: float | None = None
    lone_t: float | None = None  # coarse meter: the last pulse without a partner yet
    pulse_gap: float | None = None  # coarse meter: the time between the last two pulses (a leak's come evenly)
    short_bin: list[float] = field(default_factory=lambda: [0.0, 0.0])  # [10-minute index, litres]
    short_bins: list[float] = field(default_factory=list)
    hour_bin: list[float] = field(default_factory=lambda: [0.0, 0.0])  # [hour index, litres]
    hour_bins: list[float | None] = field(default_factory=list)
    base_lph: float = 0.0
    leak_lph: float = 0.0
    run: Run | None = None
    anchor: float = 0.0  # the last sign of life
    paired_anchor: float = 0.0  # coarse meter: the last sign of life from pulses that came in a pair
    out_since: float | None = None  # the door contact or the away button says the resident went out
    door_t: float | None = None  # the last door event (out if no water follows)
    # [start, observed seconds, 1 if the resident was known to be out] of ended silences, for learning
    silences: list[list[float]] = field(default_factory=list)
    paired_silences: list[list[float]] = field(default_factory=list)
    day: Day | None = None
    history: list[DayRecord] = field(default_factory=list)
    clean_nights: list[str] = field(default_factory=list)
    away_until: float | None = None
    leak_raised_day: str | None = None
    reported: dict[str, Severity] = field(default_factory=dict)  # kind -> severity last reported (see monitor.py)
    # kind -> when the silence behind that report began: a newer one past its warning is raised afresh (monitor.py)
    reported_since: dict[str, float] = field(default_factory=dict)
    ask_t: float | None = None  # when the resident was last asked "are you OK?" (ask_first_min; monitor.py)
    # that check-in is still open: not asked again before it is told or the silence ends (on a coarse meter a lone
    # pulse moves the anchor while the paired clock's silence goes on, so ask_t alone cannot say this)
    asking: bool = False
    # where the silence an answer to a check-in ended began, to be learned whole (an answer teaches nothing)
    learn_from: float | None = None
    paired_learn_from: float | None = None


def _from_v1(old: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (the rules before issue 14) -> 2: keep the day history and the meter's bookkeeping."""
    fresh = WellbeingState()
    history = [
        {
            "date": d["date"],
            "weekend": _weekend(d["date"]),
            "volume": float(d["volume"]),
            "coverage": float(d["coverage"]),
            "first_use_s": d.get("first_use_s"),
            "longest_run_s": float(d.get("longest_run_s", 0.0)),
            "away": bool(d.get("away", False)),
        }
        for d in old.get("history", [])
    ]
    day = old.get("day")
    new_day = None
    if day:
        keep = ("date", "start_t", "end_t", "morning_t", "volume", "first_use", "longest_run", "away")
        new_day = {k: day[k] for k in keep}
    resolution = old.get("resolution")
    run = old.get("run")
    reported = {k: v["severity"] for k, v in old.get("incidents", {}).items()}
    return {
        **{k: v for k, v in vars(fresh).items()},
        "last_t": old.get("last_t"),
        "last_total": old.get("last_total"),
        "resolution": 0.0 if resolution is None else float(resolution),
        "gaps": old.get("gaps", []),
        "short_bin": old.get("short_bin", [0.0, 0.0]),
        "short_bins": old.get("short_bins", []),
        "hour_bin": old.get("hour_bin", [0.0, 0.0]),
        "hour_bins": old.get("hour_bins", []),
        "base_lph": float(old.get("base_lph", 0.0)),
        "leak_lph": float(old.get("leak_lph", 0.0)),
        "run": None if not run else {k: run.get(k, 0.0) for k in ("start", "last", "litres", "ack")} | {"used": True},
        "anchor": float(old.get("anchor", 0.0)),
        "paired_anchor": float(old.get("paired_anchor", old.get("anchor", 0.0))),
        "day": new_day,
        "history": history,
        "clean_nights": old.get("clean_nights", []),
        "away_until": old.get("away_until"),
        "leak_raised_day": old.get("incidents", {}).get("leak_suspected", {}).get("raised_day"),
        "reported": reported,
    }


def _from_v2(old: dict[str, Any]) -> dict[str, Any]:
    """Version 2 -> 3: ``reported_since`` is new; an open report's silence is taken as the one now going on."""
    return {**old, "reported_since": {}}


def _from_v3(old: dict[str, Any]) -> dict[str, Any]:
    """Version 3 -> 4: a flow run knows whether it came at a person's pace; one going on is taken as if it had."""
    run = old.get("run")
    return {**old, "run": None if run is None else {**run, "brisk": True}}


def _from_v4(old: dict[str, Any]) -> dict[str, Any]:
    """Version 4 -> 5: a coarse meter's time between its last two pulses is new (unknown: the next pulse is judged
    as before)."""
    return {**old, "pulse_gap": None}


def _from_v5(old: dict[str, Any]) -> dict[str, Any]:
    """Version 5 -> 6: the check-in is new (nobody has been asked yet)."""
    return {**old, "ask_t": None, "asking": False}


def _from_v6(old: dict[str, Any]) -> dict[str, Any]:
    """Version 6 -> 7: what an answer to a check-in left unlearned is new (nothing yet); the day's first use as
    learned is its first use."""
    day = old.get("day")
    day = None if day is None else {**day, "first_learned": day.get("first_use")}
    return {**old, "day": day, "learn_from": None, "paired_learn_from": None}


def _weekend(iso_date: str) -> bool:
    return date.fromisoformat(iso_date).weekday() >= 5


MIGRATIONS = {1: _from_v1, 2: _from_v2, 3: _from_v3, 4: _from_v4, 5: _from_v5, 6: _from_v6}
