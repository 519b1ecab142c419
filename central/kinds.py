"""Every event kind and role in words (Chinese first, then English), and an alert's reasoning in words.

One place for what people read: the duty console gets it through ``GET /api/v1/catalogue`` and every alert view
(``title_zh``, ``reasons``), the notifier writes its messages from it. A kind nobody named here is still shown,
by its code, and ``tests/test_console_kinds.py`` fails when a node emits a kind that has no name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

# kind -> (zh, en, group); group picks the console's view: lift, meter, kiosk, node
KINDS: dict[str, tuple[str, str, str]] = {
    # the lift box (elevator_node/detector.py)
    "entrapment": ("电梯困人", "Passenger trapped in the lift", "lift"),
    "door_open_while_moving": ("运行中开门", "Door open while the car moves", "lift"),
    "stopped_outside_door_zone": ("门区外停梯", "Car stopped outside the door zone", "lift"),
    "door_held_open": ("长时间开门", "Door held open", "lift"),
    "alarm_button": ("轿厢警铃按下", "Alarm button pressed in the car", "lift"),
    "power_loss": ("电梯停电", "Lift power lost", "lift"),
    "sensor_fault": ("传感器故障", "Sensor fault", "lift"),
    "inspection_mode": ("检修模式", "Inspection mode", "lift"),
    # the water meter and the wellbeing watch (meter_node/)
    "inactivity": ("长时间未用水", "No water used for a long time", "meter"),
    "missed_morning": ("早上未用水", "No water used this morning", "meter"),
    "continuous_flow": ("长时间持续用水", "Water running for a long time", "meter"),
    "low_daily_volume": ("当日用水过少", "Very little water used today", "meter"),
    "high_daily_volume": ("当日用水过多", "Much more water than usual today", "meter"),
    "leak_suspected": ("疑似漏水", "Suspected leak", "meter"),
    "meter_offline": ("水表无响应", "Meter not answering", "meter"),
    "meter_reset": ("水表读数回退", "Meter total went down (replaced or reset)", "meter"),
    "implausible_reading": ("水表读数异常", "Implausible meter reading", "meter"),
    "meter_health": ("水表通讯状况", "Meter communication health", "meter"),
    "meter_reading": ("水表读数", "Meter reading", "meter"),
    "wellbeing_fault": ("监护规则故障", "Wellbeing rules failed", "meter"),
    "wellbeing_profile": ("用水规律（每日）", "Daily water-use profile", "meter"),
    "im_ok_pressed": ("按下“我很好”", "'I'm OK' pressed", "meter"),
    "away": ("外出模式", "Away mode", "meter"),
    # the taxi kiosk (kiosk/)
    "help_requested": ("叫车屏求助", "Help requested at the kiosk", "kiosk"),
    "kiosk_fault": ("叫车屏故障", "Kiosk fault", "kiosk"),
    "ride_requested": ("一键叫车", "Taxi requested", "kiosk"),
    # any node
    "node_fault": ("设备故障", "Device fault", "node"),
}

ROLES: dict[str, tuple[str, str]] = {
    "property_management": ("物业", "Property desk"),
    "maintenance": ("电梯维保", "Lift maintenance"),
    "family": ("家属", "Family"),
    "social_worker": ("社工", "Social worker"),
    "operator": ("社区值班", "Duty desk"),
}

SEVERITIES: dict[str, tuple[str, str]] = {
    "urgent": ("紧急", "Urgent"),
    "warning": ("警告", "Warning"),
    "info": ("提示", "Info"),
}

ALERT_STATES: dict[str, tuple[str, str]] = {
    "open": ("待处理", "Open"),
    "acknowledged": ("已确认", "Acknowledged"),
    "resolved": ("已解决", "Resolved"),
}

RIDE_STATUSES: dict[str, tuple[str, str]] = {
    "searching": ("正在找车", "Searching"),
    "assigned": ("司机已接单", "Driver on the way"),
    "arrived": ("车已到达", "Arrived"),
    "no_car": ("无车可派", "No car"),
    "cancelled": ("已取消", "Cancelled"),
}

# a lift entrapment has a 30-minute rescue arrival target (TSG T5002, REFERENCE.md)
TARGET_MINUTES: dict[str, int] = {"entrapment": 30}


def kind_zh(kind: str) -> str:
    """The Chinese name of a kind, or the code itself for a kind nobody named."""
    return KINDS.get(kind, (kind, kind, "node"))[0]


def kind_group(kind: str) -> str:
    return KINDS.get(kind, ("", "", "node"))[2]


def role_zh(role: str) -> str:
    return ROLES.get(role, (role, role))[0]


def catalogue() -> dict[str, Any]:
    """Everything the console names, for ``GET /api/v1/catalogue``."""
    return {
        "kinds": {k: {"zh": zh, "en": en, "group": g} for k, (zh, en, g) in KINDS.items()},
        "roles": {k: {"zh": zh, "en": en} for k, (zh, en) in ROLES.items()},
        "severities": {k: {"zh": zh, "en": en} for k, (zh, en) in SEVERITIES.items()},
        "alert_states": {k: {"zh": zh, "en": en} for k, (zh, en) in ALERT_STATES.items()},
        "ride_statuses": {k: {"zh": zh, "en": en} for k, (zh, en) in RIDE_STATUSES.items()},
        "targets_min": dict(TARGET_MINUTES),
    }


# ------------------------------------------------------------------------------------------------ reasoning
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _hours(value: Any) -> str | None:
    h = _num(value)
    if h is None:
        return None
    whole, minutes = int(h), round((h - int(h)) * 60)
    if minutes == 60:
        whole, minutes = whole + 1, 0
    return f"{whole} 小时 {minutes} 分" if whole else f"{minutes} 分钟"


def _seconds(value: Any) -> str | None:
    s = _num(value)
    if s is None:
        return None
    return f"{int(s // 60)} 分 {int(s % 60)} 秒" if s >= 60 else f"{int(s)} 秒"


def _lift(kind: str, p: Mapping[str, Any]) -> list[str]:
    out = []
    zone = p.get("in_door_zone")
    if kind == "entrapment":
        where = {True: "停在平层（门区内）", False: "停在两层之间（门区外）"}.get(zone, "是否平层不明")
        out.append(f"{p.get('label_zh') or '困人'}：轿厢{where}")
        if (t := _seconds(p.get("seconds_trapped"))) is not None:
            out.append(f"关门且有人、轿厢静止已 {t}（90 秒即报警）")
        out.append("救援人员应在 30 分钟内到达")
    elif (t := _seconds(p.get("seconds"))) is not None:
        out.append(f"已持续 {t}")
    if kind != "entrapment" and zone is not None:
        out.append("在门区内" if zone else "在门区外")
    if _num(p.get("presses")):
        out.append(f"警铃按了 {int(p['presses'])} 次")
    if p.get("timing") == "lower_bound":
        out.append("节点重启过：实际时间可能更长")
    return out


def _meter(kind: str, p: Mapping[str, Any]) -> list[str]:
    out = []
    if (h := _hours(p.get("silence_h"))) is not None:
        out.append(f"已 {h} 没有用水")
    if p.get("last_use"):
        out.append(f"最后一次用水：{p['last_use']}")
    if (h := _hours(p.get("warning_after_h"))) is not None:
        limit = f"超过 {h} 未用水即提醒"
        if (u := _hours(p.get("urgent_after_h"))) is not None:
            limit += f"，超过 {u} 为紧急"
        out.append(limit + ("（按本户习惯学得）" if p.get("adaptive") else "（固定阈值）"))
    if p.get("deadline"):
        out.append(f"平时此前会用水，截止 {p['deadline']} 仍未用水")
    if _num(p.get("flow_minutes")) is not None:
        out.append(f"水已连续流了 {p['flow_minutes']} 分钟，共 {p.get('litres', '?')} 升")
    if _num(p.get("day_litres")) is not None:
        usual = p.get("usual_litres")
        out.append(f"当日用水 {p['day_litres']} 升" + (f"，平时约 {usual} 升" if usual is not None else ""))
    if p.get("reason") == "lone_pulses":
        out.append("只有零星脉冲（可能是漏水或表的杂讯），不算有人用水")
    if p.get("error"):
        out.append(f"错误：{p['error']}")
    return out


def reasons(kind: str, payload: Mapping[str, Any] | Any) -> list[str]:
    """Why this alert was raised, in short Chinese sentences, from its payload (what the node measured)."""
    p = payload if isinstance(payload, Mapping) else {}
    group = kind_group(kind)
    out = _lift(kind, p) if group == "lift" else _meter(kind, p) if group == "meter" else []
    if p.get("resident") and group == "meter":
        out.insert(0, f"住户 {p['resident']}")
    if not out:  # a kind without its own words: say what the node sent, plainly
        out = [f"{k}：{v}" for k, v in p.items() if isinstance(v, str | int | float) and not isinstance(v, bool)][:6]
    return out


def clock_text(t: float | None, tz_offset_s: int = 8 * 3600) -> str:
    """``12-04 16:43`` in Shanghai time (the messages' clock; the console shows the browser's)."""
    if t is None:
        return "—"
    return time.strftime("%m-%d %H:%M", time.gmtime(t + tz_offset_s))
