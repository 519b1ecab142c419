"""One shared timeline of uses from a meter's totals: gaps, base flow, flow runs, signs of life, silences, days.

The rules (rules.py) read it; only this module writes the meter's side of the state. A *use* is at least
``min_use_litres`` above the floor within ``use_window_min``; the floor is the base flow (the quietest 2-hour span
of the last day: a leak) or, on top of steady flow, the quietest 10 minutes of the last hour. A use is one sign of
life from its start: water keeps moving after the person has acted (a cistern refills for 2-4 minutes), so a flow
run proves life until ``refill_min`` before its water stopped, never before it started, and a run far longer than
usual (a tap left on after a fall) proves nothing after the usual longest run, unless water at a person's pace
stands out from the run's own flow once that flow is the floor (a person flushing on top of a running cistern). On
a fine meter a use proves life at once only at a person's pace (``min_use_litres`` within two minutes); a slower one
proves it when its water stops, and not at all if it ran past the usual longest run: a leak beginning after a fall
is not taken for a use.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, tzinfo

from meter_node.wellbeing.settings import WellbeingSettings, minutes
from meter_node.wellbeing.state import Day, DayRecord, Run, WellbeingState

HOUR = 3600.0
SHORT_BIN_S = 600.0
BRISK_S = 120.0
TRAIN_S = 120.0  # a leak's pulses come this evenly (two polls of a minute), or within a tenth of their interval
SLOTS = 48  # the model's start slots: half hours of the day
SLOT_S = 1800.0
WEEK_SHARE = (5.0 / 7.0, 2.0 / 7.0)  # of a month's days: weekdays, weekend days
MIN_SILENCE_S = 3600.0  # shorter silences change no threshold (they are all at least warning_min_h)


def learn_cap(settings: WellbeingSettings) -> float:
    """The longest a learned silence counts (seconds): an absence or an incident must not become a habit."""
    return (settings.warning_max_h + 1.0) * HOUR


def upper(values: list[float], share: float) -> float:
    """A high quantile that ignores the very top few (one odd day must not widen a threshold much)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


class Timeline:
    """The meter side of a household's state: ``feed`` a reading, read the signs of life and the days."""

    def __init__(self, state: WellbeingState, settings: WellbeingSettings, tz: tzinfo) -> None:
        self.s = state
        self.settings = settings
        self.tz = tz
        self.max_interval = settings.max_reading_interval_min * 60.0
        self.window = settings.use_window_min * 60.0
        self.hour_keep = max(settings.leak_window_h, settings.base_window_h)
        self.closed: list[DayRecord] = []  # days closed by the last feed (the monitor's day rules read them)

    # ------------------------------------------------------------------------------------------ readings
    def start(self, t: float, total: float) -> None:
        s = self.s
        s.last_t, s.last_total = t, total
        s.anchor = s.paired_anchor = t  # watching starts here: silence before it is unknown
        s.short_bin = [t // SHORT_BIN_S, 0.0]
        s.hour_bin = [t // HOUR, 0.0]
        s.day = self.new_day(t)
        if t > s.day.start_t:
            s.gaps.append([s.day.start_t, t])  # the day before watching began is not observed

    def feed(self, t: float, total: float) -> None:
        """One valid reading after the first (``t`` later than the last)."""
        s = self.s
        assert s.last_t is not None and s.last_total is not None
        last_t = s.last_t
        gap = t - last_t > self.max_interval
        if gap:
            s.gaps.append([last_t + self.max_interval, t])
        even = gap and len(s.short_bins) == 6 and max(s.short_bins) - min(s.short_bins) <= 2 * s.resolution
        delta = total - s.last_total
        s.last_t, s.last_total = t, total
        short_idx = t // SHORT_BIN_S  # 10-minute bins roll on readings only: a gap's are what came before it
        if short_idx > s.short_bin[0]:
            skipped = int(short_idx - s.short_bin[0])
            s.short_bins = (s.short_bins + [s.short_bin[1]] + [0.0] * min(skipped - 1, 6))[-6:]
            s.short_bin = [short_idx, 0.0]
        self.roll(t)
        if delta < 0:  # meter replaced or reset (the reader reports it): the interval's volume is unknown
            if not gap:
                s.gaps.append([last_t, t])
        elif delta > 0:
            s.resolution = delta if s.resolution <= 0 else min(s.resolution, delta)
            self._add(t, delta, t - last_t if gap else 0.0, even)
        elif gap:
            s.gaps[-1].append(1.0)  # no water came through: no one used any, a silence like observed time

    def _add(self, t: float, delta: float, gap_s: float, even: bool = False) -> None:
        """Water ``delta`` litres at ``t``; ``gap_s``: the seconds since the last reading if they were a gap; ``even``:
        the 10-minute bins of the hour before it were within two pulses of each other (see ``leak_bound_lph``)."""
        s = self.s
        assert s.day is not None
        s.day.volume += delta
        use_min = self.use_min()
        base_rate = s.base_lph / HOUR
        span = self.span_h() * HOUR
        since = min(t - s.last_rise_t, span) if s.last_rise_t is not None else span
        s.last_rise_t = t
        if gap_s:
            # water used some time during the gap proves life then, but not when: life at the gap's end, if it is more
            # than a leak could have let through over the whole interval (a coarse meter's lone pulses the paired
            # clock doubts). Water no more than a known leak's shows that no one used any: the gap was a silence
            excess = delta - self.leak_bound_lph(known=False) / HOUR * gap_s
            if excess >= use_min:
                self.life(t, paired=not self.coarse() or excess >= 2 * s.resolution)
            elif delta - self.leak_bound_lph(known=True, even=even) / HOUR * gap_s < use_min:
                s.gaps[-1].append(1.0)
            s.rises = []
            return
        s.short_bin[1] += delta
        s.hour_bin[1] += delta
        short_floor = min(s.short_bins) / SHORT_BIN_S if len(s.short_bins) == 6 else 0.0
        floor_rate = max(base_rate, short_floor)
        s.rises.append([t, max(0.0, delta - floor_rate * since), max(0.0, delta - base_rate * since)])
        self._trim(t)
        win_use = sum(r[1] for r in s.rises)
        win_flow = sum(r[2] for r in s.rises)
        if win_flow >= use_min:
            if s.run is None:
                s.run = Run(start=s.rises[0][0], last=t)
            s.run.last = t
            s.run.litres += s.rises[-1][2]
        # on top of a steady flow (a tap left on, a new leak) a use must stand out from its wobble too
        if win_use >= use_min + 0.1 * floor_rate * self.window:
            if s.run is not None:
                s.run.used = True
            brisk = sum(r[1] for r in s.rises if r[0] > t - BRISK_S) >= use_min
            if self.coarse() or brisk:
                if s.run is not None:
                    s.run.brisk = True
                pair = self.paired(t, win_use)
                self.life(self.life_time(t, brisk and not self.coarse()), paired=pair is not None, paired_from=pair)

    def leak_bound_lph(self, known: bool, even: bool = False) -> float:
        """Litres per hour a leak may have let through a gap just ended: the base flow; on a fine meter, the quieter
        of the hours before the gap less a pulse if higher (a leak begun within the day is not base flow yet), plus a
        leak too slow to be told from use (two pulses a base-flow span). ``known``: those hours count only when they
        are steady, as a leak's are and a person's use is not: within two pulses of each other, and ``even`` (so were
        the 10-minute bins of the hour before the gap: busy hours of like volume are bursts of use within them)."""
        s = self.s
        if self.coarse():
            return s.base_lph
        n = self.span_h()
        bins = s.hour_bins
        end = len(bins)
        while end and bins[end - 1] is None:  # the gap's own hours
            end -= 1
        before = [b for b in bins[max(0, end - n) : end] if b is not None]
        recent = 0.0
        if len(before) == n and (not known or (even and max(before) - min(before) <= 2 * s.resolution)):
            recent = max(0.0, min(before) - s.resolution)
        return max(s.base_lph, recent) + 2.0 * s.resolution / n

    def life_time(self, t: float, brisk: bool = False) -> float:
        """Until when the water now moving proves life (see the module docstring). ``brisk``: water at a person's
        pace above the floor; in a run older than the floor's hour that floor is the run's own flow, so this is a
        person on top of a leak or a running tap, not the run's first water, and it proves life now."""
        run = self.s.run
        if run is None:
            return t
        refill = self.settings.refill_min * 60.0
        cap = t if brisk and t - run.start > 7 * SHORT_BIN_S else run.start + self.run_cap()
        return min(max(run.start, t - refill), cap)

    def paired(self, t: float, win_use: float) -> float | None:
        """Coarse (10 L) meter: a pulse is a person's when another comes within ``coarse_pair_min`` (a flush, a wash,
        the kettle); a slow leak's lone pulses hours apart are not, nor a faster leak's evenly spaced train (a
        pulse as long after the last as that one after the one before, within ``TRAIN_S`` or a tenth). Returns from when
        the water proves a person (None: not a person's): ``t`` for a burst, the pair's first pulse for a pair (its
        second may be a slow leak's, after a fall)."""
        s = self.s
        window = self.settings.coarse_pair_min * 60.0
        first, s.lone_t = s.lone_t, t
        before, s.pulse_gap = s.pulse_gap, None if first is None else t - first
        if not self.coarse() or window <= 0 or win_use >= 1.5 * s.resolution:
            return t
        if first is None or t - first > window:
            return None
        train = before is not None and abs(t - first - before) <= max(TRAIN_S, 0.1 * before)
        return None if train else first

    def life(
        self, t: float, paired: bool = True, door: bool = False, paired_from: float | None = None, answer: bool = False
    ) -> None:
        """A sign of life at ``t``: ends the silence (learned if long), may be the morning's first use. ``paired``:
        it ends the coarse meter's paired silence too, at ``paired_from`` if earlier (a pair's first pulse).
        ``answer`` (to the node's question, a check-in): it ends the silence for the alerts but teaches the model
        nothing, neither a silence nor the day's first use, so asking changes no threshold."""
        s = self.s
        pair_t = t if paired_from is None else min(t, paired_from)
        # water older than an answer (a use under way when she pressed) still ends the silence as learned
        main = t > s.anchor or (not answer and t > (s.learn_from or math.inf))
        pair = paired and (pair_t > s.paired_anchor or (not answer and pair_t > (s.paired_learn_from or math.inf)))
        if not (main or pair):
            return
        day = s.day
        if day is not None and t >= day.morning_t and not door:
            day.first_use = day.first_use or t
            day.first_learned = day.first_learned or (None if answer else t)
        if not door:
            s.door_t = None  # water: the resident is in
            s.out_since = None
        if main:
            s.learn_from = self._learn(s.silences, s.learn_from or s.anchor, t, answer) or (t if t < s.anchor else None)
            s.anchor = max(s.anchor, t)
        if pair:
            held = self._learn(s.paired_silences, s.paired_learn_from or s.paired_anchor, pair_t, answer)
            s.paired_learn_from = held or (pair_t if pair_t < s.paired_anchor else None)
            s.paired_anchor = max(s.paired_anchor, pair_t)

    def _learn(self, silences: list[list[float]], since: float, t: float, answer: bool) -> float | None:
        """Learn the silence from ``since`` to ``t``; an answer learns nothing yet: it returns ``since``, to be learned
        whole at the next sign of life that is not an answer."""
        if answer:
            return since
        length = self.observed(since, t)
        if length >= MIN_SILENCE_S and self.s.away_until is None:
            out = 1.0 if self.s.out_since is not None else 0.0
            silences.append([since, round(min(length, learn_cap(self.settings)), 1), out])
        return None

    def _trim(self, t: float) -> None:
        rises = self.s.rises
        del rises[: next((i for i, r in enumerate(rises) if r[0] > t - self.window), len(rises))]

    # ---------------------------------------------------------------------------------------- rolling on
    def roll(self, t: float) -> None:
        """Close every hour bin and day whose end is at or before ``t`` (lazily: nothing runs per poll)."""
        s = self.s
        hour_idx = t // HOUR
        if hour_idx - s.hour_bin[0] > self.hour_keep + 1:  # a long gap: skip ahead
            s.hour_bins = [None] * self.hour_keep
            s.hour_bin = [hour_idx - 1, 0.0]
        while s.hour_bin[0] < hour_idx:
            start = s.hour_bin[0] * HOUR
            valid = self.gap_seconds(start, start + HOUR) == 0.0
            s.hour_bins = (s.hour_bins + [s.hour_bin[1] if valid else None])[-self.hour_keep :]
            self._night_check(start, s.hour_bin[1] if valid else None)
            s.hour_bin = [s.hour_bin[0] + 1, 0.0]
            self._update_base()
        while s.day is not None and s.day.end_t <= t:
            self._close_day()
        if s.rises:
            self._trim(t)
        if s.run is not None and sum(r[2] for r in s.rises) < self.use_min():
            self._end_run()
        if s.away_until is not None and t >= s.away_until:
            self.end_away(s.away_until)
        self._prune(t)

    def _end_run(self) -> None:
        s = self.s
        run = s.run
        assert run is not None and s.day is not None
        until = self.life_time(run.last)
        s.run = None
        if "continuous_flow" not in s.reported or run.ack:
            s.day.longest_run = max(s.day.longest_run, run.last - run.start)
        slow_and_long = not run.brisk and run.last - run.start > self.run_cap()  # a leak beginning, not a person
        if run.used and not slow_and_long:  # a run that never stood out as use (a leak's pulses) gives none
            self.life(until, paired=not self.coarse() or run.litres >= 2 * s.resolution)

    def end_away(self, t: float) -> None:
        s = self.s
        s.away_until = None
        s.anchor = max(s.anchor, t)  # back home: watching starts again from here
        s.paired_anchor = max(s.paired_anchor, t)
        if s.day is not None and s.day.first_use is None:
            s.day.first_use = s.day.first_learned = t  # no missed-morning alert on the day of return

    def _night_check(self, start: float, litres: float | None) -> None:
        """Leak clearing needs quiet nights: an hour between 00:00 and 06:00 local without flow."""
        if litres is None:
            return
        local = datetime.fromtimestamp(start, self.tz)
        if local.hour < 6 and litres < 0.5 * self.settings.leak_min_lph:
            stamp = local.date().isoformat()
            if stamp not in self.s.clean_nights:
                self.s.clean_nights = [*self.s.clean_nights, stamp][-7:]

    def _update_base(self) -> None:
        s, cfg = self.s, self.settings
        bins = s.hour_bins
        s.base_lph = self._quietest(bins[-cfg.base_window_h :], s.base_lph)
        recent = bins[-cfg.leak_window_h :]
        enough = len(bins) >= cfg.leak_window_h and sum(b is not None for b in recent) >= cfg.leak_window_h // 2
        s.leak_lph = self._quietest(recent, 0.0) if enough else 0.0

    def _quietest(self, bins: list[float | None], fallback: float) -> float:
        """Litres per hour in the quietest span (2 h; up to 6 h for 10 L pulses): a base flow that ignores use."""
        n = self.span_h()
        # one pulse in a span may be the tail of a use before it: only what is beyond one pulse is base flow
        pulse = self.s.resolution
        spans = [
            max(0.0, sum(b for b in bins[i : i + n] if b is not None) - pulse) / n
            for i in range(len(bins) - n + 1)
            if all(b is not None for b in bins[i : i + n])
        ]
        if not spans:
            return fallback
        # below two pulses per span a steady flow cannot be told from use; call it none
        return min(spans) if min(spans) >= 2 * pulse / n else 0.0

    def _prune(self, t: float) -> None:
        s = self.s
        keep = t - (self.settings.history_days + 1) * 86400.0
        if s.silences and s.silences[0][0] < keep:
            s.silences = [x for x in s.silences if x[0] >= keep]
        if s.paired_silences and s.paired_silences[0][0] < keep:
            s.paired_silences = [x for x in s.paired_silences if x[0] >= keep]
        learning = (x for x in (s.learn_from, s.paired_learn_from) if x is not None)
        horizon = min(s.anchor, s.paired_anchor, *learning, t - 2 * 86400.0, s.day.start_t if s.day else t)
        if s.gaps and s.gaps[0][1] < horizon:
            s.gaps = [g for g in s.gaps if g[1] >= horizon]

    # ------------------------------------------------------------------------------------------- days
    def new_day(self, t: float) -> Day:
        local = datetime.fromtimestamp(t, self.tz)
        start = datetime(local.year, local.month, local.day, tzinfo=self.tz)
        end = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), self.tz)
        return Day(
            date=start.date().isoformat(),
            start_t=start.timestamp(),
            end_t=end.timestamp(),
            morning_t=start.timestamp() + minutes(self.settings.morning_start) * 60,
            away=self.s.away_until is not None,
        )

    def _close_day(self) -> None:
        s = self.s
        day = s.day
        assert day is not None
        covered = 1.0 - self.gap_seconds(day.start_t, day.end_t) / (day.end_t - day.start_t)
        record = DayRecord(
            date=day.date,
            weekend=datetime.fromtimestamp(day.start_t, self.tz).weekday() >= 5,
            volume=round(day.volume, 2),
            coverage=round(covered, 3),
            first_use_s=None if day.first_learned is None else round(day.first_learned - day.start_t),
            longest_run_s=round(day.longest_run),
            away=day.away or s.away_until is not None,
        )
        keep = max(2 * self.settings.history_days, self.settings.history_days + self.settings.decline_days)
        s.history = [*s.history, record][-keep:]
        s.day = self.new_day(day.end_t)
        self.closed.append(record)

    def valid_days(self) -> list[DayRecord]:
        cfg = self.settings
        return [d for d in self.s.history[-cfg.history_days :] if not d.away and d.coverage >= 0.9]

    def learned(self) -> bool:
        cfg = self.settings
        return cfg.adaptive and len(self.valid_days()) >= cfg.learning_days

    def usual_run(self) -> float | None:
        return upper([d.longest_run_s for d in self.valid_days()], 0.9) if self.learned() else None

    def run_cap(self) -> float:
        """Flow longer than this is not taken as a sign of life (a tap left running after a fall)."""
        usual = self.usual_run()
        limit = self.settings.continuous_flow_h * HOUR
        return limit / 2 if usual is None else min(limit / 2, max(usual * 1.5, 15 * 60.0))

    # ---------------------------------------------------------------------------------------- helpers
    def use_min(self) -> float:
        """Litres above base flow that make a use: min_use_litres, or one pulse of a coarse (10 L) meter."""
        if self.s.resolution <= 0:
            return self.settings.min_use_litres
        return max(self.settings.min_use_litres, 0.5 * self.s.resolution)

    def coarse(self) -> bool:
        """Pulses so large (10 L) that one pulse is a use: then a lone pulse needs a companion (see paired)."""
        return self.s.resolution >= 2 * self.settings.min_use_litres

    def span_h(self) -> int:
        """Hours in a base-flow span: 2, longer for coarse pulses so a slow leak shows in every span."""
        return 2 if self.s.resolution <= 0 else int(min(6, max(2, round(self.s.resolution / 2))))

    def observed(self, since: float, t: float) -> float:
        """Seconds from ``since`` to ``t`` known to be silent or not: time in a gap does not count, unless the water
        that came through it showed no use (then no one used water in it)."""
        return max(0.0, t - since - self.gap_seconds(since, t, unknown_only=True))

    def gap_seconds(self, a: float, b: float, unknown_only: bool = False) -> float:
        """Seconds from ``a`` to ``b`` without readings (``unknown_only``: leave out the gaps known to be silent)."""
        total = 0.0
        for start, end, *silent in self.s.gaps:
            if end > a and start < b and not (silent and unknown_only):
                total += min(end, b) - max(start, a)
        last = self.s.last_t
        if last is not None and b > last + self.max_interval:  # a gap still going on
            total += b - max(a, last + self.max_interval)
        return total
