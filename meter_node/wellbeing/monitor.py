"""``WellbeingMonitor``: one household's meter totals through the shared timeline and the rules; pure.

Fed every poll (``update(now, total_litres)``, ``None`` for a failed read), plus the home's inputs (``acknowledge``,
``door``, ``going_out``, ``set_away``). It never reads a clock or sleeps. Its whole state is one ``WellbeingState``
(``state()`` / ``WellbeingMonitor(settings, tz, state)``). What is open is the alert book's: the monitor
remembers only the severity it last reported per kind (and when a reported silence began), to say raised, updated
or cleared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from common import statefile
from common.catalogue import SEVERITY_RANK, Severity, State
from common.clock import to_epoch, within_hours
from common.events import Detection
from meter_node.wellbeing.model import Thresholds, fit
from meter_node.wellbeing.night import morning_deadline_s
from meter_node.wellbeing.rules import RULES, Finding, SilenceRule, known_out
from meter_node.wellbeing.settings import WellbeingSettings, minutes
from meter_node.wellbeing.state import MIGRATIONS, VERSION, WellbeingState
from meter_node.wellbeing.timeline import HOUR, Timeline

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
PROFILE_KIND = "wellbeing_profile"
# asking the resident first (ask_first_min): "are you OK?" in the home before the family hears of a silence
CHECK_IN_KIND = "check_in"
ASKED_KINDS: tuple[str, ...] = ("inactivity", "missed_morning")  # what an "I'm OK" answers (not a low day)
_CLEARED_BY = {"inactivity": "use", "missed_morning": "day_end"}


class WellbeingMonitor:
    """The wellbeing rules for one household's meter. Pure: never reads a clock, never sleeps.

    Time is wall time (an aware datetime or Unix seconds) because the rules are about local time of day.
    """

    def __init__(
        self, settings: WellbeingSettings, tz: str | tzinfo, state: Mapping[str, Any] | None = None, *, key: str = ""
    ) -> None:
        self.settings = settings
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.key = key
        self.data = WellbeingState() if state is None else statefile.load(WellbeingState, state, VERSION, MIGRATIONS)
        self.timeline = Timeline(self.data, settings, self.tz)
        self._next_check = -math.inf
        self._fits: dict[bool, Thresholds | None] = {}
        self._usual: dict[int, float | None] = {}  # worked out once a day
        self._window: tuple[float, float] | None = None  # the bedtime question's, until it closes or a day closes
        self._reason: str | None = None  # why findings clear now ("acknowledged", "door"...), for the payload
        # kinds open in the alert book that this monitor did not see raised (its state was lost): they clear
        # only after a sign of life newer than the first one it saw (see adopt_open)
        self._unseen: set[str] = set()
        self._unseen_anchor: float | None = None

    # --------------------------------------------------------------------------------------------- inputs
    def update(self, now: datetime | float, total_litres: float | None) -> list[Detection]:
        """One poll. ``total_litres`` None is a failed read: it is neither use nor silence."""
        t = to_epoch(now)
        s = self.data
        if total_litres is None or not math.isfinite(float(total_litres)):
            if t < self._next_check or s.last_t is None:
                return []
            return self._evaluate(t)
        total = float(total_litres)
        if s.last_t is None:
            self.timeline.start(t, total)
            return []
        dt = t - s.last_t
        if dt <= 0:  # a repeated or out-of-order row says nothing new
            return []
        if total == s.last_total and t < self._next_check and dt <= self.timeline.max_interval:
            s.last_t = t  # the fast path: nothing flowed and no deadline is due
            return []
        away = s.away_until is not None
        self.timeline.feed(t, total)
        run = s.run
        if away and run is not None and self.settings.away_ends_on_use and run.litres >= 5 * self.timeline.use_min():
            self.timeline.end_away(t)  # someone is home
        return self._evaluate(t)

    def acknowledge(self, now: datetime | float) -> list[Detection]:
        """The resident (or family) said "I'm OK": a sign of life. Clears inactivity and missed_morning, and takes
        a continuous-flow alert down to info (the tap may be running on purpose), restarting its clock."""
        t = to_epoch(now)
        # a press within ask_first_min of the node's question answers it (even after water that ended the silence)
        asked = self.data.ask_t
        answer = asked is not None and 0.0 <= t - asked <= self.ask_s
        self.timeline.life(t, answer=answer)  # an answer teaches nothing
        if self.data.run is not None:
            self.data.run.ack = t
        return self._evaluate(t, reason="acknowledged")

    def door(self, now: datetime | float) -> list[Detection]:
        """The flat's door contact moved: a sign of life. Without water within ``door_out_min`` the resident is
        taken to be out (the outer limits apply) until water or the door again says they are back."""
        t = to_epoch(now)
        s = self.data
        # every move within door_out_min of the away button is her leaving (the door opens, then shuts behind her)
        leaving = s.out_since is not None and t - s.out_since < self.settings.door_out_min * 60
        back = s.out_since is not None and not leaving
        self.timeline.life(t, door=True)
        s.out_since, s.door_t = (None, None) if back else (s.out_since, t)
        return self._evaluate(t, reason="door")

    def going_out(self, now: datetime | float) -> list[Detection]:
        """The away button: the resident is going out now (back on the next water use or door event)."""
        t = to_epoch(now)
        self.timeline.life(t, door=True)
        self.data.out_since = t
        return self._evaluate(t, reason="going_out")

    def set_away(self, until: datetime | float | None, now: datetime | float | None = None) -> list[Detection]:
        """Away / in hospital until ``until`` (None: back home now). Person alerts are suppressed and the open
        ones cleared; flow and leak alerts go on (water running in an empty flat matters)."""
        s = self.data
        t = to_epoch(now) if now is not None else (s.last_t or 0.0)
        if until is None:
            if s.away_until is not None:
                self.timeline.end_away(t)
        else:
            s.away_until = to_epoch(until)
        if s.last_t is None:
            return []
        return self._evaluate(t, reason="away")

    @property
    def away_until(self) -> float | None:
        return self.data.away_until

    def open_incidents(self) -> dict[str, Severity]:
        """kind -> severity this monitor last reported (the alert book keeps the incidents themselves)."""
        return dict(self.data.reported)

    def adopt_open(self, open_alerts: Mapping[str, tuple[Severity, float]]) -> None:
        """What the alert book holds open for this household (kind -> (severity, wall time raised)), taken at
        start: the book owns the incidents, so a monitor whose saved state is older than the book, lost or damaged
        still escalates and clears them.

        An alert this monitor's state did not hold (saved before the raise, or lost), or a person alert raised
        before the monitor's last sign of life (its watching began after the silence did), may stand for a
        silence it cannot see whole: it is kept until a sign of life newer than the first one this monitor sees."""
        s = self.data
        unseen = {
            kind
            for kind, (_, raised) in open_alerts.items()
            if kind not in s.reported or (kind in PERSON_KINDS and s.anchor > raised)
        }
        s.reported = {kind: open_alerts[kind][0] for kind in KINDS if kind in open_alerts}
        self._unseen = unseen & set(s.reported)

    def take_over(self, told: Mapping[str, Severity], now: datetime | float, reason: str) -> list[Detection]:
        """Stand in for a monitor of the same household that told the family ``told`` (kind -> severity): this one
        saw the same inputs dated anew (meter_node/clock_frame.py). What it finds at ``now`` and was not told is
        raised, what was told and it does not find is cleared with ``reason``."""
        s = self.data
        s.reported_since = {k: v for k, v in s.reported_since.items() if k in told}
        s.reported = {kind: told[kind] for kind in KINDS if kind in told}
        return [] if s.last_t is None else self._evaluate(to_epoch(now), reason)

    def state(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as plain JSON-ready data."""
        return statefile.dump(self.data, VERSION)

    # ------------------------------------------------------------------------------------ what is learned
    def thresholds(self, paired: bool) -> Thresholds | None:
        """The learned thresholds (None until ``learning_days`` valid days, or with ``adaptive = false``)."""
        if paired not in self._fits:
            cfg = self.settings
            days = self.timeline.valid_days()
            if not self.timeline.learned():
                self._fits[paired] = None
            elif paired:
                budget = cfg.coarse_warning_budget_per_month
                self._fits[paired] = fit(self.data.paired_silences, days, self.tz, cfg, budget, with_morning=False)
            else:
                self._fits[paired] = fit(self.data.silences, days, self.tz, cfg, cfg.warning_budget_per_month)
        return self._fits[paired]

    def usual_daily(self, exclude_last: int = 0) -> float | None:
        """The median daily volume of the whole observed days (before the last ``exclude_last``)."""
        if exclude_last not in self._usual:
            cfg = self.settings
            history = self.data.history[: max(0, len(self.data.history) - exclude_last)]
            days = [d for d in history if not d.away and d.coverage >= 0.9][-2 * cfg.history_days :]
            volumes = sorted(d.volume for d in days)
            usual = round(volumes[len(volumes) // 2], 1) if len(days) >= cfg.learning_days else None
            self._usual[exclude_last] = usual
        return self._usual[exclude_last]

    def profile(self) -> dict[str, Any]:
        """What has been learned and how well this home can be watched (the profile event's payload)."""
        s, tl = self.data, self.timeline
        learned = self.thresholds(False)
        usual_run = tl.usual_run()
        out: dict[str, Any] = {
            "learned_days": len(tl.valid_days()),
            "adaptive": learned is not None,
            "base_flow_lph": round(s.base_lph, 3),
            "usual_daily_litres": self.usual_daily(),
            "usual_longest_flow_min": round(usual_run / 60.0, 1) if usual_run else None,
            "morning_deadline_s": morning_deadline_s(tl.valid_days(), self.settings) if learned else None,
            "resolution_l": round(s.resolution, 3) or None,
            "warning_budget_per_month": self.settings.warning_budget_per_month,
            "urgent_budget_per_month": self.settings.urgent_budget_per_month,
        }
        if learned is not None:
            out.update(
                expected_false_warnings_per_month=learned.expected_warnings,
                expected_false_urgent_per_month=learned.expected_urgent,
                expected_false_warnings_past_limits=learned.floor_warnings,
                detect_h=learned.detect_h,
                detect_urgent_h=learned.detect_urgent_h,
                watchable=learned.watchable,
            )
        return out

    def _life_since_adopted(self, kind: str) -> bool:
        """False while ``kind`` was adopted without state and no new sign of life came since (``adopt_open``)."""
        if kind not in self._unseen:
            return True
        if self._unseen_anchor is None:
            self._unseen_anchor = self.data.anchor
        if self.data.anchor <= self._unseen_anchor:
            return False
        self._unseen.discard(kind)
        return True

    # -------------------------------------------------------------------------------------------- judging
    def _evaluate(self, t: float, reason: str | None = None) -> list[Detection]:
        s, tl = self.data, self.timeline
        assert s.last_t is not None and s.day is not None
        if t > s.last_t:
            tl.roll(t)
        out: list[Detection] = []
        if tl.closed:  # a new day: learn again, and say what is learned (once, however many days closed)
            self._fits, self._usual, self._window = {}, {}, None
            tl.closed = []
            out.append(Detection(PROFILE_KIND, "observed", s.day.start_t, "info", self.profile(), self.key))
        seen_t = min(t, s.last_t + tl.max_interval)  # an ongoing gap: time stops counting
        if s.door_t is not None and s.out_since is None and seen_t - s.door_t >= self.settings.door_out_min * 60:
            s.out_since = s.door_t
        next_check = min(s.day.end_t, (t // HOUR + 1) * HOUR, s.away_until or math.inf)
        found: dict[str, Finding] = {}
        soon: dict[str, float] = {}  # kinds told to the family within ask_first_min, and when (ask the resident now)
        lead = self.ask_s
        if self._window is None or t >= self._window[0] + lead:
            self._window = self._bedtime(t)  # worked out once a window, not on every reading with water
        opens, ends = self._window
        night = ends - t if opens <= t else 0.0  # the bedtime question's window: look ahead to the quiet hours' end
        for rule in RULES:
            if isinstance(rule, SilenceRule) and rule.paired and not tl.coarse():
                continue
            finding, due = rule.assess(self, t, seen_t)
            if lead > 0 and rule.kind in ASKED_KINDS and self._untold(rule.kind):
                ahead, _ = rule.assess(self, t + lead, seen_t + lead)  # rules are pure: a look ahead
                if ahead is not None and ahead.severity != "info":
                    soon[rule.kind] = min(due, soon.get(rule.kind, math.inf))
                elif night > 0 and isinstance(rule, SilenceRule) and (at := rule.warned_at(self, seen_t, night)):
                    soon[rule.kind] = min(at, soon.get(rule.kind, math.inf))  # else told in her sleep: ask her now
                due -= lead  # look again when the question has to be asked
            next_check = min(next_check, due)
            held = found.get(rule.kind)
            if finding is not None and (held is None or SEVERITY_RANK[finding.severity] > SEVERITY_RANK[held.severity]):
                found[rule.kind] = finding
        self._reason = reason
        quiet_end = self.quiet_until(t) if soon else None
        if quiet_end is not None:
            next_check = min(next_check, quiet_end)  # ask when the quiet hours end, if the alert is not due by then
        next_check = min(next_check, opens if opens > t else math.inf)
        unheard = quiet_end is not None or known_out(self, seen_t)  # asleep, or nobody at home to hear it
        out += self._ask_first(t, found, soon, unheard) + self._report(t, found)
        if s.last_t + tl.max_interval > t:
            next_check = min(next_check, s.last_t + tl.max_interval + 1.0)
        self._next_check = next_check
        return out

    def _ask_first(self, t: float, found: dict[str, Finding], soon: dict[str, float], unheard: bool) -> list[Detection]:
        """With ``ask_first_min``, a silence about to be told to the family is first a question to the resident: a
        ``check_in`` event (the node chimes and asks for the "I'm OK" button) ``ask_first_min`` before a person
        alert would reach warning (``soon``: from nothing, or from the morning's info note). An answer, or water,
        ends the silence before the alert is due and nothing is sent; without one the alert goes out when it is
        due, exactly as without asking (nothing is held back). Asked once per silence (after a bedtime question, once
        more before the alert); an alert due before it could be asked (a gap's silence counted when the readings came
        back) is told at once, unasked. Nobody is asked in the quiet hours (she is not woken: asked when they end, or
        told unasked if the alert is due before) or when she is known to be out (``unheard``)."""
        s = self.data
        due = [k for k in ASKED_KINDS if k in found and found[k].severity != "info" and self._untold(k)]
        if due or not soon or self.ask_s <= 0:
            s.asking = False  # told now, the silence ended, or away: a press from here on is an ordinary "I'm OK"
            return []
        # asked already in this silence; but a bedtime question long before this alert, unanswered while nobody has
        # been told, does not count: she is asked again before the alert itself (outside the quiet hours)
        again = s.ask_t is not None and min(soon.values()) - s.ask_t > self.ask_s + 60.0
        if s.asking or (s.ask_t is not None and s.anchor <= s.ask_t and not (again and self._untold_all())):
            return []
        if unheard:
            return []
        s.ask_t, s.asking = t, True
        kind = min(soon, key=lambda k: (soon[k], k))
        until = max(0.0, soon[kind] - t)  # when the alert would go out without an answer
        payload = {"asked_for": kind, "answer_within_s": round(min(self.ask_s, until)), "alert_due_s": round(until)}
        return [Detection(CHECK_IN_KIND, "observed", t, "info", payload, self.key)]

    def quiet_until(self, t: float) -> float | None:
        """When the quiet hours around ``t`` end (``ask_quiet_from`` to ``ask_quiet_until``, local time: the node does
        not chime), or None when ``t`` is outside them."""
        cfg, at = self.settings, datetime.fromtimestamp(t, self.tz)
        if not within_hours(at.time(), cfg.ask_quiet_from, cfg.ask_quiet_until):
            return None
        end = minutes(cfg.ask_quiet_until)
        ends = at.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
        return (ends if ends > at else ends + timedelta(days=1)).timestamp()

    def _bedtime(self, t: float) -> tuple[float, float]:
        """The bedtime question (``ask_at_bedtime``): when its ``ask_first_min`` window opens, for the window open
        at ``t`` or the next one, and when the quiet hours after it end; (inf, inf) without one. The window closes
        as the quiet hours begin, or an hour before the usual start of her night's silence if that is sooner, so she
        is asked while she is up."""
        cfg, lead = self.settings, self.ask_s
        if lead <= 0 or not cfg.ask_at_bedtime or cfg.ask_quiet_from == cfg.ask_quiet_until:
            return math.inf, math.inf
        quiet = minutes(cfg.ask_quiet_from) * 60.0
        quiet += 24 * HOUR if quiet < 12 * HOUR else 0.0  # quiet hours from after midnight belong to the evening before
        learned = self.thresholds(False)
        close = quiet if learned is None or learned.bed_s is None else min(quiet, learned.bed_s - HOUR)
        midnight = datetime.fromtimestamp(t, self.tz).replace(hour=0, minute=0, second=0, microsecond=0)
        for evening in (midnight + timedelta(days=d) for d in (-1, 0, 1)):
            opens = (evening + timedelta(seconds=close - lead)).timestamp()
            ends = self.quiet_until((evening + timedelta(seconds=quiet)).timestamp())
            if opens + lead > t and ends is not None:
                return opens, ends
        return math.inf, math.inf

    @property
    def ask_s(self) -> float:
        """Seconds between the question and the alert it comes before (``ask_first_min``; 0: not asked)."""
        return self.settings.ask_first_min * 60.0

    def _untold_all(self) -> bool:
        return all(self._untold(k) for k in ASKED_KINDS)

    def _untold(self, kind: str) -> bool:
        """The family has not been told of ``kind`` yet (nothing open, or only the morning's info note)."""
        return self.data.reported.get(kind, "info") == "info"

    def _report(self, t: float, found: dict[str, Finding]) -> list[Detection]:
        """Changes of the findings as detections: raised, updated when the severity rises (or an "I'm OK" takes
        it down), cleared when a finding is gone. A newer silence passing its warning threshold while an older
        one's warning is open is a new incident: the open one is cleared (``superseded``) and the new one raised,
        so the family is told again (on a coarse meter the lone pulses' warning may be open when the resident's
        own last use is followed by a fall; an update of the open alert would reach the console but message
        nobody). An open urgent alert is not raised again this way: someone is already on their way."""
        s = self.data
        out: list[Detection] = []
        for kind in KINDS:
            finding, held = found.get(kind), s.reported.get(kind)
            if finding is not None:
                self._unseen.discard(kind)  # this monitor sees the incident itself now
            if finding is None:
                if held is not None and self._life_since_adopted(kind):
                    del s.reported[kind]
                    s.reported_since.pop(kind, None)
                    cause = "use" if kind == "missed_morning" and s.day and s.day.first_use else None
                    body: dict[str, Any] = {"reason": self._reason or cause or _CLEARED_BY.get(kind, "ended")}
                    out.append(Detection(kind, "cleared", t, held, body, self.key))
                continue
            said = s.reported_since.get(kind)
            newer = finding.since is not None and said is not None and finding.since > said
            if newer and held == finding.severity == "warning":  # a newer silence past its warning: told afresh
                out.append(Detection(kind, "cleared", t, held, {"reason": "superseded"}, self.key))
                held = None
            higher = held is not None and SEVERITY_RANK[finding.severity] > SEVERITY_RANK[held]
            if finding.since is not None and (held is None or said is None or (newer and higher)):
                s.reported_since[kind] = finding.since  # none yet (an older state, an adopted alert): this one
            if held is not None and finding.severity == held:
                continue
            if held is not None and SEVERITY_RANK[finding.severity] < SEVERITY_RANK[held] and not finding.lower:
                continue  # only an "I'm OK" takes a severity down; a threshold moving with the day does not
            body = dict(finding.payload)
            if finding.severity == "urgent":
                body["escalate_after_s"] = round(self.settings.escalate_after_min * 60.0)
            s.reported[kind] = finding.severity
            state: State = "raised" if held is None else "updated"
            out.append(Detection(kind, state, t, finding.severity, body, self.key))
        return out
