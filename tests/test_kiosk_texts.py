"""Kiosk words and looks: the texts file loads and fills every prompt; colours pass 4.5:1; sizes meet the rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kiosk import theme
from kiosk.ride_events import STATES, RideState, RideView
from kiosk.texts import DEFAULT_TEXTS, VOICE_ONLY, TextsError, load_texts

CAR = {
    "plate": "沪A·D12345",
    "colour": "white",
    "model": "Volkswagen Lavida",
    "colour_zh": "白色",
    "model_zh": "大众朗逸",
}


def texts():
    return load_texts(None, "长白新村北门", "021-6543 2100", "Changbai Xincun North Gate")


@pytest.mark.parametrize("state", STATES)
def test_every_state_has_both_languages_and_a_voice(state: str) -> None:
    t = texts()
    params = {**CAR, "eta_min": 4} if state in ("assigned", "arrived") else {}
    for key in ("heading_zh", "heading_en", "detail_zh", "detail_en"):
        assert t.line(state, key, params).strip()
    zh, en = t.voice(state, "zh", params), t.voice(state, "en", params)
    assert zh and en and zh != en
    assert any("\u4e00" <= ch <= "\u9fff" for ch in t.line(state, "heading_zh", params))
    assert all(ord(ch) < 0x3000 for ch in t.line(state, "heading_en", params))


def test_assigned_voice_reads_the_plate_character_by_character_and_whole_minutes() -> None:
    said = texts().voice("assigned", "zh", {**CAR, "eta_min": 2})
    assert "沪 A，D 幺 二 三 四 五" in said and "白色" in said and "两分钟" in said
    said = texts().voice("assigned", "en", {**CAR, "eta_min": 12})
    assert "Hu A, D 1 2 3 4 5" in said and "12 minutes" in said


@pytest.mark.parametrize("state", ["offline", "error", "no_car"])
def test_out_of_service_voice_gives_the_hotline_digit_by_digit(state: str) -> None:
    assert "零 二 幺，六 五 四 三，二 幺 零 零" in texts().voice(state, "zh")  # 1 as 幺, in the written groups
    assert "0 2 1, 6 5 4 3, 2 1 0 0" in texts().voice(state, "en")


def test_voice_prompts_have_stable_ids_with_the_gate_and_hotline_written_in() -> None:
    prompts = {p.id: p for p in texts().prompts("zh")}
    assert set(prompts) == {f"kiosk.{key}" for key in (*STATES, *VOICE_ONLY)}
    assert prompts["kiosk.searching_wait"].fields == ("minutes",)  # the reassurance every minute
    assert "长白新村北门" in prompts["kiosk.idle"].template and not prompts["kiosk.idle"].fields
    assert "零 二 幺" in prompts["kiosk.no_car"].template and not prompts["kiosk.no_car"].fields
    assert prompts["kiosk.assigned"].fields == ("plate_spoken", "colour_zh", "model_zh", "eta_min")


def test_text_changes_need_no_code(tmp_path: Path) -> None:
    f = tmp_path / "texts.toml"
    f.write_text(
        DEFAULT_TEXTS.read_text(encoding="utf-8").replace('heading_zh = "正在找车"', 'heading_zh = "正在帮您找车"')
    )
    t = load_texts(f, "北门", "110")
    assert t.line("searching", "heading_zh") == "正在帮您找车"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            ('voice_zh = "已取消叫车。"', 'voice_zh = "已取消 {plate}"'),
            "cancelled.voice_zh: placeholder {plate} not available",
        ),
        (('heading_en = "Taxi cancelled"\n', ""), "cancelled.heading_en: missing"),
        (("[error]", "[eror]"), "[error]: missing section"),
        (('call_zh = "叫出租车"', 'call_zh = "叫出租车 {"'), "call_zh"),
        (('help_en = "Help"\n', 'help_en = "Help"\ntypo = "x"\n'), None),
    ],
)
def test_broken_texts_file_is_refused_naming_the_key(
    tmp_path: Path, change: tuple[str, str], problem: str | None
) -> None:
    source = DEFAULT_TEXTS.read_text(encoding="utf-8")
    assert change[0] in source
    f = tmp_path / "texts.toml"
    f.write_text(source.replace(change[0], change[1], 1))
    if problem is None:
        load_texts(f, "北门", "110")  # an unknown label is harmless: labels are looked up by name
        return
    with pytest.raises(TextsError) as info:
        load_texts(f, "北门", "110")
    assert problem in "\n".join(info.value.problems)


@pytest.mark.parametrize(("fg", "bg", "where"), theme.TEXT_PAIRS, ids=[p[2] for p in theme.TEXT_PAIRS])
def test_every_text_colour_pair_has_contrast_7(fg: str, bg: str, where: str) -> None:
    assert theme.contrast_ratio(fg, bg) >= theme.MIN_CONTRAST == 7.0, where


def test_contrast_formula_matches_wcag_reference_points() -> None:
    assert theme.contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert theme.contrast_ratio("#777777", "#FFFFFF") == pytest.approx(4.48, abs=0.01)  # the classic near miss
    assert theme.contrast_ratio("#FFFFFF", "#FFFFFF") == pytest.approx(1.0)


def test_every_text_colour_in_the_kv_file_is_a_checked_foreground() -> None:
    kv = (Path(theme.__file__).parent / "kiosk.kv").read_text(encoding="utf-8")
    used = set(re.findall(r"^\s+color: rgba\(theme\.([A-Z_]+)\)", kv, flags=re.M))
    assert used, "the kv file names its text colours as color: rgba(theme.NAME)"
    foregrounds = {pair[0] for pair in theme.TEXT_PAIRS}
    for name in used:
        assert getattr(theme, name) in foregrounds, name


def test_every_state_has_an_icon_as_well_as_a_colour() -> None:
    assert set(theme.STATE_ICONS) == set(STATES)
    # states that share a colour scheme are told apart by their icon
    assert theme.STATE_ICONS["cancelled"] != theme.STATE_ICONS["no_car"] != theme.STATE_ICONS["offline"]
    assert len({theme.STATE_ICONS[s] for s in ("car_late", "help_requested", "confirm_cancel", "no_car")}) == 4


def test_old_recorded_prompt_keys_point_to_prompt_packs(tmp_path: Path) -> None:
    source = DEFAULT_TEXTS.read_text(encoding="utf-8").replace("[idle]\n", '[idle]\nwav_zh = "idle.wav"\n')
    (tmp_path / "texts.toml").write_text(source, encoding="utf-8")
    with pytest.raises(TextsError) as info:
        load_texts(tmp_path / "texts.toml", "北门", "110")
    (problem,) = info.value.problems
    assert "idle.wav_zh: recorded prompts are now a prompt pack: record kiosk.idle" in problem
    assert "[audio] pack" in problem


@pytest.mark.parametrize("state", STATES)
def test_every_screen_has_its_buttons_with_words(state: RideState) -> None:

    t = texts()
    assert t.label("help_zh") and t.label("help_en")  # help is on every screen
    for cancellable in (False, True):
        kind = theme.primary_button(RideView(state, cancellable=cancellable))
        if kind == "none":
            assert state in ("idle", "offline") and not (state == "offline" and cancellable)
            continue
        assert kind in theme.BUTTON_COLOURS
        assert t.label(f"{kind}_zh") and t.label(f"{kind}_en")
    # a ride that may still bring a car can always be cancelled, also while the central is unreachable
    assert (theme.primary_button(RideView(state, cancellable=True)) == "cancel") == (
        state in ("requesting", "searching", "assigned", "car_late", "offline")
    )


def test_plate_colours_follow_the_number_of_characters() -> None:
    assert theme.plate_colours("沪A·D12345") == (theme.PLATE_GREEN_BG, theme.PLATE_GREEN_TEXT)  # new energy, 8
    assert theme.plate_colours("沪B·X7253") == (theme.PLATE_BLUE_BG, theme.PLATE_BLUE_TEXT)  # 7
    assert theme.plate_colours("沪B12345") == (theme.PLATE_BLUE_BG, theme.PLATE_BLUE_TEXT)


def test_screen_geometry_of_the_default_and_larger_panels() -> None:
    seven = theme.ScreenGeometry.of(7.0, 800, 480)
    assert (seven.mm_per_px_x, seven.mm_per_px_y) == pytest.approx((0.1928, 0.1790), abs=1e-4)
    assert seven.scale == 1.0
    ten = theme.ScreenGeometry.of(10.1, 1280, 800)
    portrait = theme.ScreenGeometry.of(15.6, 1080, 1920)
    big = theme.ScreenGeometry.of(21.5, 1920, 1080)
    # upright, the layout is still the 7-inch's landscape one: scaled by the width (194 mm) against its 154 mm
    assert 1.0 < portrait.scale < ten.scale < big.scale and portrait.scale == pytest.approx(1.26, abs=0.01)
    assert big.width_mm == pytest.approx(476, abs=1)  # 21.5" 16:9


def test_a_screen_the_layout_cannot_hold_is_refused_with_what_to_do() -> None:
    from kiosk.config import ScreenSection

    assert ScreenSection().problems() == []  # the official 7-inch display
    assert ScreenSection(diagonal_in=6.5).problems() == []  # 800x480 at 6.5" still holds every screen
    assert ScreenSection(diagonal_in=10.1, width=1280, height=800).problems() == []
    (small,) = ScreenSection(diagonal_in=6.0).problems()  # its hotline screens overlapped (measured)
    assert "131 mm wide and 78 mm tall: too small" in small and "at least 139 mm across and 77 mm down" in small
    (upright,) = ScreenSection(diagonal_in=7.0, width=480, height=800).problems()  # crashed the kiosk before
    assert "91 mm wide" in upright and "mount it landscape" in upright
    assert ScreenSection(diagonal_in=15.6, width=1080, height=1920, rotation=90).problems() == []  # wide enough
    given = ScreenSection(width=800, height=480, width_mm=120.0, height_mm=72.0).problems()
    assert len(given) == 1 and "120 mm wide and 72 mm tall" in given[0]  # the measured area, not the diagonal


def test_idle_screen_walks_a_small_square_against_burn_in() -> None:
    offsets = [theme.shift_offset(step, 5.0) for step in range(18)]
    assert offsets[0] == (0, 0) and offsets[9] == (0, 0)  # back to the middle every nine steps
    assert len(set(offsets[:9])) == 9  # every step moves the picture
    assert all(abs(dx) <= 5 and abs(dy) <= 5 for dx, dy in offsets)
    assert theme.LAYOUT_MM["shift"] <= 1.5  # slightly: at most 1.5 mm each way
