"""Meter profiles: golden register words -> litres beside each profile, encode round trips, bad files named."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from meter_node.profiles import (
    PROFILE_DIR,
    DecodeError,
    MeterProfile,
    ProfileError,
    golden_file,
    load_profile,
    load_profile_file,
    shipped_profiles,
    swap_words,
    value_to_words,
    words_to_value,
)

PROFILES = shipped_profiles()
NAMES = sorted(PROFILES)


def golden(profile: MeterProfile) -> dict[str, Any]:
    return json.loads(golden_file(profile).read_text(encoding="utf-8"))


def words(case: dict[str, Any]) -> list[int]:
    return [int(w, 16) if isinstance(w, str) else int(w) for w in case["words"]]


def test_at_least_three_layouts_ship_each_with_a_golden_file() -> None:
    assert len(PROFILES) >= 3
    kinds = {(p.spec.data_type, p.spec.swap, p.spec.fraction is not None) for p in PROFILES.values()}
    assert len(kinds) == len(PROFILES), "each shipped profile is a different layout"
    for profile in PROFILES.values():
        assert golden_file(profile).is_file(), f"{profile.name} has no golden file"
        assert golden(profile)["profile"] == profile.name


@pytest.mark.parametrize("name", NAMES)
def test_golden_words_decode_to_litres(name: str) -> None:
    profile = PROFILES[name]
    data = golden(profile)
    wire = data["wire"]
    assert (profile.function_code, profile.address, profile.count) == (
        wire["function_code"],
        wire["address"],
        wire["count"],
    )
    assert data["cases"], "a golden file without cases checks nothing"
    for case in data["cases"]:
        got = profile.decode(words(case))
        assert got == pytest.approx(case["litres"], abs=data["tolerance_l"] or 1e-9), case["note"]


@pytest.mark.parametrize("name", NAMES)
def test_golden_bad_words_are_refused(name: str) -> None:
    profile = PROFILES[name]
    for case in golden(profile)["bad"]:
        with pytest.raises(DecodeError):
            profile.decode(words(case))


@pytest.mark.parametrize("name", NAMES)
def test_encode_gives_the_golden_words(name: str) -> None:
    """encode() is what the simulated meter serves: it must produce the very words of the golden file."""
    profile = PROFILES[name]
    for case in golden(profile)["cases"]:
        assert profile.encode(case["litres"]) == words(case), case["note"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("litres", [0.0, 1.0, 10.0, 999.0, 123_450.0, 9_876_540.0])
def test_encode_decode_round_trip(name: str, litres: float) -> None:
    profile = PROFILES[name]
    step = max(profile.resolution_l, 1e-3)
    assert profile.decode(profile.encode(litres)) == pytest.approx(litres, abs=step)


def test_encode_wraps_an_integer_counter_at_its_width() -> None:
    profile = PROFILES["u32_le_litres"]
    assert profile.rollover_litres == 2.0**32
    assert profile.decode(profile.encode(2.0**32 + 5)) == 5.0
    pulse = PROFILES["pulse_u32_10l"]
    assert pulse.rollover_litres == 10 * 2.0**32 and pulse.resolution_l == 10.0


def test_float_totals_never_roll_over() -> None:
    assert PROFILES["tuf2000_long_real4"].rollover_litres == 2.0**31 * 1000  # its LONG part does
    spec_path = PROFILE_DIR / "u32_le_litres.toml"
    text = spec_path.read_text().replace('data_type = "u32"', 'data_type = "f32"').replace('"word_byte"', '"word"')
    assert _profile_from(text, "f32_total").rollover_litres is None


@pytest.mark.parametrize(
    ("swap", "wire"),
    [
        ("none", [0x1234, 0x5678]),
        ("byte", [0x3412, 0x7856]),
        ("word", [0x5678, 0x1234]),
        ("word_byte", [0x7856, 0x3412]),
    ],
)
def test_swaps_are_named_as_home_assistant_names_them(swap: str, wire: list[int]) -> None:
    """ABCD = 0x12345678: byte AB->BA, word ABCD->CDAB, word_byte ABCD->DCBA."""
    assert value_to_words(0x12345678, "u32", swap) == wire
    assert words_to_value(wire, "u32", swap) == 0x12345678
    assert swap_words(swap_words(wire, swap), swap) == wire


def test_64_bit_types() -> None:
    assert words_to_value([0, 0, 0x0001, 0x0000], "u64", "none") == 65536
    assert words_to_value([0x0000, 0x0001, 0, 0], "u64", "word") == 65536
    assert words_to_value(value_to_words(1234.5, "f64", "none"), "f64", "none") == 1234.5
    assert words_to_value([0x3FF0, 0, 0, 0], "f64", "none") == 1.0


def test_wrong_word_count_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="needs 2"):
        words_to_value([1], "u32", "none")


def test_infinite_float_total_is_refused() -> None:
    inf = value_to_words(math.inf, "f32", "none")
    text = (PROFILE_DIR / "u32_le_litres.toml").read_text().replace('"u32"', '"f32"').replace('"word_byte"', '"none"')
    with pytest.raises(DecodeError):
        _profile_from(text, "f32_total").decode(inf)


# ------------------------------------------------------------------------------------------- bad profiles
def _profile_from(text: str, name: str, folder: Path | None = None) -> MeterProfile:
    import tempfile

    folder = folder or Path(tempfile.mkdtemp())
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load_profile_file(path)


GOOD = (PROFILE_DIR / "tuf2000_long_real4.toml").read_text(encoding="utf-8")

BAD = [
    ("unknown data type", GOOD.replace('data_type = "i32"', 'data_type = "s32"'), "data_type = 's32'", "allowed"),
    ("unknown swap", GOOD.replace('swap = "word"\nscale', 'swap = "little"\nscale'), "swap = 'little'", "allowed"),
    ("bad function code", GOOD.replace("function_code = 3", "function_code = 6"), "function_code = 6", "allowed"),
    ("missing unit", GOOD.replace('unit = "m3"\n', ""), "unit", "missing"),
    ("typo key", GOOD.replace("max_flow_l_min", "max_flow_lpm"), "max_flow_lpm", "unknown key"),
    ("fraction bad type", GOOD.replace('data_type = "f32"', 'data_type = "f16"'), "fraction.data_type", "allowed"),
    ("scale as text", GOOD.replace("scale = 1.0\nunit", 'scale = "1"\nunit'), "scale = '1'", "a number"),
    ("below base", GOOD.replace("register = 9\n", "register = 0\n"), "register = 0", "register_base"),
    ("word swap on u16", GOOD.replace('data_type = "f32"', 'data_type = "u16"'), "fraction.swap", "no word order"),
    ("overlap", GOOD.replace("register = 11", "register = 10"), "fraction.register = 10", "overlaps"),
    ("too far apart", GOOD.replace("register = 11", "register = 90"), "fraction.register = 90", "max_read_registers"),
    (
        "past 65535",
        (PROFILE_DIR / "u32_le_litres.toml").read_text().replace("register = 8\n", "register = 65535\n"),
        "register = 65535",
        "past wire address 65535",
    ),
    ("invalid toml", GOOD + "\n[[[", "invalid TOML", ""),
]


@pytest.mark.parametrize(("name", "text", "key", "why"), BAD, ids=[b[0] for b in BAD])
def test_bad_profile_names_the_file_and_key(tmp_path: Path, name: str, text: str, key: str, why: str) -> None:
    with pytest.raises(ProfileError) as info:
        _profile_from(text, "broken_meter", tmp_path)
    message = "\n".join(info.value.problems)
    assert str(tmp_path / "broken_meter.toml") in message
    assert key in message and why in message


def test_good_copy_loads(tmp_path: Path) -> None:
    profile = _profile_from(GOOD, "copy_of_tuf", tmp_path)
    assert profile.name == "copy_of_tuf" and profile.address == 8


def test_unknown_profile_name_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="ultrad_int_ml"):
        load_profile("no_such_meter")


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not found"):
        load_profile_file(tmp_path / "gone.toml")


def test_extra_profile_dir_adds_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "site_meter.toml").write_text(GOOD.replace("register = 9\n", "register = 21\n").replace("= 11", "= 23"))
    assert load_profile("site_meter", [tmp_path]).address == 20
    with pytest.raises(ProfileError):
        load_profile("site_meter")
