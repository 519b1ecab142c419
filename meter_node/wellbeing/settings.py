"""The ``[meter.wellbeing]`` config section: the wellbeing rules take this frozen section itself as settings."""

from __future__ import annotations

from dataclasses import dataclass

from common.clock import HH_MM
from common.clock import day_minutes as minutes  # '07:30' -> 450, as the wellbeing modules call it
from common.config import setting


@dataclass(frozen=True, kw_only=True)
class WellbeingSettings:
    """The ``[meter.wellbeing]`` table. Hours and litres; the sources of the defaults are in docs/wellbeing.md."""

    # the false-alarm budget: learned thresholds are chosen so the expected false alarms meet it
    warning_budget_per_month: float = setting(
        2.0, min=0.1, max=30.0, help="expected false inactivity/morning warnings a month the learned thresholds allow"
    )
    urgent_budget_per_month: float = setting(
        0.3, min=0.01, max=10.0, help="expected false urgent inactivity alerts a month the learned thresholds allow"
    )
    # fixed service defaults until learned (Nagano 8 h, Shanghai 12 h, Gujo 12 h)
    inactivity_warning_h: float = setting(8.0, min=1.0, max=48.0, help="before learning: no use this long, warning")
    inactivity_urgent_h: float = setting(12.0, min=1.0, max=72.0, help="before learning: no use this long, urgent")
    night_inactivity_warning_h: float = setting(
        12.0, min=1.0, max=48.0, help="before learning: the same for a silence reaching into the night"
    )
    night_inactivity_urgent_h: float = setting(
        16.0, min=1.0, max=72.0, help="before learning: urgent for a silence reaching into the night"
    )
    night_start: str = setting("00:00", pattern=HH_MM, help="night window start (the fixed night limits)")
    night_end: str = setting("05:00", pattern=HH_MM, help="night window end (local time)")
    # fixed outer limits for safety: learned thresholds stay within them
    warning_min_h: float = setting(2.0, min=0.5, max=24.0, help="a learned warning is never sooner than this")
    warning_max_h: float = setting(
        11.9, min=1.0, max=48.0, help="a learned warning is never later than this (Gujo 12 h, less the meter's delay)"
    )
    urgent_max_h: float = setting(
        20.0, min=1.0, max=72.0, help="a learned urgent alert is never later than this (but see held_urgent_max_h)"
    )
    held_urgent_max_h: float = setting(
        23.9, min=1.0, max=72.0, help="a day silence this home often holds to the morning: urgent by then at the latest"
    )
    out_warning_h: float = setting(
        14.0, min=1.0, max=48.0, help="known to be out (door contact, away button): warning after this long"
    )
    urgent_after_warning_min: float = setting(60.0, min=0.0, max=720.0, help="warning first, urgent after this")
    urgent_margin_h: float = setting(
        4.0, min=0.0, max=24.0, help="by day a learned urgent alert comes at least this long after the warning"
    )
    night_urgent_after_wake_h: float = setting(
        3.0, min=0.5, max=12.0, help="a silence held over the night is urgent this long after the usual first use"
    )
    coarse_warning_budget_per_month: float = setting(
        1.0, min=0.0, max=30.0, help="coarse (10 L) meter: false warnings a month allowed to the paired clock"
    )
    coarse_pair_min: float = setting(
        90.0, min=0.0, max=360.0, help="coarse meter: a pulse with another within this is paired (a person's)"
    )
    # what a use is
    min_use_litres: float = setting(2.0, min=0.1, max=50.0, help="litres above base flow that make a use")
    use_window_min: float = setting(10.0, min=1.0, max=60.0, help="a use is min_use_litres within this window")
    refill_min: float = setting(
        5.0, min=0.0, max=30.0, help="a use is a sign of life until this before its water stops (a cistern refills)"
    )
    door_out_min: float = setting(
        10.0, min=1.0, max=120.0, help="door contact: no water this long after the door: the resident is out"
    )
    # morning
    morning_start: str = setting("04:00", pattern=HH_MM, help="local time from which a use counts as the first")
    morning_deadline: str = setting("09:00", pattern=HH_MM, help="fixed deadline for the first use (Gujo 05-08)")
    morning_latest: str = setting("11:00", pattern=HH_MM, help="a learned deadline is never later than this")
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
    # daily volume
    low_daily_litres: float = setting(10.0, min=0.0, max=1000.0, help="a day below this: warning (Jing'an 10 L)")
    decline_fraction: float = setting(0.5, min=0.05, max=0.95, help="3-day mean below this x usual: warning")
    decline_days: int = setting(3, min=1, max=14)
    high_daily_litres: float = setting(2000.0, min=50.0, max=100000.0, help="a day above this: warning (2 m3)")
    high_daily_factor: float = setting(4.0, min=1.5, max=50.0, help="above this x usual day: info")
    # learning and the rest
    adaptive: bool = setting(True, help="learn the household's rhythm; false: fixed rules only")
    learning_days: int = setting(14, min=3, max=120, help="days of history before thresholds adapt")
    history_days: int = setting(28, min=7, max=120, help="days of history the model keeps")
    max_reading_interval_min: float = setting(10.0, min=1.0, max=240.0, help="longer without a reading: a gap")
    escalate_after_min: float = setting(15.0, min=1.0, max=240.0, help="urgent: social worker if no ack by then")
    ask_first_min: float = setting(
        0.0,
        min=0.0,
        max=60.0,
        help="ask the resident first (chime + 'I'm OK' button): the family hears only without an answer by then",
    )
    ask_quiet_from: str = setting(
        "22:00", pattern=HH_MM, help="from this local time no question, and no chime for an info note (she sleeps)"
    )
    ask_quiet_until: str = setting("07:00", pattern=HH_MM, help="to this one (equal: the chime may ask at any hour)")
    ask_at_bedtime: bool = setting(
        False,
        help="also ask, in the ask_first_min before the quiet hours (or before the hour before her learned bedtime), "
        "about a silence her family would otherwise hear of in the night",
    )
    away_ends_on_use: bool = setting(True, help="water use ends away mode early (back from hospital)")

    def problems(self) -> list[str]:
        out = []
        if self.inactivity_urgent_h < self.inactivity_warning_h:
            out.append("inactivity_urgent_h must be >= inactivity_warning_h")
        if self.night_inactivity_urgent_h < self.night_inactivity_warning_h:
            out.append("night_inactivity_urgent_h must be >= night_inactivity_warning_h")
        if self.warning_max_h < self.warning_min_h:
            out.append("warning_max_h must be >= warning_min_h")
        if self.urgent_max_h < self.warning_max_h:
            out.append("urgent_max_h must be >= warning_max_h")
        if self.urgent_max_h < self.out_warning_h:
            out.append("urgent_max_h must be >= out_warning_h")
        if self.held_urgent_max_h < self.urgent_max_h:
            out.append("held_urgent_max_h must be >= urgent_max_h")
        if not minutes(self.morning_start) < minutes(self.morning_deadline) <= minutes(self.morning_latest):
            out.append("need morning_start < morning_deadline <= morning_latest")
        if self.history_days < self.learning_days:
            out.append("history_days must be >= learning_days")
        return out
