"""Who an alert reaches and when: recipient roles at once, the held-back roles when nobody acknowledges in time.

Pure: ``notifications(alert, now, escalation)`` reads only its arguments, so the schedule is the same whether
it is computed when alerts are read or by a background notifier.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from central.config import EscalationSection


def escalation_delay(payload: Mapping[str, Any], escalation: EscalationSection) -> float:
    """``escalate_after_s`` from the event payload when it is a positive number, else the config default."""
    value = payload.get("escalate_after_s")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return escalation.after_s


def notifications(
    *,
    severity: str,
    recipients: Sequence[str],
    payload: Mapping[str, Any],
    opened_at: float,
    handled_at: float | None,
    now: float,
    escalation: EscalationSection,
    urgent_at: float | None = None,
) -> dict[str, Any]:
    """The notification schedule of one alert occurrence.

    ``handled_at`` is when an operator first acknowledged or resolved it, or the node reported it over on site
    (None: not yet). An urgent alert
    escalates when it names a held-back role (``escalation.later_roles``, e.g. the social worker) or carries
    ``escalate_after_s``: the other roles (e.g. family) are notified at ``opened_at``, the held-back roles at
    ``urgent_at + delay`` unless it was handled before then (``urgent_at``: when the alert turned urgent, from
    its log; ``opened_at`` when not given). Everything else notifies every role at once.

    Returns ``{"notified": [{"role", "at"}], "escalation": None | {"after_s", "due_at", "roles", "state"}}``
    with state ``pending``, ``escalated`` or ``not_needed``.
    """
    roles = list(dict.fromkeys(recipients))
    wants = severity == "urgent" and (any(r in escalation.later_roles for r in roles) or "escalate_after_s" in payload)
    later = [r for r in escalation.later_roles if r in roles or "escalate_after_s" in payload]
    first = [r for r in roles if r not in later]
    if not wants or not first or not later:
        return {"notified": [{"role": r, "at": opened_at} for r in roles], "escalation": None}
    after_s = escalation_delay(payload, escalation)
    due_at = max(opened_at, urgent_at or opened_at) + after_s
    notified = [{"role": r, "at": opened_at} for r in first]
    if handled_at is not None and handled_at <= due_at:
        state = "not_needed"
    elif now >= due_at:
        state = "escalated"
        notified += [{"role": r, "at": due_at} for r in later]
    else:
        state = "pending"
    return {
        "notified": notified,
        "escalation": {"after_s": after_s, "due_at": due_at, "roles": later, "state": state},
    }
