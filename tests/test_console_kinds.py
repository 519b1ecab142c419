"""Every kind of the event catalogue has a Chinese name, and an alert's reasoning reads as words."""

from __future__ import annotations

import re

from central.kinds import CENTRAL_KINDS, KINDS, kind_group, kind_zh
from central.reasons import reasons
from central.storage.alerts import SILENT_KIND
from common.catalogue import CATALOGUE


def test_every_catalogued_kind_is_named_in_chinese_and_english() -> None:
    missing = sorted(set(CATALOGUE) - set(KINDS))
    assert not missing, f"name these kinds in central/kinds.py: {missing}"
    assert set(KINDS) - set(CATALOGUE) == set(CENTRAL_KINDS) == {SILENT_KIND}, "a name for a kind nobody sends"
    assert all(zh and en and zh != en for zh, en in KINDS.values())


def test_groups_follow_the_sender_and_an_unknown_kind_is_shown_by_its_code() -> None:
    assert [kind_group(k) for k in ("entrapment", "inactivity", "help_requested", "node_fault")] == [
        "lift", "meter", "kiosk", "node"]  # fmt: skip
    assert kind_zh("brand_new_kind") == "brand_new_kind" and kind_group("brand_new_kind") == "node"


def test_the_reasoning_of_a_silence_and_an_entrapment_in_words() -> None:
    silence = reasons("inactivity", {"resident": "B12-301", "silence_h": 12.5, "last_use": "2026-12-04T06:10:41+08:00",
                                     "warning_after_h": 8.0, "urgent_after_h": 12.0, "thresholds": "learned"})  # fmt: skip
    assert silence == ["已 12 小时 30 分 没有用水", "最后一次用水：12-04 06:10",
                       "超过 8 小时 0 分 未用水即提醒，超过 12 小时 0 分 为紧急（按本户习惯学得）"]  # fmt: skip
    trapped = reasons("entrapment", {"seconds_trapped": 125.0, "in_door_zone": True, "label_zh": "平层关人"})
    assert trapped[0] == "平层关人：轿厢停在平层（门区内）" and "2 分 5 秒" in trapped[1]
    assert reasons("selftest", {"ok": True, "note": "all pass"}) == ["note：all pass"]


# what the nodes send when they raise each alert kind (fields from the event catalogue; values as the nodes make them)
RAISED: dict[str, dict] = {
    "entrapment": {"seconds_trapped": 95.0, "in_door_zone": False, "label_zh": "困人", "building": "7", "lift": "1"},
    "door_open_while_moving": {"seconds": 3.2, "in_door_zone": False, "key": ""},
    "stopped_outside_door_zone": {"seconds": 40.0, "door_closed": True},
    "door_held_open": {"seconds": 330.0, "occupied": False},
    "alarm_button": {"seconds": 5.0, "presses": 3, "door_closed": True, "in_door_zone": True},
    "power_loss": {"seconds": 30.0, "renotify": True, "open_for_s": 300.0},
    "sensor_fault": {"key": "door:flapping", "input": "door", "fault": "flapping", "changes": 20, "window_s": 60.0},
    "meter_offline": {"key": "b12-301", "meter_id": "b12-301", "silent_s": 620.0, "no_response": 9, "resets": 1},
    "wellbeing_fault": {"key": "b12-301", "meter_id": "b12-301", "error": "ValueError: bad timeline"},
    "home_device_fault": {
        "key": "b12-301:door",
        "meter_id": "b12-301",
        "resident": "B12-301",
        "device": "door",
        "reason": "GPIOPinInUse: pin 17 is already in use",
    },  # fmt: skip
    "inactivity": {"resident": "B12-301", "silence_h": 9.0, "warning_after_h": 8.0, "thresholds": "fixed"},
    "missed_morning": {"resident": "B12-301", "deadline": "09:30", "silence_h": 11.0},
    "continuous_flow": {"resident": "B12-301", "flow_minutes": 95, "litres": 600.0, "rate_lpm": 6.3},
    "leak_suspected": {"resident": "B12-301", "base_flow_lph": 4.0},
    "low_daily_volume": {"resident": "B12-301", "day_litres": 12.0, "usual_litres": 120.0, "reason": "below_fixed"},
    "high_daily_volume": {"resident": "B12-301", "day_litres": 480.0, "usual_litres": 120.0, "limit_litres": 360.0},
    "help_requested": {
        "key": "help",
        "source": "button",
        "kiosk_state": "assigned",
        "request_id": "r1",
        "plate": "沪A12345",
        "renotify": True,
        "open_for_s": 120.0,
    },  # fmt: skip
    "kiosk_fault": {"key": "gpio", "part": "gpio", "reason": "GPIOPinInUse: pin 26 is already in use"},
    "node_fault": {"key": "tick", "reason": "exception_storm", "errors_in_window": 12, "last_error": "KeyError: 'x'"},
}
# what they send when one clears (elevator_node/detector.py, meter_node, kiosk/node.py, common/service.py): the
# central adds it to the raise's
CLEARED: dict[str, dict] = {
    "entrapment": {"reason": "door_opened"},
    "sensor_fault": {"key": "door:stuck", "reason": "door_changed"},
    "meter_offline": {"key": "b12-301", "meter_id": "b12-301", "silent_s": 900.0},
    "wellbeing_fault": {"key": "b12-301", "meter_id": "b12-301"},
    "home_device_fault": {"key": "b12-301:door", "meter_id": "b12-301", "device": "door"},
    "inactivity": {"reason": "use"},
    "help_requested": {"key": "help", "why": "help_clear_s passed on the kiosk"},
    "kiosk_fault": {"key": "gpio", "part": "gpio"},
    "node_fault": {"key": "tick", "reason": "exception_storm_over"},
}


def _not_words(lines: list[str], payload: dict) -> list[str]:
    """Lines that show a payload field's name or an epoch time instead of words."""
    return [line for line in lines if any(f"{k}：" in line for k in payload) or re.search(r"\d{9,}", line)]


def test_every_alert_that_tells_somebody_says_why_in_words_raised_and_cleared() -> None:
    # the property desk, a technician or a family reads these: before, a help request at a kiosk or a broken
    # sensor showed "key：help", "kiosk_state：assigned", "input：door"... (only lifts and the water watch had words)
    alerting = {k for k, e in CATALOGUE.items() if e.priority == "alert" and e.recipients}
    assert set(RAISED) == alerting, "give the new alert kind its words in central/reasons.py and a sample here"
    for kind, payload in RAISED.items():
        assert set(payload) <= set(CATALOGUE[kind].payload), kind
        said = reasons(kind, payload)
        assert said and not _not_words(said, payload), (kind, said)
    for kind, clear in CLEARED.items():
        payload = {**RAISED[kind], **clear}  # the central keeps the incident's payload and adds the clear's
        said = reasons(kind, payload, cleared=True)
        assert said and not _not_words(said, payload), (kind, said)
        assert not any(w in "".join(said) for w in ("坏了", "无法使用", "请尽快")), (kind, said)
    assert reasons("help_requested", RAISED["help_requested"]) == ["有人长按叫车按钮求助：请尽快打电话或到场",
                                                                   "当时司机已接单，车牌 沪A12345"]  # fmt: skip
    freed = reasons("entrapment", {**RAISED["entrapment"], **CLEARED["entrapment"]}, cleared=True)
    assert freed == ["现场已解除：轿厢门已打开", "困人：轿厢停在两层之间（门区外）",
                     "关门且有人、轿厢静止已 1 分 35 秒（90 秒即报警）"]  # fmt: skip
    stuck = reasons("sensor_fault", {"input": "occupancy", "fault": "silent", "door_openings": 40})
    assert stuck == [
        "连续 40 次开关门都没有感应到人（感应器可能失灵）",
        "这个信号不可靠时，困人报警可能不准：请尽快检修",
    ]
