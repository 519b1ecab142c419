"""The wellbeing rules: small objects that read the shared timeline and say what should be open now.

Each rule's ``assess(view, t, seen_t)`` returns its ``Finding`` (severity and payload, or None: nothing to say)
and when it next needs a look. Rules keep no incident of their own: the monitor turns changes of the findings into
raised / updated / cleared detections, and the alert book owns the incidents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Protocol

from common.catalogue import Severity
from meter_node.wellbeing.model import Thresholds
from meter_node.wellbeing.night import morning_deadline_s
from meter_node.wellbeing.settings import WellbeingSettings, minutes
from meter_node.wellbeing.state import WellbeingState
from meter_node.wellbeing.timeline import HOUR, SLOT_S, Timeline

INF = math.inf


@dataclass(frozen=True)
class Finding:
    severity: Severity
    payload: dict[str, Any] = field(default_factory=dict)
    lower: bool = False  # may take an open alert's severity down (only an "I'm OK" does)
    since: float | None = None  # a silence's finding: when that silence began (its last sign of life)


class View(Protocol):
    """What a rule reads: the state, the timeline over it, the settings, the learned model."""

    data: WellbeingState
    timeline: Timeline
    settings: WellbeingSettings
    tz: tzinfo

    def thresholds(self, paired: bool) -> Thresholds | None: ...
    def usual_daily(self, exclude_last: int = 0) -> float | None: ...


def iso_local(t: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")


def overlaps_night(a: float, b: float, cfg: WellbeingSettings, tz: tzinfo) -> bool:
    """Whether [a, b] reaches into the fixed night window (then the longer fixed night limits apply)."""
    if b - a >= 86400.0:
        return True
    local = datetime.fromtimestamp(a, tz)
    start_s = local.hour * 3600 + local.minute * 60 + local.second
    night_from, night_to = minutes(cfg.night_start) * 60, minutes(cfg.night_end) * 60
    for offset in (-86400, 0, 86400):
        lo = night_from + offset
        hi = night_to + offset + (86400 if night_to <= night_from else 0)
        if lo < start_s + (b - a) and hi > start_s:
            return True
    return False


def known_out(v: View, seen_t: float) -> bool:
    """The away button, or the door with no water after it, says the resident is out: the outer limits apply, and
    there is nobody in the flat to ask."""
    s = v.data
    return s.out_since is not None or (s.door_t is not None and seen_t - s.door_t >= v.settings.door_out_min * 60.0)


class SilenceRule:
    """``inactivity``: the silence since the last sign of life outlasts its threshold. ``paired``: the coarse-meter
    clock that counts only pulses that came in pairs (a slow leak's lone pulses); it only warns."""

    kind = "inactivity"

    def __init__(self, paired: bool = False) -> None:
        self.paired = paired

    def limits(self, v: View, anchor: float, seen_t: float) -> tuple[float, float, str]:
        """(warning, urgent) seconds for the silence begun at ``anchor``, and where they come from."""
        cfg = v.settings
        if known_out(v, seen_t):
            return cfg.out_warning_h * HOUR, cfg.urgent_max_h * HOUR, "out"
        learned = v.thresholds(self.paired)
        if learned is None:
            night = overlaps_night(anchor, seen_t, cfg, v.tz)
            if self.paired:  # warning only; night visits to the toilet send lone pulses
                return (cfg.night_inactivity_urgent_h if night else cfg.night_inactivity_warning_h) * HOUR, INF, "fixed"
            warn = cfg.night_inactivity_warning_h if night else cfg.inactivity_warning_h
            urgent = cfg.night_inactivity_urgent_h if night else cfg.inactivity_urgent_h
            return warn * HOUR, urgent * HOUR, "fixed"
        local = datetime.fromtimestamp(anchor, v.tz)
        kind, slot = int(local.weekday() >= 5), int((local.hour * 3600 + local.minute * 60) // SLOT_S)
        urgent = INF if self.paired else learned.urgent[kind][slot]
        return learned.warning[kind][slot], urgent, "learned"

    def anchor(self, v: View) -> float:
        return v.data.paired_anchor if self.paired else v.data.anchor

    def warned_at(self, v: View, seen_t: float, ahead: float) -> float | None:
        """When the silence, going on with readings coming, would pass its warning threshold, if that is within
        ``ahead`` seconds; else None."""
        if v.data.away_until is not None:
            return None
        anchor = self.anchor(v)
        silence = v.timeline.observed(anchor, seen_t)
        due = seen_t
        for _ in range(3):  # a limit only grows as the silence goes on (into the night, out of the door): twice at most
            warn, _, _ = self.limits(v, anchor, due)
            if seen_t + warn - silence <= due:
                break
            due = seen_t + warn - silence
        return due if due <= seen_t + ahead else None

    def assess(self, v: View, t: float, seen_t: float) -> tuple[Finding | None, float]:
        s = v.data
        if s.away_until is not None:
            return None, INF
        anchor = self.anchor(v)
        silence = v.timeline.observed(anchor, seen_t)
        warn, urgent, source = self.limits(v, anchor, seen_t)
        payload = {
            "silence_h": round(silence / HOUR, 2),
            "last_use": iso_local(anchor, v.tz),
            "warning_after_h": round(warn / HOUR, 2),
            "urgent_after_h": None if math.isinf(urgent) else round(urgent / HOUR, 2),
            "thresholds": source,
        }
        if self.paired:
            payload["reason"] = "lone_pulses"
            payload["last_pulse"] = iso_local(s.anchor, v.tz)
        if silence >= urgent:
            return Finding("urgent", payload, since=anchor), INF
        if silence >= warn:
            return Finding("warning", payload, since=anchor), t + (urgent - silence)
        return None, t + (warn - silence)


class MorningRule:
    """``missed_morning``: no use since ``morning_start`` by the usual first use + a margin (fixed 09:00)."""

    kind = "missed_morning"

    def assess(self, v: View, t: float, seen_t: float) -> tuple[Finding | None, float]:
        s, cfg = v.data, v.settings
        day = s.day
        if s.away_until is not None or day is None or day.first_use is not None:
            return None, INF
        model = v.thresholds(False)
        learned = morning_deadline_s(v.timeline.valid_days(), cfg) if model is not None else None
        deadline = day.start_t + (learned if learned is not None else minutes(cfg.morning_deadline) * 60.0)
        late = deadline + cfg.morning_warning_after_min * 60.0
        if model is not None and model.morning_warning_s is not None:
            late = max(late, day.start_t + model.morning_warning_s)
        observed = v.timeline.observed(day.morning_t, seen_t)
        enough = observed >= 0.5 * (seen_t - day.morning_t)
        payload = {
            "deadline": iso_local(deadline, v.tz),
            "silence_h": round(v.timeline.observed(s.anchor, seen_t) / HOUR, 2),
        }
        if seen_t >= late and enough:
            return Finding("warning", payload), INF
        if seen_t >= deadline and enough:
            return Finding("info", payload), late
        return None, deadline if seen_t < deadline else INF


class FlowRule:
    """``continuous_flow``: water running nonstop for longer than this home's usual longest flow (fixed 2 h)."""

    kind = "continuous_flow"

    def assess(self, v: View, t: float, seen_t: float) -> tuple[Finding | None, float]:
        s, cfg = v.data, v.settings
        run = s.run
        if run is None:
            return None, INF
        rate_lpm = run.litres / max(run.last - run.start, 60.0) * 60.0
        if rate_lpm < cfg.tap_flow_lpm:
            return None, INF  # slow nonstop flow: the leak rule's business
        usual = v.timeline.usual_run()
        fixed = cfg.continuous_flow_h * HOUR
        warn = fixed if usual is None else min(fixed, max(usual * 2.0 + 600.0, cfg.continuous_flow_min_min * 60.0))
        urgent = fixed if usual is None else min(fixed, max(warn + 1800.0, usual * 4.0))
        length = run.last - max(run.start, run.ack)
        payload = {
            "flow_minutes": round((run.last - run.start) / 60.0, 1),
            "litres": round(run.litres, 1),
            "rate_lpm": round(rate_lpm, 2),
            "warning_after_min": round(warn / 60.0, 1),
            "urgent_after_min": round(urgent / 60.0, 1),
        }
        if length >= urgent:
            return Finding("urgent", payload), INF
        if length >= warn:
            return Finding("warning", payload), INF
        if run.ack and self.kind in s.reported:
            return Finding("info", {**payload, "acknowledged": True}, lower=True), INF
        return None, INF


class LeakRule:
    """``leak_suspected``: no quiet span in a day (Longgang); clears after ``leak_clear_nights`` quiet nights."""

    kind = "leak_suspected"

    def assess(self, v: View, t: float, seen_t: float) -> tuple[Finding | None, float]:
        s, cfg = v.data, v.settings
        next_hour = (t // HOUR + 1) * HOUR
        if s.leak_lph >= cfg.leak_min_lph:
            if s.leak_raised_day is None:
                s.leak_raised_day = datetime.fromtimestamp(t, v.tz).date().isoformat()
            severity: Severity = "warning" if s.leak_lph >= cfg.leak_warning_lph else "info"
            return Finding(severity, {"base_flow_lph": round(s.leak_lph, 2)}), next_hour
        if s.leak_raised_day is None:
            return None, next_hour
        quiet = [n for n in s.clean_nights if n >= s.leak_raised_day]
        if len(quiet) >= cfg.leak_clear_nights:
            s.leak_raised_day = None
            return None, next_hour
        held = s.reported.get(self.kind)
        return (Finding(held, {"base_flow_lph": round(s.leak_lph, 2)}) if held else None), next_hour


class LowVolumeRule:
    """``low_daily_volume``: at local midnight the day below 10 L (Jing'an), or a decline over the last days."""

    kind = "low_daily_volume"

    def assess(self, v: View, t: float, seen_t: float) -> tuple[Finding | None, float]:
        s, cfg = v.data, v.settings
        if s.away_until is not None or not s.history or s.day is None:
            return None, INF
        last = s.history[-1]
        if last.away or last.coverage < 0.9:
            return None, INF
        recent = [d for d in s.history[-cfg.decline_days :] if not d.away and d.coverage >= 0.9]
        usual = v.usual_daily(cfg.decline_days)
        reason = None
        if last.volume < cfg.low_daily_litres:
            reason = "below_fixed"
        elif usual and len(recent) == cfg.decline_days and v.timeline.learned():
            mean = sum(d.volume for d in recent) / len(recent)
            reason = "decline" if mean < cfg.decline_fraction * usual else None
        if reason is None:
            return None, INF
        return Finding(
            "warning", {"day_litres": last.volume, "usual_litres": usual, "reason": reason, "date": last.date}
        ), INF


class HighVolumeRule:
    """``high_daily_volume``: the day so far above 4 x the usual day (info) or 2 m3 (warning, Jing'an)."""

    kind = "high_daily_volume"

    def assess(self, v: View, t: float, seen_t: float) -> tuple[Finding | None, float]:
        s, cfg = v.data, v.settings
        if s.day is None:
            return None, INF
        usual = v.usual_daily() if v.timeline.learned() else None
        learned = min(cfg.high_daily_litres, cfg.high_daily_factor * usual) if usual else cfg.high_daily_litres
        litres = s.day.volume
        payload = {"day_litres": round(litres, 1), "usual_litres": usual, "limit_litres": round(learned, 1)}
        if litres >= cfg.high_daily_litres:
            return Finding("warning", payload), INF
        if litres >= learned:
            return Finding("info", payload), INF
        return None, INF


RULES = (
    SilenceRule(),
    SilenceRule(paired=True),
    MorningRule(),
    FlowRule(),
    LeakRule(),
    LowVolumeRule(),
    HighVolumeRule(),
)
