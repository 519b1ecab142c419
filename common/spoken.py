"""Numbers and codes written for listening: what a node's voice should say for a phone number, a plate, a number of
minutes or a car model, in Mandarin (zh) or English (en).

A phone number is read digit by digit in groups, 1 as 幺 (yāo, never confused with 七 qī); a plate character by
character, 1 as 幺 too (一 yī would sound as the letter E); minutes as a whole count (两 for 2). Pure text: the texts
go to whatever speaks them.
"""

from __future__ import annotations

import re
from typing import Literal

Language = Literal["zh", "en"]

DIGITS_ZH = "零一二三四五六七八九"
PHONE_ONE = "幺"  # how 1 is said in phone numbers, room numbers and plates read out on the radio
# a province's one-character abbreviation on a plate, in pinyin for an English voice
PROVINCES_EN = {
    "京": "Jing", "津": "Jin", "沪": "Hu", "渝": "Yu", "冀": "Ji", "晋": "Jin", "蒙": "Meng", "辽": "Liao",
    "吉": "Ji", "黑": "Hei", "苏": "Su", "浙": "Zhe", "皖": "Wan", "闽": "Min", "赣": "Gan", "鲁": "Lu",
    "豫": "Yu", "鄂": "E", "湘": "Xiang", "粤": "Yue", "桂": "Gui", "琼": "Qiong", "川": "Chuan", "贵": "Gui",
    "云": "Yun", "藏": "Zang", "陕": "Shaan", "甘": "Gan", "青": "Qing", "宁": "Ning", "新": "Xin",
    "港": "Gang", "澳": "Ao", "学": "Xue", "警": "Jing", "挂": "Gua", "使": "Shi", "领": "Ling",
}  # fmt: skip
# the words a recorded voice needs to say any plate, and any number of minutes up to 999
PLATE_WORDS = (*PROVINCES_EN, *"ABCDEFGHJKLMNPQRSTUVWXYZ", *DIGITS_ZH, PHONE_ONE)
COUNT_WORDS = (*DIGITS_ZH, "两", "十", "百")
_UNITS = ((1000, "千"), (100, "百"), (10, "十"))
_GROUPS = {6: (3, 3), 7: (3, 4), 8: (4, 4), 9: (3, 3, 3), 10: (3, 3, 4), 11: (3, 4, 4), 12: (4, 4, 4)}
_CODE = re.compile(r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*")  # a run with at least one letter: GL8, Ei5, ETC
_CODE_EN = re.compile(r"[A-Za-z0-9]*(?:[A-Za-z][0-9]|[0-9][A-Za-z])[A-Za-z0-9]*")  # letters and digits: GL8


def _under_10000(n: int) -> str:
    out, zero = "", False
    for value, unit in _UNITS:
        digit, n = divmod(n, value)
        if digit:
            out += ("零" if zero else "") + DIGITS_ZH[digit] + unit
            zero = False
        elif out:
            zero = True
    if n:
        out += ("零" if zero else "") + DIGITS_ZH[n]
    return out


def chinese_number(n: int, counting: bool = True) -> str:
    """``n`` (0..99,999,999) in Chinese numerals: 12 -> 十二, 105 -> 一百零五, 20000 -> 两万.

    ``counting``: a count of something (两分钟, 两百), so a leading 2 before a unit or alone is 两.
    """
    if not 0 <= n < 100_000_000:
        raise ValueError(f"{n} is out of range for a spoken count (0..99999999)")
    if n == 0:
        return DIGITS_ZH[0]
    high, low = divmod(n, 10_000)
    text = _under_10000(high) + "万" if high else ""
    if high and low:
        text += ("零" if low < 1000 else "") + _under_10000(low)
    elif low:
        text = _under_10000(low)
    if text.startswith("一十"):
        text = text[1:]  # 十二, not 一十二
    if counting and text.startswith("二") and (len(text) == 1 or text[1] in "百千万"):
        text = "两" + text[1:]
    return text


def digit_by_digit(digits: str, language: Language = "zh", phone: bool = False) -> str:
    """Each digit on its own: '2100' -> '二 幺 零 零' (phone) / '二 一 零 零' / '2 1 0 0' (en)."""
    if language == "en":
        return " ".join(digits)
    return " ".join(PHONE_ONE if phone and d == "1" else DIGITS_ZH[int(d)] for d in digits)


def phone_for_listening(number: str, language: Language = "zh") -> str:
    """A phone number read digit by digit in the groups a listener remembers, 1 as 幺.

    '021-65432100' -> '零 二 幺，六 五 四 三，二 幺 零 零'; the written groups are kept, a long group is split
    (11-digit mobile 3-4-4, 8-digit local 4-4). Characters other than digits (+, -, spaces) only separate.
    """
    groups: list[str] = []
    for written in re.findall(r"\d+", number):
        sizes = _GROUPS.get(len(written))
        if sizes is None:
            sizes = tuple(4 for _ in range(len(written) // 4)) + ((len(written) % 4,) if len(written) % 4 else ())
        start = 0
        for size in sizes:
            groups.append(written[start : start + size])
            start += size
    pause = "，" if language == "zh" else ", "
    return pause.join(digit_by_digit(g, language, phone=True) for g in groups)


def plate_for_listening(plate: str, language: Language = "zh") -> str:
    """A plate character by character, with a pause after the issuing office: '沪A·D12345' -> '沪 A，D 幺 二 三 四 五'.

    Letters are upper case (read by their names); for English the province is in pinyin ('Hu A, D 1 2 3 4 5').
    """
    chars = [ch.upper() for ch in plate if ch.isalnum()]
    if not chars:
        return ""
    spoken = []
    for ch in chars:
        if ch.isdigit():
            spoken.append(digit_by_digit(ch, language, phone=True))
        elif language == "en" and not ch.isascii():
            spoken.append(PROVINCES_EN.get(ch, ch))
        else:
            spoken.append(ch)
    office, rest = spoken[:2], spoken[2:]
    pause = "，" if language == "zh" else ", "
    return " ".join(office) + (pause + " ".join(rest) if rest else "")


def minutes_for_listening(minutes: float, language: Language = "zh") -> str:
    """A time in whole minutes (rounded, at least 1): 2 -> '两', 12.4 -> '十二'; English '2'."""
    whole = max(1, round(minutes))
    return str(whole) if language == "en" else chinese_number(whole)


def code_for_listening(text: str, language: Language = "zh") -> str:
    """Free text (a car model, a gate name) with its letter-and-digit codes spelled out: '别克GL8' -> '别克 G L 八'.

    A Mandarin voice reads 'GL8' as a pinyin syllable and drops the 8; spelled, every character is heard. Plain
    numbers ('3号门') stay numbers; in English only codes mixing letters and digits are spelled ('Buick G L 8').
    """

    def spell(match: re.Match[str]) -> str:
        code = match.group(0).upper()
        return " " + " ".join(ch if language == "en" or not ch.isdigit() else DIGITS_ZH[int(ch)] for ch in code) + " "

    return re.sub(r"\s{2,}", " ", (_CODE_EN if language == "en" else _CODE).sub(spell, text)).strip()
