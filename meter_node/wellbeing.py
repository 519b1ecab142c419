"""Wellbeing rules for an elderly person living alone, from one water meter's total: pure, fed (time, litres).

``WellbeingMonitor.update(now, total_litres)`` turns meter totals into incidents (inactivity, missed_morning,
continuous_flow, low/high_daily_volume, leak_suspected). Fixed thresholds from the services in REFERENCE.md
are the defaults and the outer limits; once enough days are seen, the thresholds follow the household's own
rhythm by local time of day. The whole state (learned profile, open incidents) round-trips through ``state()``.
See docs/wellbeing.md for the rules, the sources and the evaluation.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from common.config import setting
from common.events import Detection

STATE_VERSION = 1
KINDS: tuple[str, ...] = (
    "inactivity",
    "missed_morning",
    "continuous_flow",
    "low_daily_volume",
    "high_daily_volume",
    "leak_suspected",
)
# the kinds that are about the person; away mode suppresses these, the others are about the flat's water
PERSON_KINDS: frozenset[str] = frozenset({"inactivity", "missed_morning", "low_daily_volume"})
_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_SLOT_S = 1800  # the silence profile is learned per half hour of local time
_SHORT_BIN_S = 600  # 10-minute bins: the short-term flow floor (a tap left running stops being "use")
_HOUR_S = 3600
_LONE_KEEP = 12  # lone pulses kept for the steadiness test (a 14 h night at a leak's 2-7 L/h sends 3-10)
_BEAT_KEEP = 400  # intervals kept at most (a leak pulsing every 5 min for 96 h would send 1,152)
_BEAT_MIN_S = 300.0  # coarse meter: pulses closer than this are a tap running (the flow rules' business), no beat
_RANK = {"info": 0, "warning": 1, "urgent": 2}


@dataclass(frozen=True, kw_only=True)
class WellbeingSettings:
    """The ``[meter.wellbeing]`` table. Hours and litres; the sources of the defaults are in docs/wellbeing.md."""

    # inactivity: the fixed defaults are the services' rules and stay the outer limits once learning starts
    inactivity_warning_h: float = setting(8.0, min=1.0, max=48.0, help="no use this long: warning (Nagano 8 h)")
    inactivity_urgent_h: float = setting(12.0, min=1.0, max=72.0, help="no use this long: urgent (Shanghai 12 h)")
    night_inactivity_warning_h: float = setting(
        12.0, min=1.0, max=48.0, help="the same for a silence that began at night (Gujo 12 h)"
    )
    night_inactivity_urgent_h: float = setting(
        16.0, min=1.0, max=72.0, help="urgent for a silence reaching into the night (a late waking is harmless)"
    )
    night_start: str = setting(
        "00:00", pattern=_HHMM, help="night window start: a silence reaching into it gets the night limits"
    )
    night_end: str = setting("05:00", pattern=_HHMM, help="night window end (local time)")
    inactivity_min_h: float = setting(2.0, min=0.5, max=24.0, help="adaptive warning is never sooner than this")
    inactivity_margin_h: float = setting(1.5, min=0.0, max=12.0, help="adaptive warning: usual longest + this")
    urgent_margin_h: float = setting(4.0, min=0.0, max=24.0, help="adaptive urgent: usual longest + this")
    night_urgent_margin_h: float = setting(
        6.0, min=0.0, max=24.0, help="adaptive urgent for a silence holding the night (a late waking is harmless)"
    )
    profile_quantile: float = setting(1.0, min=0.5, max=1.0, help="how high in the usual silences the profile sits")
    urgent_after_warning_min: float = setting(60.0, min=0.0, max=720.0, help="warning first, urgent after this")
    # morning
    morning_start: str = setting("04:00", pattern=_HHMM, help="local time from which a use counts as the first")
    morning_deadline: str = setting("09:00", pattern=_HHMM, help="fixed deadline for the first use (Gujo 05-08)")
    morning_latest: str = setting("11:00", pattern=_HHMM, help="a learned deadline is never later than this")
    morning_margin_min: float = setting(45.0, min=0.0, max=240.0, help="learned deadline: late first use + this")
    morning_warning_after_min: float = setting(30.0, min=0.0, max=480.0, help="info -> warning after this")
    # flow
    continuous_flow_h: float = setting(2.0, min=0.25, max=24.0, help="flow this long nonstop: urgent (Nagano 2 h)")
    continuous_flow_min_min: float = setting(20.0, min=5.0, max=600.0, help="adaptive warning never sooner")
    tap_flow_lpm: float = setting(1.0, min=0.0, max=50.0, help="slower nonstop flow is a leak, not a tap left on")
    leak_min_lph: float = setting(1.0, min=0.1, max=1000.0, help="base flow above this all day: leak suspected")
    leak_warning_lph: float = setting(20.0, min=0.1, max=1000.0, help="leak this large: warning, else info")
    leak_window_h: int = setting(24, min=6, max=72, help="no quiet span in this many hours (Longgang 24 h)")
    leak_clear_nights: int = setting(2, min=1, max=7, help="quiet nights before a leak alert clears")
    base_window_h: int = setting(24, min=2, max=48, help="base (leak) flow: quietest 2 h in this many hours")
    min_use_litres: float = setting(2.0, min=0.1, max=50.0, help="litres above base flow that make a use")
    use_window_min: float = setting(10.0, min=1.0, max=60.0, help="a use is min_use_litres within this window")
    coarse_pair_min: float = setting(
        90.0, min=0.0, max=360.0, help="coarse (10 L) meter: a lone pulse is life only with another within this"
    )
    coarse_silence_h: float = setting(
        11.0, min=1.0, max=48.0, help="coarse meter: no paired pulses this long: warning (a slow leak's lone pulses)"
    )
    coarse_night_silence_h: float = setting(
        14.0, min=1.0, max=48.0, help="the same for a silence reaching into the night (night visits are lone pulses)"
    )
    coarse_margin_h: float = setting(
        2.0, min=0.0, max=24.0, help="coarse meter: the learned paired-clock warning comes this much later"
    )
    coarse_lone_max: int = setting(
        2, min=0, max=50, help="coarse meter: that warning needs at most this many irregular lone pulses"
    )
    coarse_steady_min: int = setting(
        3, min=3, max=12, help="coarse meter: lone pulses at a steady beat (a leak's) from this many on"
    )
    coarse_steady_cv: float = setting(
        0.05, min=0.0, max=1.0, help="coarse meter: steady = intervals' coefficient of variation at most this"
    )
    beat_count: int = setting(
        4, min=2, max=50, help="coarse meter: this many pulse intervals alike make a leak's beat (its pulses no use)"
    )
    beat_tolerance: float = setting(0.02, min=0.0, max=0.5, help="coarse meter: alike = within this share")
    beat_memory_h: float = setting(96.0, min=6.0, max=720.0, help="coarse meter: intervals kept for the beat")
    # daily volume
    low_daily_litres: float = setting(10.0, min=0.0, max=1000.0, help="a day below this: warning (Jing'an 10 L)")
    decline_fraction: float = setting(0.5, min=0.05, max=0.95, help="3-day mean below this x usual: warning")
    decline_days: int = setting(3, min=1, max=14)
    high_daily_litres: float = setting(2000.0, min=50.0, max=100000.0, help="a day above this: warning (2 m3)")
    high_daily_factor: float = setting(4.0, min=1.5, max=50.0, help="above this x usual day: info")
    # learning and the rest
    adaptive: bool = setting(True, help="learn the household's rhythm; false: fixed rules only")
    learning_days: int = setting(14, min=3, max=120, help="days of history before thresholds adapt")
    history_days: int = setting(28, min=7, max=120, help="days of history the profile keeps")
    max_reading_interval_min: float = setting(10.0, min=1.0, max=240.0, help="longer without a reading: a gap")
    escalate_after_min: float = setting(15.0, min=1.0, max=240.0, help="urgent: social worker if no ack by then")
    away_ends_on_use: bool = setting(True, help="water use ends away mode early (back from hospital)")

    def problems(self) -> list[str]:
        out = []
        if self.inactivity_urgent_h < self.inactivity_warning_h:
            out.append("inactivity_urgent_h must be >= inactivity_warning_h")
        if self.night_inactivity_urgent_h < self.night_inactivity_warning_h:
            out.append("night_inactivity_urgent_h must be >= night_inactivity_warning_h")
        if not _minutes(self.morning_start) < _minutes(self.morning_deadline) <= _minutes(self.morning_latest):
            out.append("need morning_start < morning_deadline <= morning_latest")
        if self.history_days < self.learning_days:
            out.append("history_days must be >= learning_days")
        return out


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _to_epoch(when: datetime | float) -> float:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("a naive datetime has no time zone; give an aware one or Unix seconds")
        return when.timestamp()
    return float(when)


def _upper(values: list[float], share: float) -> float:
    """A high quantile that ignores the very top few (one odd day must not widen the threshold much)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


class WellbeingMonitor:
    """The wellbeing rules for one household's meter. Pure: never reads a clock, never sleeps.

    Feed every poll: ``update(now, total_litres)`` with ``None`` for a failed read. Time is wall time (an aware
    datetime or Unix seconds) because the rules are about local time of day.
    """

    def __init__(
        self,
        settings: WellbeingSettings,
        tz: str | tzinfo,
        state: Mapping[str, Any] | None = None,
        *,
        key: str = "",
    ) -> None:
        self.settings = settings
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.key = key
        s = settings
        self._max_interval = s.max_reading_interval_min * 60.0
        self._use_window = s.use_window_min * 60.0
        self._night = (_minutes(s.night_start) * 60, _minutes(s.night_end) * 60)
        self._profile_cache: dict[str, list[float]] = {}  # "slots" / "paired_slots" -> usual silence per slot
        # -- everything below is state (see state())
        self._last_t: float | None = None
        self._last_total: float | None = None
        self._next_check = -math.inf
        self._anchor = 0.0  # last sign of life: a use event, an "I'm OK", the start of watching
        self._paired_anchor = 0.0  # the same, counting on a coarse meter only pulses that came in pairs
        self._lone_count = 0  # lone pulses since the paired anchor
        self._lone_times: list[float] = []  # the latest of them (their steadiness tells a leak from a person)
        self._gaps: list[list[float]] = []  # [start, end] of time not observed (no reading for too long)
        self._rises: deque[list[float]] = deque()  # [t, excess over floor, excess over base] within the window
        self._win_use = 0.0
        self._win_flow = 0.0
        self._last_rise_t: float | None = None
        self._intervals: list[list[float]] = []  # coarse meter: [t, seconds since the pulse before] (a leak's beat)
        self._beat_cache: float | None | bool = False  # False: not worked out since the last interval
        self._partner_t: float | None = None  # the pulse the latest pulse paired with (not state: used at once)
        self._lone_t: float | None = None  # coarse meter: the last pulse not yet confirmed (or confirming) as use
        self._resolution = math.inf  # smallest step seen: the meter's pulse size
        self._short_bin: list[float] = [0.0, 0.0]  # [bin index, litres]
        self._short_bins: deque[float] = deque(maxlen=6)
        self._hour_bin: list[float] = [0.0, 0.0]
        self._hour_bins: deque[float | None] = deque(maxlen=max(s.leak_window_h, s.base_window_h))
        self._base_lph = 0.0
        self._leak_lph = 0.0
        self._run: dict[str, float] | None = None  # the flow run now going: start, last, litres, ack
        self._day: dict[str, Any] | None = None
        self._history: list[dict[str, Any]] = []
        self._slots: dict[int, list[float]] = {}  # half hour of local time -> the ongoing silence then, per day
        self._paired_slots: dict[int, list[float]] = {}  # the same for the paired clock (coarse meters)
        self._next_slot_t: float | None = None
        self._clean_nights: list[str] = []
        self._away_until: float | None = None
        self._incidents: dict[str, dict[str, Any]] = {}
        if state is not None:
            self._restore(state)

    # ----------------------------------------------------------------------------------------------- public
    def update(self, now: datetime | float, total_litres: float | None) -> list[Detection]:
        """One poll. ``total_litres`` None is a failed read: it is neither use nor silence."""
        t = _to_epoch(now)
        if total_litres is None:
            if t < self._next_check or self._last_t is None:
                return []
            return self._evaluate(t, [])
        total = float(total_litres)
        if not math.isfinite(total):
            return self.update(t, None)  # a garbled read is a failed read
        last_t = self._last_t
        if last_t is None:
            self._start(t, total)
            return []
        dt = t - last_t
        if dt <= 0:  # a repeated or out-of-order row says nothing new
            return []
        if total == self._last_total and t < self._next_check and dt <= self._max_interval:
            self._last_t = t  # the fast path: nothing flowed and no deadline is due
            return []
        return self._step(t, total, dt)

    def acknowledge(self, now: datetime | float) -> list[Detection]:
        """The resident (or family) said "I'm OK": a sign of life. Clears inactivity and missed_morning, and
        takes a continuous-flow alert down to info (the tap may be running on purpose) restarting its clock."""
        t = _to_epoch(now)
        out: list[Detection] = []
        self._anchor = max(self._anchor, t)
        self._paired_anchor = max(self._paired_anchor, t)
        self._lone_count = 0
        self._lone_times = []
        if self._day is not None and self._day["first_use"] is None and t >= self._day["morning_t"]:
            self._day["first_use"] = t
        for kind in ("inactivity", "missed_morning"):
            self._clear(kind, t, out, reason="acknowledged")
        if self._run is not None:
            self._run["ack"] = t
            if "continuous_flow" in self._incidents:
                self._set(out, "continuous_flow", "info", t, {"acknowledged": True}, lower=True)
        self._next_check = -math.inf
        return out

    def set_away(self, until: datetime | float | None, now: datetime | float | None = None) -> list[Detection]:
        """Away / in hospital until ``until`` (None: back home now). Person alerts are suppressed and the open
        ones cleared; flow and leak alerts go on (water running in an empty flat matters)."""
        t = _to_epoch(now) if now is not None else (self._last_t or 0.0)
        out: list[Detection] = []
        if until is None:
            if self._away_until is not None:
                self._end_away(t)
            return out
        self._away_until = _to_epoch(until)
        for kind in PERSON_KINDS:
            self._clear(kind, t, out, reason="away")
        self._next_check = -math.inf
        return out

    @property
    def away_until(self) -> float | None:
        return self._away_until

    def open_incidents(self) -> dict[str, str]:
        """kind -> severity of the incidents now open."""
        return {kind: inc["severity"] for kind, inc in self._incidents.items()}

    def profile(self) -> dict[str, Any]:
        """What has been learned, for the health report and for docs/debugging."""
        beat = self._beat()
        return {
            "learned_days": len(self._valid_days()),
            "adaptive": self._adaptive(),
            "base_flow_lph": round(self._base_lph, 3),
            "usual_daily_litres": self._usual_daily(),
            "usual_longest_flow_min": round(self._usual_run() / 60.0, 1) if self._usual_run() else None,
            "morning_deadline": self._morning_deadline_s(),
            "resolution_l": None if math.isinf(self._resolution) else self._resolution,
            "leak_beat_min": None if beat is None else round(beat / 60.0, 1),
        }

    def state(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as plain JSON-ready data."""
        return {
            "version": STATE_VERSION,
            "last_t": self._last_t,
            "last_total": self._last_total,
            "anchor": self._anchor,
            "paired_anchor": self._paired_anchor,
            "lone_count": self._lone_count,
            "lone_times": list(self._lone_times),
            "gaps": [list(g) for g in self._gaps],
            "rises": [list(r) for r in self._rises],
            "last_rise_t": self._last_rise_t,
            "intervals": [list(x) for x in self._intervals],
            "lone_t": self._lone_t,
            "resolution": None if math.isinf(self._resolution) else self._resolution,
            "short_bin": list(self._short_bin),
            "short_bins": list(self._short_bins),
            "hour_bin": list(self._hour_bin),
            "hour_bins": list(self._hour_bins),
            "base_lph": self._base_lph,
            "leak_lph": self._leak_lph,
            "run": dict(self._run) if self._run else None,
            "day": dict(self._day) if self._day else None,
            "history": [dict(d) for d in self._history],
            "slots": {str(k): list(v) for k, v in self._slots.items()},
            "paired_slots": {str(k): list(v) for k, v in self._paired_slots.items()},
            "next_slot_t": self._next_slot_t,
            "clean_nights": list(self._clean_nights),
            "away_until": self._away_until,
            "incidents": {k: dict(v) for k, v in self._incidents.items()},
        }

    # ------------------------------------------------------------------------------------------- the step
    def _start(self, t: float, total: float) -> None:
        self._last_t, self._last_total = t, total
        self._anchor = self._paired_anchor = t  # watching starts here: silence before it is unknown
        self._short_bin = [t // _SHORT_BIN_S, 0.0]
        self._hour_bin = [t // _HOUR_S, 0.0]
        self._next_slot_t = (t // _SLOT_S + 1) * _SLOT_S
        self._day = self._new_day(t)
        if t > self._day["start_t"]:
            self._gaps.append([self._day["start_t"], t])  # the day before watching began is not observed
        self._next_check = -math.inf

    def _step(self, t: float, total: float, dt: float) -> list[Detection]:
        out: list[Detection] = []
        last_t = self._last_t
        assert last_t is not None and self._last_total is not None
        gap = dt > self._max_interval
        if gap:
            self._gaps.append([last_t + self._max_interval, t])
        delta = total - self._last_total
        self._last_t, self._last_total = t, total  # before rolling on: the gap, if any, is now on record
        self._roll(t, out)
        if delta < 0:
            # meter replaced or reset (the reader reports meter_reset): the interval's volume is unknown
            if not gap:
                self._gaps.append([last_t, t])
            return self._evaluate(t, out)
        if delta > 0:
            self._resolution = min(self._resolution, delta)
            self._add_volume(t, delta, gap, out)
        return self._evaluate(t, out)

    def _add_volume(self, t: float, delta: float, gap: bool, out: list[Detection]) -> None:
        day = self._day
        assert day is not None
        day["volume"] += delta
        self._partner_t = None
        self._check_high(t, day["volume"], out)
        use_min = self._use_min()
        base_rate = self._base_lph / _HOUR_S
        span = self._span_h() * _HOUR_S
        since = min(t - self._last_rise_t, span) if self._last_rise_t is not None else span
        on_beat = self._on_beat(t, delta, gap)
        self._last_rise_t = t
        if gap:
            # water used some time during the gap proves life then, but not when: the silence clock restarts
            # at the gap's end (gap time never counts as silence) and the flow windows start afresh
            if delta - base_rate * (t - self._gaps[-1][0]) >= use_min:
                # on a coarse meter one pulse across a gap is a lone pulse (a slow leak's, maybe), two make a pair
                self._mark_use(t, out, paired=not self._coarse() or delta >= 2 * self._resolution)
            self._rises.clear()
            self._win_use = self._win_flow = 0.0
            return
        self._short_bin[1] += delta
        self._hour_bin[1] += delta
        floor_rate = max(base_rate, min(self._short_bins) / _SHORT_BIN_S if len(self._short_bins) == 6 else 0.0)
        excess_use = 0.0 if on_beat else max(0.0, delta - floor_rate * since)
        excess_flow = max(0.0, delta - base_rate * since)
        self._rises.append([t, excess_use, excess_flow])
        self._win_use += excess_use
        self._win_flow += excess_flow
        self._trim_window(t)
        # on top of a steady flow (a tap left on, a new leak) a use must stand out from its wobble too
        used = False
        if self._win_use >= use_min + 0.1 * floor_rate * self._window():
            used = self._mark_use(t, out, on_top=floor_rate > 0, paired=self._paired(t))
        if self._win_flow >= use_min:
            if self._run is None:
                self._run = {"start": self._rises[0][0], "last": t, "litres": 0.0, "ack": 0.0, "used": False}
            self._run["last"] = t
            self._run["used"] = self._run.get("used", True) or used
            self._run["litres"] += excess_flow
            if self._away_until is not None and self.settings.away_ends_on_use and self._run["litres"] >= 5 * use_min:
                self._end_away(t)

    def _on_beat(self, t: float, delta: float, gap: bool) -> bool:
        """Coarse meter: note this pulse's interval since the one before, and say whether it keeps a leak's learned
        beat (then it is no use). A slow or running leak below what a 10 L meter shows as base flow pulses at a
        constant interval whenever nobody uses water; a person's pulses come at any interval."""
        if not self._coarse() or gap or self._last_rise_t is None or delta > 1.5 * self._resolution:
            return False
        interval = t - self._last_rise_t
        beat = self._beat()
        on = beat is not None and abs(interval - beat) <= self._beat_tolerance(beat)
        if interval >= _BEAT_MIN_S:
            keep = t - self.settings.beat_memory_h * _HOUR_S
            self._intervals = [x for x in self._intervals[-_BEAT_KEEP:] if x[0] > keep] + [[t, interval]]
            self._beat_cache = False
        return on

    def _beat_tolerance(self, beat: float) -> float:
        return max(self.settings.beat_tolerance * beat, 120.0)

    def _beat(self) -> float | None:
        """The beat (seconds between pulses) that most recent intervals keep within the tolerance, if at least
        ``beat_count`` do and the latest of them is from the last day and a half: a leak's (by chance a person's
        habit; one beat only, so chance has little room)."""
        if self._beat_cache is not False:
            return self._beat_cache  # type: ignore[return-value]
        values = sorted(x[1] for x in self._intervals)
        centre, most = 0.0, 0
        for _, interval in self._intervals:  # the first interval (in time) with the most others near it
            tol = self._beat_tolerance(interval)
            count = bisect.bisect_right(values, interval + tol) - bisect.bisect_left(values, interval - tol)
            if count > most:
                centre, most = interval, count
        tol = self._beat_tolerance(centre)
        best = [x for x in self._intervals if abs(x[1] - centre) <= tol]
        recent = self._intervals[-1][0] - 36 * _HOUR_S if self._intervals else 0.0
        # a leak keeps its beat through every silence: two of its intervals follow one another (three pulses in a
        # row); a person's intervals that agree by chance are scattered
        ends = {round(x[0]) for x in best}
        chained = any(round(x[0] - x[1]) in ends for x in best)
        beat = None
        if len(best) >= self.settings.beat_count and chained and max(x[0] for x in best) >= recent:
            beat = sorted(x[1] for x in best)[len(best) // 2]
        self._beat_cache = beat
        return beat

    def _check_high(self, t: float, litres: float, out: list[Detection]) -> None:
        s = self.settings
        usual = self._usual_daily() if self._adaptive() else None
        learned = min(s.high_daily_litres, s.high_daily_factor * usual) if usual else s.high_daily_litres
        if litres >= s.high_daily_litres:
            severity = "warning"
        elif litres >= learned:
            severity = "info"
        else:
            return
        payload = {"day_litres": round(litres, 1), "usual_litres": usual, "limit_litres": round(learned, 1)}
        self._set(out, "high_daily_volume", severity, t, payload)

    def _use_min(self) -> float:
        """Litres above base flow that make a use: min_use_litres, or one pulse of a coarse (10 L) meter.

        Two pulses would reject a slow leak's lone pulses, but a person's small uses then vanish too (tested:
        12-20 h "silences" every day on 10 L meters), so a coarse meter takes a pulse as a use; see docs."""
        if math.isinf(self._resolution):
            return self.settings.min_use_litres
        return max(self.settings.min_use_litres, 0.5 * self._resolution)

    def _coarse(self) -> bool:
        """Pulses so large (10 L) that one pulse is a use: then a lone pulse needs a companion (see _paired)."""
        return not math.isinf(self._resolution) and self._resolution >= 2 * self.settings.min_use_litres

    def _paired(self, t: float) -> bool:
        """On a coarse meter a use needs two pulses within ``coarse_pair_min``: a slow leak (below the base-flow
        floor of a 10 L meter) sends lone pulses hours apart that would otherwise hide a silent home, while a
        person's activity sends pulses in clusters (a flush, a wash, the kettle)."""
        window = self.settings.coarse_pair_min * 60.0
        if not self._coarse() or window <= 0 or self._win_use >= 1.5 * self._resolution:
            self._lone_t = t
            return True
        paired = self._lone_t is not None and t - self._lone_t <= window
        self._partner_t = self._lone_t if paired else None
        self._lone_t = t
        return paired

    def _window(self) -> float:
        return self._use_window

    def _trim_window(self, t: float) -> None:
        rises = self._rises
        window = self._window()
        while rises and rises[0][0] <= t - window:
            _, use, flow = rises.popleft()
            self._win_use -= use
            self._win_flow -= flow
        if not rises:
            self._win_use = self._win_flow = 0.0

    def _mark_use(self, t: float, out: list[Detection], on_top: bool = False, paired: bool = True) -> bool:
        """A use at ``t``: a sign of life (False when it is not taken as one: a flow running far too long)."""
        day = self._day
        assert day is not None
        run = self._run
        if run is not None and t - run["start"] > self._usual_run_cap() and not on_top:
            return False  # flow going on far longer than usual is a tap left on, not a sign of life
        self._anchor = max(self._anchor, t)
        steady = False
        if not paired:
            self._lone_count += 1
            self._lone_times.append(t)
            del self._lone_times[:-_LONE_KEEP]
            steady = self._steady_tail() > 0
        if day["first_use"] is None and not steady:
            # a lone pulse that keeps a leak's steady beat is no first use; a pair counts from its first pulse
            first = self._partner_t if paired and self._partner_t is not None else t
            if first >= day["morning_t"]:
                day["first_use"] = first
            elif t >= day["morning_t"]:
                day["first_use"] = t
        if day["first_use"] is not None:
            self._clear("missed_morning", t, out)
        if not paired:
            # a lone pulse on a coarse meter restarts the ordinary silence clock, but it may be a slow leak's: an
            # open inactivity alert stays open while the paired clock still finds the home silent (see _paired)
            if self._paired_silence_due(t) > t:
                self._clear("inactivity", t, out)
            return True
        self._paired_anchor = max(self._paired_anchor, t)
        self._lone_count = 0
        self._lone_times = []
        self._clear("inactivity", t, out)
        return True

    def _steady_tail(self) -> int:
        """How many of the latest lone pulses keep a steady beat (0: none do): a slow leak's pulses come at a
        near-constant interval, a person's are irregular. At least ``coarse_steady_min`` pulses, and the intervals'
        coefficient of variation at most ``coarse_steady_cv``; the longest such run ending with the last pulse."""
        s = self.settings
        times = self._lone_times
        best = 0
        for k in range(s.coarse_steady_min, len(times) + 1):
            tail = times[-k:]
            gaps = [b - a for a, b in zip(tail, tail[1:], strict=False)]
            mean = sum(gaps) / len(gaps)
            spread = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps))
            if mean > 0 and spread <= s.coarse_steady_cv * mean:
                best = k
        return best

    # ------------------------------------------------------------------------------------ clocks rolling on
    def _roll(self, t: float, out: list[Detection]) -> None:
        """Close every bin, slot and day whose end is at or before ``t`` (lazily: nothing runs per poll)."""
        short_idx = t // _SHORT_BIN_S
        if short_idx > self._short_bin[0]:
            skipped = int(short_idx - self._short_bin[0])
            self._short_bins.append(self._short_bin[1])
            for _ in range(min(skipped - 1, 6)):
                self._short_bins.append(0.0)
            self._short_bin = [short_idx, 0.0]
        hour_idx = t // _HOUR_S
        if hour_idx - self._hour_bin[0] > (self._hour_bins.maxlen or 0) + 1:  # a long gap: skip ahead
            self._hour_bins.extend([None] * (self._hour_bins.maxlen or 0))
            self._hour_bin = [hour_idx - 1, 0.0]
        while self._hour_bin[0] < hour_idx:
            start = self._hour_bin[0] * _HOUR_S
            valid = self._gap_seconds(start, start + _HOUR_S) == 0.0
            self._hour_bins.append(self._hour_bin[1] if valid else None)
            self._night_check(start, self._hour_bin[1] if valid else None)
            self._hour_bin = [self._hour_bin[0] + 1, 0.0]
            self._update_base(start + _HOUR_S, out)
        while self._next_slot_t is not None and self._next_slot_t <= t:
            self._sample_slot(self._next_slot_t)
            self._next_slot_t += _SLOT_S
        while self._day is not None and self._day["end_t"] <= t:
            self._close_day(out)
        if self._rises:
            self._trim_window(t)
        if self._run is not None and self._win_flow < self._use_min():
            self._end_run(t, out)
        if self._away_until is not None and t >= self._away_until:
            self._end_away(self._away_until)

    def _end_run(self, t: float, out: list[Detection]) -> None:
        run = self._run
        assert run is not None and self._day is not None
        self._run = None
        if "continuous_flow" not in self._incidents or run["ack"]:
            self._day["longest_run"] = max(self._day["longest_run"], run["last"] - run["start"])
        if "continuous_flow" in self._incidents:
            self._clear("continuous_flow", t, out, litres=round(run["litres"], 1))
        if run["last"] - run["start"] > self._usual_run_cap() or not run.get("used", True):
            return
        # the end of an ordinary flow that was use is the last sign of life it gives (a flow that never stood out
        # from the floor, such as a leak whose pulses come and go in and out of the window, gives none)
        self._anchor = max(self._anchor, run["last"])

    def _sample_slot(self, b: float) -> None:
        if self._away_until is not None or self._last_t is None:
            return
        if b > self._last_t + self._max_interval:
            return  # inside a gap still going on
        if any(g[0] < b <= g[1] for g in self._gaps[-8:]):
            return
        if self._day is None:
            return
        s = self.settings
        clocks = [("slots", self._anchor, s.inactivity_warning_h, s.night_inactivity_warning_h)]
        if self._coarse():
            clocks.append(("paired_slots", self._paired_anchor, s.coarse_silence_h, s.coarse_night_silence_h))
        for name, anchor, day_limit, night_limit in clocks:
            silence = self._observed(anchor, b)
            if silence > (night_limit if self._overlaps_night(anchor, b) else day_limit) * _HOUR_S:
                continue  # past the fixed limit: an absence nobody entered, or an incident; never learned as a habit
            # kept with the day and learned when the day closes: a silence must not widen the profile judging it
            self._day.setdefault(name, {})[str(self._slot_of(b - 1))] = round(silence, 1)

    def _night_check(self, start: float, litres: float | None) -> None:
        """Leak clearing needs quiet nights: an hour between 00:00 and 06:00 local without flow."""
        if litres is None:
            return
        local = datetime.fromtimestamp(start, self.tz)
        if local.hour < 6 and litres < 0.5 * self.settings.leak_min_lph:  # no pulse at all in that hour
            stamp = local.date().isoformat()
            if stamp not in self._clean_nights:
                self._clean_nights.append(stamp)
                del self._clean_nights[:-7]

    def _update_base(self, t: float, out: list[Detection]) -> None:
        s = self.settings
        bins = list(self._hour_bins)
        self._base_lph = self._quietest(bins[-s.base_window_h :], self._base_lph)
        if (
            len(bins) >= s.leak_window_h
            and sum(b is not None for b in bins[-s.leak_window_h :]) >= s.leak_window_h // 2
        ):
            self._leak_lph = self._quietest(bins[-s.leak_window_h :], 0.0)
        else:
            self._leak_lph = 0.0
        leak = self._incidents.get("leak_suspected")
        if self._leak_lph >= s.leak_min_lph:
            severity = "warning" if self._leak_lph >= s.leak_warning_lph else "info"
            self._set(out, "leak_suspected", severity, t, {"base_flow_lph": round(self._leak_lph, 2)})
        elif leak is not None:
            quiet = [n for n in self._clean_nights if n >= leak["raised_day"]]
            if len(quiet) >= s.leak_clear_nights:
                self._clear("leak_suspected", t, out, quiet_nights=len(quiet))

    def _span_h(self) -> int:
        """Hours in a base-flow span: 2, longer for coarse pulses so a slow leak shows in every span."""
        if math.isinf(self._resolution):
            return 2
        return int(min(6, max(2, round(self._resolution / 2))))

    def _quietest(self, bins: list[float | None], fallback: float) -> float:
        """Litres per hour in the quietest span (2 h; 5 h for 10 L pulses): a robust base flow that ignores use."""
        n = self._span_h()
        # one pulse in a span may be the tail of a use before it: only what is beyond one pulse is base flow
        pulse = 0.0 if math.isinf(self._resolution) else self._resolution
        spans = [
            max(0.0, sum(b for b in bins[i : i + n] if b is not None) - pulse) / n
            for i in range(len(bins) - n + 1)
            if all(b is not None for b in bins[i : i + n])
        ]
        if not spans:
            return fallback
        # below two pulses per span a steady flow cannot be told from use; call it none
        return min(spans) if min(spans) >= 2 * pulse / n else 0.0

    # ------------------------------------------------------------------------------------------- the days
    def _new_day(self, t: float) -> dict[str, Any]:
        local = datetime.fromtimestamp(t, self.tz)
        start = datetime(local.year, local.month, local.day, tzinfo=self.tz)
        end = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), self.tz)
        return {
            "date": start.date().isoformat(),
            "start_t": start.timestamp(),
            "end_t": end.timestamp(),
            "morning_t": start.timestamp() + _minutes(self.settings.morning_start) * 60,
            "volume": 0.0,
            "first_use": None,
            "longest_run": 0.0,
            "away": self._away_until is not None,
        }

    def _close_day(self, out: list[Detection]) -> None:
        s = self.settings
        day = self._day
        assert day is not None
        end = day["end_t"]
        covered = 1.0 - self._gap_seconds(day["start_t"], end) / (end - day["start_t"])
        first = day["first_use"]
        record = {
            "date": day["date"],
            "volume": round(day["volume"], 2),
            "coverage": round(covered, 3),
            "first_use_s": None if first is None else round(first - day["start_t"]),
            "longest_run_s": round(day["longest_run"]),
            "away": bool(day["away"] or self._away_until is not None),
        }
        self._history.append(record)
        if not record["away"]:
            for name, learned in (("slots", self._slots), ("paired_slots", self._paired_slots)):
                for slot, silence in day.get(name, {}).items():
                    samples = learned.setdefault(int(slot), [])
                    samples.append(silence)
                    del samples[: -s.history_days]
            self._profile_cache = {}
        del self._history[: -max(2 * s.history_days, s.history_days + s.decline_days)]
        self._day = self._new_day(end)
        self._clear("high_daily_volume", end, out, day_litres=record["volume"])
        self._clear("missed_morning", end, out, reason="day_end")
        # daily volume rules, judged on whole observed days only
        if record["away"] or covered < 0.9:
            return
        recent = [d for d in self._history[-s.decline_days :] if not d["away"] and d["coverage"] >= 0.9]
        usual = self._usual_daily(exclude_last=s.decline_days)
        reason = None
        if record["volume"] < s.low_daily_litres:
            reason = "below_fixed"
        elif usual and len(recent) == s.decline_days and self._adaptive():
            mean = sum(d["volume"] for d in recent) / len(recent)
            if mean < s.decline_fraction * usual:
                reason = "decline"
        if reason is not None:
            payload = {"day_litres": record["volume"], "usual_litres": usual, "reason": reason, "date": day["date"]}
            self._set(out, "low_daily_volume", "warning", end, payload)
        else:
            self._clear("low_daily_volume", end, out, day_litres=record["volume"])

    def _valid_days(self) -> list[dict[str, Any]]:
        return [d for d in self._history[-self.settings.history_days :] if not d["away"] and d["coverage"] >= 0.9]

    def _adaptive(self) -> bool:
        return self.settings.adaptive and len(self._valid_days()) >= self.settings.learning_days

    def _usual_daily(self, exclude_last: int = 0) -> float | None:
        s = self.settings
        days = [d for d in self._history[: len(self._history) - exclude_last] if not d["away"] and d["coverage"] >= 0.9]
        days = days[-2 * s.history_days :]
        if len(days) < s.learning_days:
            return None
        volumes = sorted(d["volume"] for d in days)
        return round(volumes[len(volumes) // 2], 1)

    def _usual_run(self) -> float | None:
        if not self._adaptive():
            return None
        return _upper([d["longest_run_s"] for d in self._valid_days()], 0.9)

    def _usual_run_cap(self) -> float:
        """Flow longer than this is not taken as a sign of life (a tap left running after a fall)."""
        usual = self._usual_run()
        limit = self.settings.continuous_flow_h * _HOUR_S
        return limit / 2 if usual is None else min(limit / 2, max(usual * 1.5, 15 * 60.0))

    def _morning_deadline_s(self) -> float:
        """Seconds after local midnight by which the first use is expected."""
        s = self.settings
        fixed = _minutes(s.morning_deadline) * 60.0
        if not self._adaptive():
            return fixed
        firsts = [d["first_use_s"] for d in self._valid_days() if d["first_use_s"] is not None]
        if len(firsts) < s.learning_days:
            return fixed
        learned = _upper(firsts, 0.93) + s.morning_margin_min * 60.0
        return min(max(learned, _minutes(s.morning_start) * 60.0 + 3600.0), _minutes(s.morning_latest) * 60.0)

    # --------------------------------------------------------------------------------------- time-based
    def _evaluate(self, t: float, out: list[Detection]) -> list[Detection]:
        """Check every time-based rule at ``t`` and work out when the next check is due."""
        s = self.settings
        assert self._last_t is not None and self._day is not None
        if t > self._last_t:
            self._roll(t, out)
        # an ongoing gap: time stops counting at the last reading plus the allowed interval
        seen_t = min(t, self._last_t + self._max_interval)
        next_check = min(self._next_slot_t or math.inf, self._day["end_t"], (t // _HOUR_S + 1) * _HOUR_S)
        if self._away_until is not None:
            next_check = min(next_check, self._away_until)
        else:
            silence = self._silence(seen_t)
            warn, urgent = self._inactivity_thresholds(seen_t)
            open_inc = self._incidents.get("inactivity")
            staged = open_inc is not None and t - open_inc["raised_at"] >= s.urgent_after_warning_min * 60.0
            fixed_urgent = s.night_inactivity_urgent_h if self._overlaps_night(self._anchor, seen_t) else 0.0
            fixed_urgent = max(fixed_urgent, s.inactivity_urgent_h) * _HOUR_S
            if silence >= urgent and (staged or silence >= fixed_urgent):
                self._set(out, "inactivity", "urgent", t, self._silence_payload(silence, warn, urgent))
            elif silence >= warn:
                self._set(out, "inactivity", "warning", t, self._silence_payload(silence, warn, urgent))
                raised = self._incidents.get("inactivity", {}).get("raised_at", t)
                next_check = min(next_check, max(t + (urgent - silence), raised + s.urgent_after_warning_min * 60.0))
            else:
                next_check = min(next_check, t + (warn - silence))
            if self._coarse() and "inactivity" not in self._incidents:
                next_check = min(next_check, self._check_paired_silence(t, seen_t, out))
            day = self._day
            if day["first_use"] is None:
                deadline = day["start_t"] + self._morning_deadline_s()
                late = deadline + s.morning_warning_after_min * 60.0
                observed = seen_t - day["morning_t"] - self._gap_seconds(day["morning_t"], seen_t)
                enough = observed >= 0.5 * (seen_t - day["morning_t"])
                payload = {"deadline": _iso_local(deadline, self.tz), "silence_h": round(silence / 3600.0, 2)}
                if seen_t >= late and enough:
                    self._set(out, "missed_morning", "warning", t, payload)
                elif seen_t >= deadline and enough:
                    self._set(out, "missed_morning", "info", t, payload)
                    next_check = min(next_check, late)
                elif seen_t < deadline:
                    next_check = min(next_check, deadline)
        run = self._run
        if run is not None:
            self._check_flow(t, run, out)
        if self._away_until is None and self._last_t + self._max_interval > t:
            next_check = min(next_check, self._last_t + self._max_interval + 1.0)
        self._next_check = next_check
        self._prune_gaps(t)
        return out

    def _check_paired_silence(self, t: float, seen_t: float, out: list[Detection]) -> float:
        """Coarse meter: silence counted from the last pulses that came in a pair. Warns past the paired clock's
        limit (``_paired_limit``) if at most ``coarse_lone_max`` irregular lone pulses came within that limit's
        span. A slow leak's lone pulses (below what a 10 L meter can show as base flow) keep restarting the ordinary
        clock; this clock still sees the silent home. Warning only: lone pulses may be a person's quiet day or
        night visit to the toilet, so this clock never calls the social worker on its own."""
        due = self._paired_silence_due(seen_t)
        if due > seen_t:
            return t + (due - seen_t)
        payload = {
            "silence_h": round(self._observed(self._paired_anchor, seen_t) / 3600.0, 2),
            "last_use": _iso_local(self._paired_anchor, self.tz),
            "last_pulse": _iso_local(self._anchor, self.tz),
            "warning_after_h": round(self._paired_limit(seen_t) / 3600.0, 2),
            "lone_pulses": self._lone_count,
            "steady_pulses": self._steady_tail(),
            "reason": "lone_pulses",
        }
        self._set(out, "inactivity", "warning", t, payload)
        return math.inf

    def _paired_limit(self, t: float) -> float:
        """Seconds of paired silence that warn at ``t``: longer than the household's usual paired silence at this
        time of day by the ordinary clock's margin plus ``coarse_margin_h``, within ``coarse_silence_h``
        (``coarse_night_silence_h`` for a silence holding the night; night visits to the toilet send lone pulses)."""
        s = self.settings
        night = self._overlaps_night(self._paired_anchor, t)
        cap = (s.coarse_night_silence_h if night else s.coarse_silence_h) * _HOUR_S
        profile = self._usual_profile("paired_slots")
        if profile is None:
            return cap
        return min(cap, self._learned_warning(profile[self._slot_of(t)]) + s.coarse_margin_h * _HOUR_S)

    def _paired_silence_due(self, t: float) -> float:
        """When the paired clock's warning is due (at or before ``t``: due now). More than ``coarse_lone_max``
        irregular lone pulses (not keeping a leak's steady beat, see _steady_tail) within the limit's span make a
        quiet but living day: the warning then waits until they have left the span, and an open alert clears."""
        limit = self._paired_limit(t)
        due = t + max(0.0, limit - self._observed(self._paired_anchor, t))
        steady = self._steady_tail()
        irregular = self._lone_times[: len(self._lone_times) - steady]
        recent = [x for x in irregular if x > due - limit]
        excess = len(recent) - self.settings.coarse_lone_max
        return due if excess <= 0 else max(due, recent[excess - 1] + limit)

    def _check_flow(self, t: float, run: dict[str, float], out: list[Detection]) -> None:
        s = self.settings
        start = max(run["start"], run["ack"])
        length = run["last"] - start
        rate_lpm = run["litres"] / max(run["last"] - run["start"], 60.0) * 60.0
        if rate_lpm < s.tap_flow_lpm:
            return  # slow nonstop flow: the leak rule's business
        usual = self._usual_run()
        fixed = s.continuous_flow_h * _HOUR_S
        warn = fixed if usual is None else min(fixed, max(usual * 2.0 + 600.0, s.continuous_flow_min_min * 60.0))
        urgent = fixed if usual is None else min(fixed, max(warn + 1800.0, usual * 4.0))
        payload = {
            "flow_minutes": round((run["last"] - run["start"]) / 60.0, 1),
            "litres": round(run["litres"], 1),
            "rate_lpm": round(rate_lpm, 2),
            "warning_after_min": round(warn / 60.0, 1),
            "urgent_after_min": round(urgent / 60.0, 1),
        }
        if run["ack"] and length < warn:
            return
        if length >= urgent:
            self._set(out, "continuous_flow", "urgent", t, payload)
        elif length >= warn:
            self._set(out, "continuous_flow", "warning", t, payload)

    def _usual_profile(self, name: str = "slots") -> list[float] | None:
        """Per half hour of local time: the usual longest ongoing silence then (a high quantile over the days,
        smoothed by taking the largest within +-30 min so one quiet day's timing does not make a cliff). ``name``:
        the ordinary clock's ("slots") or the paired clock's ("paired_slots"); None until learned."""
        if not self._adaptive():
            return None
        if name not in self._profile_cache:
            s = self.settings
            learned = self._paired_slots if name == "paired_slots" else self._slots
            raw = [_upper(learned.get(slot, [0.0]), s.profile_quantile) for slot in range(48)]
            enough = all(len(learned.get(slot, [])) >= s.learning_days // 2 for slot in range(48))
            self._profile_cache[name] = (
                [max(raw[(k + d) % 48] for d in (-1, 0, 1)) for k in range(48)] if enough else []
            )
        return self._profile_cache[name] or None

    def _learned_warning(self, usual: float) -> float:
        """Warning after a silence longer than ``usual`` (the usual longest at this time of day) by a margin."""
        s = self.settings
        return max(s.inactivity_min_h * _HOUR_S, usual + max(s.inactivity_margin_h * _HOUR_S, 0.25 * usual))

    def _inactivity_thresholds(self, t: float) -> tuple[float, float]:
        """(warning, urgent) seconds of silence at ``t``: learned by local time of day, capped by the fixed rules.

        Warning: longer than is usual at this time of day (fast: a quiet morning shows within hours). Urgent: longer
        than any silence that usually overlaps this one, plus a margin (slow to cry wolf)."""
        s = self.settings
        over_night = self._overlaps_night(self._anchor, t)
        cap_warn = (s.night_inactivity_warning_h if over_night else s.inactivity_warning_h) * _HOUR_S
        cap_urgent = (s.night_inactivity_urgent_h if over_night else s.inactivity_urgent_h) * _HOUR_S
        profile = self._usual_profile()
        if profile is None:
            return cap_warn, cap_urgent
        slot = self._slot_of(t)
        covered = min(48, int((t - self._anchor) // _SLOT_S) + 2)
        cover_usual = max(profile[(slot - k) % 48] for k in range(covered))
        warn = self._learned_warning(profile[slot])
        margin = s.night_urgent_margin_h if over_night else s.urgent_margin_h
        urgent = max(warn + _HOUR_S, cover_usual + margin * _HOUR_S)
        return min(warn, cap_warn), min(urgent, cap_urgent)

    def _overlaps_night(self, a: float, b: float) -> bool:
        """Whether [a, b] reaches into the night window (then the longer Gujo-style limits apply): a silence that
        holds the night's sleep is naturally long; one that began in the morning is judged by day limits."""
        if b - a >= 86400.0:
            return True
        local = datetime.fromtimestamp(a, self.tz)
        start_s = local.hour * 3600 + local.minute * 60 + local.second
        night_from, night_to = self._night
        length = b - a
        for day_offset in (-86400, 0, 86400):
            lo = night_from + day_offset
            hi = night_to + day_offset + (86400 if night_to <= night_from else 0)
            if lo < start_s + length and hi > start_s:
                return True
        return False

    def _silence_payload(self, silence: float, warn: float, urgent: float) -> dict[str, Any]:
        return {
            "silence_h": round(silence / 3600.0, 2),
            "last_use": _iso_local(self._anchor, self.tz),
            "warning_after_h": round(warn / 3600.0, 2),
            "urgent_after_h": round(urgent / 3600.0, 2),
            "adaptive": self._adaptive(),
        }

    def _slot_of(self, t: float) -> int:
        local = datetime.fromtimestamp(t, self.tz)
        return (local.hour * 60 + local.minute) // 30

    def _silence(self, t: float) -> float:
        """Observed seconds since the last sign of life (time in gaps does not count)."""
        return self._observed(self._anchor, t)

    def _observed(self, since: float, t: float) -> float:
        """Seconds from ``since`` to ``t`` that were observed (time in gaps does not count)."""
        return max(0.0, t - since - self._gap_seconds(since, t))

    def _gap_seconds(self, a: float, b: float) -> float:
        total = 0.0
        for start, end in self._gaps:
            if end > a and start < b:
                total += min(end, b) - max(start, a)
        last = self._last_t
        if last is not None and b > last + self._max_interval:  # a gap still going on
            total += b - max(a, last + self._max_interval)
        return total

    def _prune_gaps(self, t: float) -> None:
        horizon = min(self._anchor, self._paired_anchor, t - 2 * 86400.0, self._day["start_t"] if self._day else t)
        if self._gaps and self._gaps[0][1] < horizon:
            self._gaps = [g for g in self._gaps if g[1] >= horizon]

    def _end_away(self, t: float) -> None:
        self._away_until = None
        self._anchor = max(self._anchor, t)  # back home: watching starts again from here
        self._paired_anchor = max(self._paired_anchor, t)
        self._lone_count = 0
        self._lone_times = []
        if self._day is not None and self._day["first_use"] is None:
            self._day["first_use"] = t  # no missed-morning alert on the day of return
        self._next_check = -math.inf

    # ------------------------------------------------------------------------------------------ incidents
    def _set(
        self, out: list[Detection], kind: str, severity: str, t: float, payload: dict[str, Any], lower: bool = False
    ) -> None:
        """Raise an incident, or update it when its severity rises: one incident = one alert. Only an
        acknowledgement (``lower``) takes the severity down; a threshold moving with the time of day does not."""
        if kind in PERSON_KINDS and self._away_until is not None:
            return
        incident = self._incidents.get(kind)
        if incident is not None and _RANK[severity] < _RANK[incident["severity"]] and not lower:
            return
        body = dict(payload)
        if severity == "urgent":
            body["escalate_after_s"] = round(self.settings.escalate_after_min * 60.0)
        if incident is None:
            self._incidents[kind] = {
                "severity": severity,
                "raised_at": t,
                "raised_day": datetime.fromtimestamp(t, self.tz).date().isoformat(),
                "peak": severity,
            }
            out.append(Detection(kind, "raised", t, severity, body, self.key))  # type: ignore[arg-type]
        elif incident["severity"] != severity:
            incident["severity"] = severity
            if _RANK[severity] > _RANK[incident["peak"]]:
                incident["peak"] = severity
            body["raised_at"] = _iso_local(incident["raised_at"], self.tz)
            out.append(Detection(kind, "updated", t, severity, body, self.key))  # type: ignore[arg-type]

    def _clear(self, kind: str, t: float, out: list[Detection], **payload: Any) -> None:
        incident = self._incidents.pop(kind, None)
        if incident is None:
            return
        body = {"raised_at": _iso_local(incident["raised_at"], self.tz), "peak_severity": incident["peak"]}
        body.update(payload)
        if kind == "inactivity" and "reason" not in payload:
            body["reason"] = "use"
        out.append(Detection(kind, "cleared", t, incident["severity"], body, self.key))

    # -------------------------------------------------------------------------------------------- restore
    def _restore(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"wellbeing state version {state.get('version')!r}, expected {STATE_VERSION}")
        self._last_t = state["last_t"]
        self._last_total = state["last_total"]
        self._anchor = float(state["anchor"])
        self._paired_anchor = float(state.get("paired_anchor", self._anchor))  # absent before the pairing rule
        self._lone_count = int(state.get("lone_count", 0))
        self._lone_times = [float(x) for x in state.get("lone_times", [])]  # absent before the steadiness rule
        self._gaps = [list(map(float, g)) for g in state["gaps"]]
        self._rises = deque(list(map(float, r)) for r in state["rises"])
        self._win_use = sum(r[1] for r in self._rises)
        self._win_flow = sum(r[2] for r in self._rises)
        self._last_rise_t = state["last_rise_t"]
        self._intervals = [list(map(float, x)) for x in state.get("intervals", [])]  # absent before the beat rule
        self._lone_t = state.get("lone_t")  # absent in states saved before the pairing rule
        self._resolution = math.inf if state["resolution"] is None else float(state["resolution"])
        self._short_bin = list(state["short_bin"])
        self._short_bins = deque(state["short_bins"], maxlen=6)
        self._hour_bin = list(state["hour_bin"])
        self._hour_bins = deque(state["hour_bins"], maxlen=self._hour_bins.maxlen)
        self._base_lph = float(state["base_lph"])
        self._leak_lph = float(state["leak_lph"])
        self._run = dict(state["run"]) if state["run"] else None
        self._day = dict(state["day"]) if state["day"] else None
        self._history = [dict(d) for d in state["history"]]
        self._slots = {int(k): list(v) for k, v in state["slots"].items()}
        self._paired_slots = {int(k): list(v) for k, v in state.get("paired_slots", {}).items()}  # absent before
        self._next_slot_t = state["next_slot_t"]
        self._clean_nights = list(state["clean_nights"])
        self._away_until = state["away_until"]
        self._incidents = {k: dict(v) for k, v in state["incidents"].items()}
        self._next_check = -math.inf


def _iso_local(t: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")


def recipients_for(detection: Detection) -> tuple[str, ...]:
    """Who an alert is for: family always; an urgent one names the social worker too (the central escalates to
    them after ``payload['escalate_after_s']`` without an acknowledgement)."""
    if detection.kind in ("leak_suspected", "high_daily_volume"):
        return ("family",)
    return ("family", "social_worker") if detection.severity == "urgent" else ("family",)


def parse_local_date(value: str, tz: tzinfo) -> float:
    """'2026-12-01' (end of away: start of that local day) or an ISO time -> Unix seconds."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        day = date.fromisoformat(value)
        when = datetime.combine(day, datetime.min.time())
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


__all__ = [
    "KINDS",
    "PERSON_KINDS",
    "WellbeingMonitor",
    "WellbeingSettings",
    "parse_local_date",
    "recipients_for",
]
