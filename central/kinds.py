"""Every event kind and role in words (Chinese first, then English); an alert's reasoning is central/reasons.py.

One place for what people read: the duty console gets it through ``GET /api/v1/catalogue`` and every alert view
(``title_zh``), the notifier writes its messages from it. A kind nobody named here is still shown, by its code,
and ``tests/test_console_kinds.py`` fails when the event catalogue has a kind without a name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from common.catalogue import CATALOGUE

# kind -> (zh, en): what people read; which kinds exist, who sends them and who is told is common/catalogue.py
KINDS: dict[str, tuple[str, str]] = {
    # the lift box
    "entrapment": ("电梯困人", "Passenger trapped in the lift"),
    "door_open_while_moving": ("运行中开门", "Door open while the car moves"),
    "stopped_outside_door_zone": ("门区外停梯", "Car stopped outside the door zone"),
    "door_held_open": ("长时间开门", "Door held open"),
    "alarm_button": ("轿厢警铃按下", "Alarm button pressed in the car"),
    "power_loss": ("电梯停电", "Lift power lost"),
    "sensor_fault": ("传感器故障", "Sensor fault"),
    "inspection_mode": ("检修模式", "Inspection mode"),
    # the water meter and the wellbeing watch
    "inactivity": ("长时间未用水", "No water used for a long time"),
    "missed_morning": ("早上未用水", "No water used this morning"),
    "continuous_flow": ("长时间持续用水", "Water running for a long time"),
    "low_daily_volume": ("当日用水过少", "Very little water used today"),
    "high_daily_volume": ("当日用水过多", "Much more water than usual today"),
    "leak_suspected": ("疑似漏水", "Suspected leak"),
    "meter_offline": ("水表无响应", "Meter not answering"),
    "meter_reset": ("水表读数回退", "Meter total went down (replaced or reset)"),
    "implausible_reading": ("水表读数异常", "Implausible meter reading"),
    "meter_health": ("水表通讯状况", "Meter communication health"),
    "meter_reading": ("水表读数", "Meter reading"),
    "wellbeing_fault": ("监护规则故障", "Wellbeing rules failed"),
    "home_device_fault": ("住户按钮或门磁故障", "A home's button or door contact is broken"),
    "wellbeing_profile": ("用水规律（每日）", "Daily water-use profile"),
    "check_in": ("询问居民是否安好", "The resident was asked 'are you OK?'"),
    "im_ok_pressed": ("按下“我很好”", "'I'm OK' pressed"),
    "going_out_pressed": ("按下“外出”", "'Going out' pressed (away mode)"),
    # the taxi kiosk
    "help_requested": ("叫车屏求助", "Help requested at the kiosk"),
    "kiosk_fault": ("叫车屏故障", "Kiosk fault"),
    "button_pressed": ("叫车按钮按下", "Kiosk button pressed"),
    "ride_requested": ("一键叫车", "Taxi requested"),
    "ride_assigned": ("司机已接单", "A driver accepted"),
    "ride_arrived": ("车已到达", "The taxi arrived"),
    "ride_no_car": ("无车可派", "No car"),
    "ride_cancelled": ("叫车已取消", "Ride cancelled"),
    "ride_resumed": ("叫车继续", "Ride resumed after a restart"),
    "ride_closed_while_down": ("离线时结束的叫车", "Ride closed while the kiosk was down"),
    "ride_late": ("车辆迟到", "The taxi is late"),
    "ride_expired": ("叫车过期", "Ride expired"),
    "ride_given_up": ("叫车放弃", "Ride given up"),
    "cancel_refused": ("取消被拒", "Cancel refused"),
    "central_unreachable": ("叫车屏连不上中心", "Kiosk cannot reach the central"),
    "central_reachable": ("叫车屏恢复连接", "Kiosk reaches the central again"),
    "central_error": ("中心回复错误", "The central answered with an error"),
    # any node
    "node_fault": ("设备故障", "Device fault"),
    "selftest": ("设备自检", "Self-test"),
    "outbox_dropped": ("设备丢弃了事件", "Events dropped on the device"),
    "outbox_corrupt": ("设备存储损坏", "Device storage damaged"),
    "outbox_resumed": ("设备存储恢复", "Device storage resumed"),
}
# the alerts the central raises itself (no node sends these: central/storage/alerts.py)
CENTRAL_KINDS: dict[str, tuple[str, str]] = {"node_silent": ("设备失联", "Node silent: nothing heard from it")}
KINDS |= CENTRAL_KINDS
# the console's views by the sender of each kind (common/catalogue.py)
GROUPS = {"elevator": "lift", "meter": "meter", "kiosk": "kiosk", "any": "node"}

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

# why a notification went (central/notify/plan.py's reasons): the message's first line and the console's timeline
DELIVERY_REASONS: dict[str, tuple[str, str]] = {
    "opened": ("新告警", "New alert"),
    "urgent": ("已升级为紧急", "Turned urgent"),
    "escalated": ("无人确认，通知社工", "Nobody acknowledged: escalated"),
    "resent": ("再次通知", "Sent again"),
    "cleared": ("现场已解除", "Over on site"),
    "resolved": ("已处理完毕", "Closed by a person"),
    "acknowledged": ("已有人确认", "Taken in by a person: the others told"),
}

# a lift entrapment has a 30-minute rescue arrival target (TSG T5002, REFERENCE.md)
TARGET_MINUTES: dict[str, int] = {"entrapment": 30}
# the nodes' roles in words (a node_silent alert names its node's)
NODE_ROLES: dict[str, str] = {"elevator": "电梯监测盒", "meter": "水表节点", "kiosk": "叫车屏"}
# what the central tells the desk of itself, not of an alert (central/notify/outage.py)
NOTICE_KINDS: dict[str, tuple[str, str]] = {"central_storage": ("中心存储", "The central's storage")}
# why the central cannot store (central/storage/health.py's reason codes): the console's banner, the desk's message
STORAGE_TROUBLE: dict[str, str] = {
    "disk_full": "磁盘已满",
    "read_only": "数据库变为只读",
    "damaged": "数据库文件损坏",
    "unreachable": "连不上数据库",
    "other": "数据库出错",
}


def kind_zh(kind: str) -> str:
    """The Chinese name of a kind, or the code itself for a kind nobody named."""
    return KINDS.get(kind, NOTICE_KINDS.get(kind, (kind, kind)))[0]


def kind_group(kind: str) -> str:
    """lift, meter, kiosk or node (the sender of the kind in the event catalogue; node for an unknown kind)."""
    entry = CATALOGUE.get(kind)
    return GROUPS[entry.sender] if entry else "node"


def role_zh(role: str) -> str:
    return ROLES.get(role, (role, role))[0]


def catalogue(sites: Mapping[str, str] | None = None, group_silent_min: int = 0) -> dict[str, Any]:
    """Everything the console names, for ``GET /api/v1/catalogue`` (``sites``: id -> display name;
    ``group_silent_min``: this many silent nodes of one site are one card, ``[notify] group_silent_min``)."""
    return {
        "sites": dict(sites or {}),
        "kinds": {k: {"zh": zh, "en": en, "group": kind_group(k)} for k, (zh, en) in KINDS.items()},
        "roles": {k: {"zh": zh, "en": en} for k, (zh, en) in ROLES.items()},
        "severities": {k: {"zh": zh, "en": en} for k, (zh, en) in SEVERITIES.items()},
        "alert_states": {k: {"zh": zh, "en": en} for k, (zh, en) in ALERT_STATES.items()},
        "ride_statuses": {k: {"zh": zh, "en": en} for k, (zh, en) in RIDE_STATUSES.items()},
        "delivery_reasons": {k: {"zh": zh, "en": en} for k, (zh, en) in DELIVERY_REASONS.items()},
        "targets_min": dict(TARGET_MINUTES),
        "node_roles": dict(NODE_ROLES),
        "storage_trouble": dict(STORAGE_TROUBLE),
        "group_silent_min": group_silent_min,
    }


def clock_text(t: float | None, tz_offset_s: int = 8 * 3600) -> str:
    """``12-04 16:43`` in Shanghai time (the messages' clock; the console shows the browser's)."""
    if t is None:
        return "—"
    return time.strftime("%m-%d %H:%M", time.gmtime(t + tz_offset_s))
