"""An alert's reasoning in short Chinese sentences, from its payload: the ``reasons`` of every alert view (the duty
console's card and alert page) and the lines of every message (central/notify/message.py).

Every alert kind that tells somebody has its own words here (tests/test_console_kinds.py fails otherwise): what
happened, with the node's figures, and what it stops or what to check. Only a kind nobody named falls back to the
payload's fields as they came.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from central.kinds import CENTRAL_KINDS, NODE_ROLES, RIDE_STATUSES, clock_text, kind_group
from common.catalogue import ALERT_FIELDS

# what stops while a node of a role is silent (a node_silent alert names its node's role)
SILENT_STAKES: dict[str, str] = {
    "elevator": "失联期间这台电梯的困人和故障报警无法自动送出",
    "meter": "失联期间这个节点看护的独居住户的用水提醒无法送出",
    "kiosk": "失联期间老人无法在这台叫车屏叫车",
}
# the lift box's inputs (elevator_node/detector.py) and what a broken one costs
LIFT_INPUTS: dict[str, str] = {
    "door": "门信号",
    "occupancy": "人体感应器",
    "moving": "运行信号",
    "level_zone": "平层信号",
    "power": "电源信号",
    "inspection": "检修信号",
}
TRAPPED_BLIND = "这个信号不可靠时，困人报警可能不准：请尽快检修"
RESCUE_TARGET = "救援人员应在 30 分钟内到达"
# lines true only while the condition lasts: not said of one over on site
WHILE_IT_LASTS = frozenset({TRAPPED_BLIND, RESCUE_TARGET})
# the kiosk's parts (kiosk/node.py ``fault``) and what still works without each
KIOSK_PARTS: dict[str, tuple[str, str]] = {
    "gpio": ("实体按钮和指示灯", "触摸屏仍可叫车"),
    "screen": ("屏幕", "按钮仍可叫车，语音照常提示"),
    "font": ("中文字体", "屏幕文字可能显示成别的字形"),
}
# what the kiosk's screen showed when help was asked: the ride statuses the central names, and the kiosk's own
KIOSK_OWN_STATES = {
    "idle": "没有在叫车",
    "requesting": "正在发出叫车",
    "car_late": "车辆已迟到",
    "offline": "连不上中心",
    "error": "叫车出错",
}
# a home's own inputs (meter_node/home_devices.py)
HOME_DEVICES: dict[str, str] = {"ok_button": "“我很好”按钮", "away_button": "“外出”按钮", "door": "门磁"}
# why a node cleared an alert (its cleared event's ``reason``): elevator_node/detector.py, the wellbeing monitor
CLEARED_WHY: dict[str, str] = {
    "vacant": "轿厢里已感应不到人",
    "door_opened": "轿厢门已打开",
    "inspection": "电梯转入检修模式，报警规则暂停",
    "door_closed": "门已关上",
    "stopped": "轿厢已停下",
    "moving": "轿厢又开始运行",
    "in_door_zone": "轿厢已回到平层",
    "door_changed": "门信号又有变化",
    "occupancy_seen": "人体感应器又感应到人",
    "occupancy_off": "人体感应器已复位",
    "inspection_off": "检修信号已复位",
    "quiet": "信号已稳定",
    "use": "又用水了",
    "acknowledged": "住户按了“我很好”",
    "door": "家门的门磁有了动静",
    "going_out": "住户按了“外出”",
    "away": "已设为外出或住院（暂停看护）",
    "day_end": "这一天已过去",
    "superseded": "之后又有一段更长的未用水，另发了提醒",
    "exception_storm_over": "程序已恢复正常运行",
}
# where a silence's thresholds come from (meter_node/wellbeing/rules.py ``limits``)
THRESHOLDS: dict[str, str] = {"learned": "（按本户习惯学得）", "fixed": "（固定阈值）", "out": "（住户外出时的阈值）"}
# a meter's read errors (hal/modbus.py) in the words of the technician who checks the RS-485 bus
READ_ERRORS: dict[str, str] = {
    "no_response": "无应答",
    "crc": "校验错",
    "short_frame": "报文不全",
    "wrong_responder": "别的表应答",
    "slave_exception": "表报错",
    "port_error": "串口错误",
    "modbus_error": "通讯错误",
}


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


def _span(seconds: Any) -> str | None:
    """Seconds as hours and minutes (a long span: a silence, a stuck input)."""
    s = _num(seconds)
    return None if s is None else _hours(s / 3600)


def _local(text: Any) -> str:
    """A node's local time (ISO 8601 with its offset, meter_node ``iso_local``) as ``11-23 08:40``, as people read
    it; anything else as it came."""
    try:
        return datetime.fromisoformat(str(text)).strftime("%m-%d %H:%M")
    except ValueError:
        return str(text)


def _detail(p: Mapping[str, Any], field: str) -> list[str]:
    """The node's own words for a fault (an exception's text), for the technician: as sent, marked as such."""
    text = p.get(field)
    return [f"技术细节：{text}"] if isinstance(text, str) and text else []


def _lift(kind: str, p: Mapping[str, Any]) -> list[str]:
    if kind == "sensor_fault":
        return _sensor(p)
    out = []
    zone = p.get("in_door_zone")
    if kind == "entrapment":
        places: dict[Any, str] = {True: "停在平层（门区内）", False: "停在两层之间（门区外）"}
        where = places.get(zone, "是否平层不明")
        out.append(f"{p.get('label_zh') or '困人'}：轿厢{where}")
        if (t := _seconds(p.get("seconds_trapped"))) is not None:
            out.append(f"关门且有人、轿厢静止已 {t}（90 秒即报警）")
        out.append(RESCUE_TARGET)
    elif (t := _seconds(p.get("seconds"))) is not None:
        out.append(f"已持续 {t}")
    if kind != "entrapment" and zone is not None:
        out.append("在门区内" if zone else "在门区外")
    if _num(p.get("presses")):
        out.append(f"警铃按了 {int(p['presses'])} 次")
    if p.get("timing") == "lower_bound":
        out.append("节点重启过：实际时间可能更长")
    return out


def _sensor(p: Mapping[str, Any]) -> list[str]:
    """sensor_fault: which input, how it misbehaves (elevator_node/detector.py), what that costs."""
    name = str(p.get("input") or "")
    what = LIFT_INPUTS.get(name, f"输入“{name}”" if name else "某个输入")
    fault = p.get("fault")
    if fault == "flapping":
        changes, window = _num(p.get("changes")), _seconds(p.get("window_s"))
        line = f"{what}反复跳变" + (f"：{window}内变了 {int(changes)} 次" if changes and window else "")
        out = [line + "（接线松动或开关损坏）"]
    elif fault == "stuck":
        out = [f"{what}已 {_span(p.get('unchanged_s')) or '很久'} 没有变化"]
        if (moves := _num(p.get("car_moves"))) is not None:
            out[0] += f"，其间轿厢运行了 {int(moves)} 次"
    elif fault == "silent":
        openings = _num(p.get("door_openings"))
        out = [f"连续 {int(openings or 0)} 次开关门都没有感应到人（感应器可能失灵）"]
    elif fault == "stuck_on":
        if name == "inspection":
            out = [f"检修信号已持续 {_span(p.get('on_s')) or '很久'}：检修结束后可能忘了复位，其间报警规则暂停"]
        else:
            openings = _num(p.get("door_openings"))
            out = [f"连续 {int(openings or 0)} 次开关门{what}都显示有人（感应器可能卡住）"]
    else:
        out = [f"{what}不可靠"]
    if name in ("door", "occupancy", "moving"):
        out.append(TRAPPED_BLIND)
    return out


def _meter(kind: str, p: Mapping[str, Any]) -> list[str]:
    if kind == "meter_offline":
        return _offline(p)
    if kind == "home_device_fault":
        device = HOME_DEVICES.get(str(p.get("device")), "按钮或门磁")
        who = f"住户 {p['resident']} 的" if p.get("resident") else ""
        return [f"{who}{device}无法使用", "这户的用水看护照常进行", *_detail(p, "reason")]
    out = []
    if (h := _hours(p.get("silence_h"))) is not None:
        out.append(f"已 {h} 没有用水")
    if p.get("last_use"):
        out.append(f"最后一次用水：{_local(p['last_use'])}")
    if (h := _hours(p.get("warning_after_h"))) is not None:
        limit = f"超过 {h} 未用水即提醒"
        if (u := _hours(p.get("urgent_after_h"))) is not None:
            limit += f"，超过 {u} 为紧急"
        out.append(limit + THRESHOLDS.get(str(p.get("thresholds")), ""))
    if p.get("deadline"):
        out.append(f"平时此前会用水，截止 {p['deadline']} 仍未用水")
    if _num(p.get("flow_minutes")) is not None:
        out.append(f"水已连续流了 {p['flow_minutes']} 分钟，共 {p.get('litres', '?')} 升")
    if _num(p.get("day_litres")) is not None:
        usual = p.get("usual_litres")
        out.append(f"当日用水 {p['day_litres']} 升" + (f"，平时约 {usual} 升" if usual is not None else ""))
    if (flow := _num(p.get("base_flow_lph"))) is not None:
        out.append(f"用水停下时仍有约 {flow:g} 升/小时的水流（滴水的龙头或漏水的马桶水箱）")
    if p.get("reason") == "lone_pulses":
        pulse = f"（最近一次 {_local(p['last_pulse'])}）" if p.get("last_pulse") else ""
        out.append(f"之后只有零星脉冲{pulse}：可能是漏水或表的杂讯，不算有人用水")
    if kind == "wellbeing_fault":
        out += ["这一户的用水看护规则出错：在恢复前这户无人看护，请尽快处理", *_detail(p, "error")]
    elif p.get("error"):
        out.append(f"错误：{p['error']}")
    return out


def _offline(p: Mapping[str, Any]) -> list[str]:
    """meter_offline: which meter, for how long, which errors the bus gave (hal/modbus.py)."""
    meter = p.get("meter_id") or "?"
    out = [f"水表 {meter} 已 {_span(p.get('silent_s')) or '一段时间'} 没有读到数"]
    errors = [f"{zh} {int(n)} 次" for field, zh in READ_ERRORS.items() if (n := _num(p.get(field)))]
    if errors:
        out.append("读表出错：" + "，".join(errors))
    if (resets := _num(p.get("resets"))) is not None and resets:
        out.append(f"已重新打开串口 {int(resets)} 次")
    if errors or resets:
        out.append("请检查这块表的电源和 RS-485 接线；在恢复前这户的用水看护暂停")
    return out


def _kiosk(kind: str, p: Mapping[str, Any]) -> list[str]:
    if kind == "kiosk_fault":
        part, works = KIOSK_PARTS.get(str(p.get("part")), ("某个部件", ""))
        return [f"叫车屏的{part}坏了", *([works] if works else []), *_detail(p, "reason")]
    if kind != "help_requested":
        return []
    how = "长按叫车按钮" if p.get("source") == "button" else "在叫车屏上"
    out = [f"有人{how}求助：请尽快打电话或到场"]
    state = str(p.get("kiosk_state"))
    if shown := KIOSK_OWN_STATES.get(state) or RIDE_STATUSES.get(state, ("",))[0]:
        out.append(f"当时{shown}" + (f"，车牌 {p['plate']}" if p.get("plate") else ""))
    return out


def _node(kind: str, p: Mapping[str, Any]) -> list[str]:
    if kind != "node_fault":
        return []
    errors = _num(p.get("errors_in_window"))
    out = [f"设备上的程序反复出错（最近 {int(errors)} 次）" if errors else "设备上的程序反复出错"]
    return [*out, "在恢复前它的报警可能送不出：请检查或重启设备", *_detail(p, "last_error")]


def _silent(p: Mapping[str, Any]) -> list[str]:
    """A ``node_silent`` alert's words: which node, since when, what it stops, what to check or that it is back."""
    role = str(p.get("role") or "")
    what = NODE_ROLES.get(role, "设备")
    out = []
    silent, seen = _span(p.get("silent_s")), _num(p.get("last_seen_at"))
    if silent is not None and seen is not None:
        out.append(f"{what}已 {silent} 没有任何消息（最后一次收到：{clock_text(seen)}）")
    if role in SILENT_STAKES:
        out.append(SILENT_STAKES[role])
    if (heard := _num(p.get("heard_at"))) is not None:
        out.append(f"{clock_text(heard)} 又收到它的消息：已恢复联系")
    else:
        out.append("请检查电源、网络，以及设备是否在反复重启")
    return out


def _cleared(kind: str, p: Mapping[str, Any], said: list[str]) -> list[str]:
    """A node's alert cleared on site: why, in words, then what ``said`` of it while it lasted (the central keeps
    the incident's payload and adds the clear's), but for the lines that held only while it lasted. A broken part,
    a node's fault or a help request: only that it is over."""
    if kind == "help_requested":
        return ["叫车屏已到时关闭求助画面：不代表已有人到场，请电话确认"]
    if kind == "kiosk_fault":
        return [f"叫车屏的{KIOSK_PARTS.get(str(p.get('part')), ('这个部件', ''))[0]}又能用了"]
    if kind == "home_device_fault":
        return [f"{HOME_DEVICES.get(str(p.get('device')), '按钮或门磁')}又能用了"]
    if kind == "meter_offline":
        down = _span(p.get("silent_s"))
        return [f"水表 {p.get('meter_id') or '?'} 又读到数了" + (f"（中断了 {down}）" if down else "")]
    if kind == "wellbeing_fault":
        return ["看护规则已恢复：这户重新有人看护"]
    why = CLEARED_WHY.get(str(p.get("reason")))
    over = f"现场已解除：{why}" if why else "现场已解除（节点报告）"
    return [over, *(line for line in said if line not in WHILE_IT_LASTS)]


WORDS: dict[str, Callable[[str, Mapping[str, Any]], list[str]]] = {
    "lift": _lift,
    "meter": _meter,
    "kiosk": _kiosk,
    "node": _node,
}


def reasons(kind: str, payload: Mapping[str, Any] | Any, cleared: bool = False) -> list[str]:
    """Why this alert was raised, in short Chinese sentences, from its payload (what the node measured); for one
    ``cleared`` on site, why it cleared first."""
    p = payload if isinstance(payload, Mapping) else {}
    if kind in CENTRAL_KINDS:
        out = _silent(p)
    else:
        out = WORDS[kind_group(kind)](kind, p)
        out = _cleared(kind, p, out) if cleared else out
    if not out:  # a kind without its own words: say what the node sent, plainly (not the alert book's own fields)
        plain = [(k, v) for k, v in p.items() if k not in ALERT_FIELDS or k == "reason"]
        out = [f"{k}：{v}" for k, v in plain if isinstance(v, str | int | float) and not isinstance(v, bool)][:6]
    return out


def closed(alert: Mapping[str, Any]) -> list[str]:
    """A person's resolution in words for the people told of the alert: who closed it and when, then the words they
    wrote for them (``resolve_tell``; the desk's own note is never shown to them)."""
    tell = alert.get("resolve_tell")
    by = f"{clock_text(alert.get('resolved_at'))} 由 {alert.get('resolved_by') or '值班'} 处理并关闭"
    return [by, *([f"处理说明：{tell}"] if tell else [])]
