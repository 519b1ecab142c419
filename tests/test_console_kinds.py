"""Every kind of the event catalogue has a Chinese name, and an alert's reasoning reads as words."""

from __future__ import annotations

from central.kinds import CENTRAL_KINDS, KINDS, kind_group, kind_zh, reasons
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
    silence = reasons("inactivity", {"resident": "B12-301", "silence_h": 12.5, "last_use": "2026-12-04 06:10",
                                     "warning_after_h": 8.0, "urgent_after_h": 12.0, "adaptive": True})  # fmt: skip
    assert silence == ["已 12 小时 30 分 没有用水", "最后一次用水：2026-12-04 06:10",
                       "超过 8 小时 0 分 未用水即提醒，超过 12 小时 0 分 为紧急（按本户习惯学得）"]  # fmt: skip
    trapped = reasons("entrapment", {"seconds_trapped": 125.0, "in_door_zone": True, "label_zh": "平层关人"})
    assert trapped[0] == "平层关人：轿厢停在平层（门区内）" and "2 分 5 秒" in trapped[1]
    assert reasons("selftest", {"ok": True, "note": "all pass"}) == ["note：all pass"]
