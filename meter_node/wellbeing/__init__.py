"""Wellbeing rules for an elderly person living alone, from one water meter's total: a per-household model with a
false-alarm budget over one shared timeline of uses (docs/wellbeing.md).

settings.py the ``[meter.wellbeing]`` section; state.py the one state dataclass; timeline.py uses and silences;
model.py thresholds under the budget and monitorability; rules.py the rules; monitor.py ``WellbeingMonitor``.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo

from common.events import Detection
from meter_node.wellbeing.monitor import CHECK_IN_KIND, KINDS, PERSON_KINDS, PROFILE_KIND, WellbeingMonitor
from meter_node.wellbeing.settings import WellbeingSettings


def recipients_for(detection: Detection) -> tuple[str, ...]:
    """Who an alert is for: family always; an urgent one names the social worker too (the central escalates to
    them after ``payload['escalate_after_s']`` without an acknowledgement). The profile and a check-in go to the
    social worker's record."""
    if detection.kind in (PROFILE_KIND, CHECK_IN_KIND):
        return ("social_worker",)
    if detection.kind in ("leak_suspected", "high_daily_volume"):
        return ("family",)
    return ("family", "social_worker") if detection.severity == "urgent" else ("family",)


def parse_local_date(value: str, tz: tzinfo) -> float:
    """'2026-12-01' (end of away: start of that local day) or an ISO time -> Unix seconds."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = datetime.combine(date.fromisoformat(value), datetime.min.time())
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


__all__ = [
    "CHECK_IN_KIND",
    "KINDS",
    "PERSON_KINDS",
    "PROFILE_KIND",
    "WellbeingMonitor",
    "WellbeingSettings",
    "parse_local_date",
    "recipients_for",
]
