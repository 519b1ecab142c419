"""The night and the morning: when the first use is due, and when a silence held over the night turns urgent.

A silence begun at night is judged by the morning: urgent by the usual first use + ``night_urgent_after_wake_h``,
its warning the missed-morning rule's. A day silence that this home often holds to the morning (it comes home and
uses no water until it gets up) is not urgent before the learned deadline for the first use. The model
(``model.fit``) applies these to its per-slot thresholds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from meter_node.wellbeing.settings import WellbeingSettings, minutes
from meter_node.wellbeing.state import DayRecord
from meter_node.wellbeing.timeline import HOUR, SLOT_S, SLOTS, WEEK_SHARE, learn_cap, upper

# no morning rule: no warning time, no urgent time by weekday/weekend, nothing expected of either
NO_MORNING: tuple[float | None, list[float | None], float, float] = (None, [None, None], 0.0, 0.0)


def morning_deadline_s(days: list[DayRecord], settings: WellbeingSettings) -> float | None:
    """Seconds after local midnight by which the first use is expected (None: not learned)."""
    firsts = [d.first_use_s for d in days if d.first_use_s is not None]
    if len(firsts) < settings.learning_days:
        return None
    learned = upper(firsts, 0.93) + settings.morning_margin_min * 60.0
    low = minutes(settings.morning_start) * 60.0 + HOUR
    return min(max(learned, low), minutes(settings.morning_latest) * 60.0)


def bedtime(samples: list[tuple[bool, int, float]]) -> float | None:
    """The usual start of the night's silence (seconds after midnight, past 24 h after midnight): the median start
    of the silences of 4 h or more begun between 18:00 and 04:00."""
    starts = [
        k * SLOT_S + (86400.0 if k < 8 else 0.0)
        for _, k, length in samples
        if (k >= 36 or k < 8) and length >= 4 * HOUR
    ]
    return statistics.median(starts) if starts else None


def judge_night(
    warning: list[list[float]],
    urgent: list[list[float]],
    urgent_at: list[float | None],
    bed: float | None,
    cfg: WellbeingSettings,
) -> None:
    """A silence begun at night (from an hour before the usual bedtime to ``morning_start``, after which a use is the
    day's first) is judged by the morning: urgent at ``urgent_at`` (seconds after midnight, per kind of day). The
    missed-morning rule gives its warning (one late morning, one warning: no inactivity warning before the urgent
    alert unless the outer limit comes first)."""
    morning = minutes(cfg.morning_start) * 60.0  # from then a use is the day's first
    for kind in (0, 1):
        at = urgent_at[kind]
        if at is None or bed is None:
            continue
        night_from = (bed - HOUR) % 86400.0
        for k in range(SLOTS):
            start = k * SLOT_S
            if start < morning and (night_from > morning or start >= night_from):
                until = at - start
            elif night_from > morning and start >= night_from:
                until = at + 86400.0 - start
            else:
                continue
            urgent[kind][k] = max(until, cfg.warning_min_h * HOUR)
            warning[kind][k] = min(urgent[kind][k], cfg.warning_max_h * HOUR)  # the outer limit still holds


def held_to_morning(
    urgent: list[list[float]],
    samples: list[tuple[bool, int, float]],
    bed: float | None,
    days: list[DayRecord],
    budget: float,
    cfg: WellbeingSettings,
) -> None:
    """Beyond the learning cap the model is blind (a silence counts at most ``learn_cap``): an urgent threshold there
    is the tail's guess. Where such a threshold would call the social worker in the night or at dawn (from an hour
    before the usual bedtime to the learned deadline for the first use) for a silence begun by day, and this
    household's silences begun at those times have run to the cap more often than the urgent budget allows, the
    urgent alert waits for that deadline (never past ``held_urgent_max_h`` of silence). Such a resident comes home and uses
    no water until she gets up. The warning is unchanged: the family hears by the outer limit."""
    deadline = morning_deadline_s(days, cfg)
    if bed is None or deadline is None:
        return
    morning = minutes(cfg.morning_start) * 60.0
    night_from = (bed - HOUR) % 86400.0
    night_start = night_from if night_from > morning else night_from + 86400.0  # after the day's slots
    capped = learn_cap(cfg) - 1.0
    dawn = [
        [
            morning <= k * SLOT_S < night_start
            and row[k] >= capped
            and night_start <= k * SLOT_S + row[k] < deadline + 86400.0
            for k in range(SLOTS)
        ]
        for row in urgent
    ]
    into_morning = sum(dawn[weekend][k] and length >= capped for weekend, k, length in samples)
    if into_morning * 30.0 / max(1, len(days)) <= budget:
        return
    for kind, row in enumerate(urgent):
        for k in range(SLOTS):
            if dawn[kind][k]:
                row[k] = min(deadline + 86400.0 - k * SLOT_S, cfg.held_urgent_max_h * HOUR)


def _late_morning(firsts: list[float], start: float, latest: float, budget: float) -> tuple[float, float]:
    """(the earliest time from ``start`` to ``latest`` whose expected late mornings a month meet ``budget``, that
    expectation): each day's first use F counts exp(-(W - F) / 30 min) for a time W after it."""

    def expected(at: float) -> float:
        return 30.0 * sum(_morning_tail(f, at) for f in firsts) / max(1, len(firsts))

    at = start
    while expected(at) > budget and at < latest:
        at += 300.0
    return min(at, max(start, latest)), expected(min(at, max(start, latest)))


def morning_times(
    days: list[DayRecord], cfg: WellbeingSettings, warning_budget: float, urgent_budget: float
) -> tuple[float | None, list[float | None], float, float]:
    """(missed-morning warning time, night urgent time per kind of day, their expected false warnings and urgent
    alerts a month), in seconds after midnight. The warning: the earliest time from the learned deadline +
    ``morning_warning_after_min`` whose expected late mornings meet its budget. The night's urgent: the earliest
    from an hour after the deadline meeting its budget, never later than the usual (median) first use +
    ``night_urgent_after_wake_h`` (then before the missed-morning warning, if that is later). A day with no use by then (out overnight, unannounced) alarms whatever is
    chosen: like silences past the outer limits it is not the budget's."""
    deadline = morning_deadline_s(days, cfg)
    if deadline is None:
        return None, [None, None], 0.0, 0.0
    latest = minutes(cfg.morning_latest) * 60.0 + cfg.morning_warning_after_min * 60.0
    firsts = [d.first_use_s for d in days if d.first_use_s is not None and d.first_use_s <= latest]
    warn, warn_expected = _late_morning(firsts, deadline + cfg.morning_warning_after_min * 60.0, latest, warning_budget)
    urgent_at: list[float | None] = []
    urgent_expected = 0.0
    for kind in (False, True):
        own = [d.first_use_s for d in days if d.weekend == kind and d.first_use_s is not None]
        usual = median_of(own) if len(own) >= 4 else median_of([d.first_use_s for d in days])
        if usual is None:
            urgent_at.append(None)
            continue
        cap = usual + cfg.night_urgent_after_wake_h * HOUR
        start = min(deadline + cfg.urgent_after_warning_min * 60.0, cap)
        at, expected = _late_morning(firsts, start, cap, urgent_budget)
        urgent_at.append(at)
        urgent_expected += expected * WEEK_SHARE[kind]
    return warn, urgent_at, warn_expected, urgent_expected


def _morning_tail(first: float, at: float) -> float:
    return 1.0 if first > at else math.exp(-(at - first) / 1800.0)


def median_of(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None
