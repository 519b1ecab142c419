"""Speech for every role, held against tools nobody here wrote: the real espeak-ng reads every prompt of the lift,
the meter and the kiosk in Mandarin (no switch to English, a tone on every syllable), reads each character as
pypinyin does, and a prompt really plays (aplay on ALSA's null device) with the loudness sox measures."""

from __future__ import annotations

import re
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pypinyin import Style, lazy_pinyin

from central.fleet import CAR_COLOURS, CAR_MODELS
from common.config import AudioSection
from common.speech.voice import Prompt, Voice, VolumeSchedule
from common.spoken import (
    chinese_number,
    code_for_listening,
    minutes_for_listening,
    phone_for_listening,
    plate_for_listening,
)
from hal.audio import AudioSpec, make_speaker
from hal.espeak import (
    DEFAULT_VOICE,
    LETTER_NAMES,
    MANDARIN_VOICE,
    PROBE_TEXT,
    check_speech,
    phonemes,
    render_to_wav,
    resolve_voice,
    respell,
)
from provisioning.prompts import ROLES, role_prompts
from tests.speech_helpers import RecordingSpeaker, sox_stat

SHANGHAI = ZoneInfo("Asia/Shanghai")
# where espeak-ng and pypinyin differ and espeak-ng is right (or both readings are standard), reviewed by hand
ACCEPTED = {
    ("长", "chang2"): "长白新村 is Chángbái, after 长白山; pypinyin reads zhang3",
    ("空", "kong1"): "空车, an empty taxi, is kōngchē; pypinyin reads kong4 (free, unoccupied)",
    ("务", "wu5"): "服务 with a neutral tone is ordinary speech",
    ("上", "shang5"): "路上 is lù·shang in the Xiandai Hanyu Cidian (espeak-ng 1.52); pypinyin reads shang4",
}


SANDHI = "一不"  # their tone changes with the next syllable's; pypinyin gives one or the other


def every_prompt_text() -> list[tuple[str, str]]:
    """(prompt id, text) for everything the three roles can say; the kiosk's car with every colour and model the
    central's fleet names."""
    found = [(p.id, text) for role in ROLES for p in role_prompts(role) for text in p.texts()]
    assigned = next(p for p in role_prompts("kiosk") if p.id == "kiosk.assigned")
    for colour, _ in CAR_COLOURS:
        for model, _ in CAR_MODELS:
            fields = {**assigned.examples[0], "colour_zh": colour, "model_zh": code_for_listening(model)}
            found.append((assigned.id, assigned.fill(fields)))
    return found


def cjk(text: str) -> list[str]:
    return [ch for ch in text if "\u4e00" <= ch <= "\u9fff"]


# ------------------------------------------------------------------------------------- the speech check
def test_every_prompt_of_every_role_is_read_in_mandarin() -> None:
    texts = every_prompt_text()
    ids = {prompt_id for prompt_id, _ in texts}
    assert {"lift.entrapment", "lift.reassurance", "lift.alarm_ack", "meter.chime", "kiosk.idle"} <= ids
    failed = []
    for prompt_id, text in texts:
        check = check_speech(text, DEFAULT_VOICE)
        # the same facts read straight off espeak-ng's phonemes: no language switch, a tone per character
        if not check.ok or "(en)" in check.phonemes or check.tones < len(cjk(text)):
            failed.append((prompt_id, text, check.phonemes, check.problems))
    assert not failed, "\n".join(map(str, failed))
    assert len(texts) > 40


def test_the_old_cmn_voice_fails_the_same_check() -> None:
    # espeak-ng 1.51's cmn reads Chinese as English-spelled pinyin ("nee three hay three"), 1.52's reads a plate's
    # letters in English: on either, the check must see it in every prompt with a plate
    texts = [text for _, text in every_prompt_text() if re.search("[A-Z]", text)]
    checks = [check_speech(text, "cmn") for text in texts[:12]]
    assert len(checks) == 12
    assert all(not c.ok and "(en)" in c.phonemes for c in checks)
    assert all(any("switches language: (en)" in p for p in c.problems) for c in checks)


def test_espeak_reads_every_character_as_pypinyin_does() -> None:
    """An outside dictionary (pypinyin, phrase-aware) against espeak-ng's own reading of each character (-X)."""
    differ = []
    for prompt_id, text in every_prompt_text():
        # a plate's letters are respelled as words of their own: not characters, so left out here
        trace = phonemes(re.sub("[A-Z]", " ", text), DEFAULT_VOICE, trace=True)
        spoken = [
            s for word in re.findall(r"^Translate '(.*)'$", trace, re.M) for s in re.findall(r"[a-z]+[1-5]", word)
        ]
        chars = cjk(text)
        # phrase-aware, so 还在 is hai2 and 行 in 运行 xing2; characters that are not Chinese are left out
        expected = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore")
        assert len(expected) == len(chars), (text, expected)
        assert len(spoken) == len(chars), (prompt_id, text, spoken)
        for ch, said, want in zip(chars, spoken, expected, strict=True):
            sandhi = ch in SANDHI and said[:-1] == want[:-1]  # 一下 yi2 xia4: respelled as it is said
            if said != want and (ch, said) not in ACCEPTED and not sandhi:
                differ.append(f"{prompt_id}: {ch} read {said}, pypinyin {want} in {text!r}")
    assert not differ, "\n".join(differ)


def test_misread_words_are_respelled_for_the_mandarin_voice_only() -> None:
    assert respell("着急请拨打电话", MANDARIN_VOICE) == "zhao2ji2请拨打电话"
    assert respell("着急请拨打电话", "en") == "着急请拨打电话"
    assert "ts.Au35" in phonemes("着急", MANDARIN_VOICE)  # zháo, not espeak-ng's own zhe5


def test_every_letter_is_said_by_its_chinese_name_in_the_mandarin_voice() -> None:
    # espeak-ng 1.52 (Debian 13) reads a lone capital in English even in the pinyin voice: "(en)eI" for A
    assert respell("沪 A，D 幺 二", MANDARIN_VOICE) == "沪 ei1，di4 幺 二"
    assert respell("别克 G L 八", MANDARIN_VOICE) == "别克 ji4 e4luo2 八"
    assert respell("沪 A", "en") == "沪 A" and respell("ABC", MANDARIN_VOICE) == "ABC"  # a word is not respelled
    alphabet = " ".join(LETTER_NAMES)
    check = check_speech(alphabet, MANDARIN_VOICE)
    assert check.ok and "(en)" not in check.phonemes, check
    assert phonemes("W", MANDARIN_VOICE) == phonemes("da4bo1liu2", MANDARIN_VOICE)  # 大波留, three syllables


def test_english_prompts_are_read_in_english_by_an_english_voice() -> None:
    from kiosk.texts import load_texts

    texts = load_texts(None, "长白新村北门", "021-6543 2100", "Changbai Xincun North Gate")
    for prompt in texts.prompts("en"):
        for text in prompt.texts():
            check = check_speech(text, "en")
            assert check.ok, (prompt.id, text, check.problems)
    assert not check_speech("请保持冷静", "en").ok  # Chinese for an English voice is found too


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Hello 你好", "switches language: (en)"),
        ("别克GL8", "Latin word 'GL'"),
        ("荣威Ei5", "toned syllables for 5 characters"),
        ("请稍候 100%", "switches language: (en)"),
        ("第Ⅲ号", "no Mandarin reading"),
        ("𠮷", "spells its character code"),
    ],
)
def test_the_check_finds_what_a_mandarin_voice_cannot_read(text: str, problem: str) -> None:
    check = check_speech(text, MANDARIN_VOICE)
    assert any(problem in p for p in check.problems), check


def test_an_old_cmn_config_is_mapped_with_a_warning_that_says_why() -> None:
    voice, warning = resolve_voice("cmn")
    assert voice == MANDARIN_VOICE
    assert warning is not None and "(en)" in warning and "switches to English" in warning and PROBE_TEXT in warning
    assert resolve_voice(MANDARIN_VOICE) == (MANDARIN_VOICE, None)
    assert resolve_voice("en") == ("en", None)
    voice, warning = resolve_voice("cmm")
    assert voice == MANDARIN_VOICE and "'cmm' is not an espeak-ng voice" in str(warning)


# ------------------------------------------------------------------------------- numbers for listening
def test_numbers_counts_and_digits() -> None:
    said = [chinese_number(n) for n in (0, 2, 10, 12, 20, 105, 110, 200, 2002, 10010, 20000)]
    assert said == ["零", "两", "十", "十二", "二十", "一百零五", "一百一十", "两百", "两千零二", "一万零一十", "两万"]
    assert chinese_number(2, counting=False) == "二"
    assert [minutes_for_listening(m) for m in (0.2, 2, 2.4, 44.6)] == ["一", "两", "两", "四十五"]
    assert minutes_for_listening(12, "en") == "12"


def test_phone_numbers_digit_by_digit_with_yao_in_the_groups_remembered() -> None:
    assert phone_for_listening("021-6543 2100") == "零 二 幺，六 五 四 三，二 幺 零 零"
    assert phone_for_listening("13812345678") == "幺 三 八，幺 二 三 四，五 六 七 八"
    assert phone_for_listening("962121") == "九 六 二，幺 二 幺"
    assert phone_for_listening("021-6543 2100", "en") == "0 2 1, 6 5 4 3, 2 1 0 0"


def test_plates_character_by_character_and_codes_spelled() -> None:
    assert plate_for_listening("沪A·D12345") == "沪 A，D 幺 二 三 四 五"  # green, 8 characters
    assert plate_for_listening("沪a·5g832") == "沪 A，五 G 八 三 二"  # blue, 7 characters
    assert plate_for_listening("沪A·D12345", "en") == "Hu A, D 1 2 3 4 5"
    assert code_for_listening("别克GL8") == "别克 G L 八" and code_for_listening("3号门") == "3号门"
    assert code_for_listening("Buick GL8", "en") == "Buick G L 8"


# ------------------------------------------------------------------------------ really heard, day and night
def test_a_prompt_really_plays_and_is_audible(tmp_path: Path) -> None:
    text = role_prompts("elevator")[0].template
    loud = sox_stat(render_to_wav(respell(text, MANDARIN_VOICE), tmp_path / "day.wav", volume=80))
    quiet = sox_stat(render_to_wav(respell(text, MANDARIN_VOICE), tmp_path / "night.wav", volume=40))
    # about 3 syllables a second for 34 syllables, and speech, not silence; half the volume, about half the RMS
    assert 6.0 < loud["Length (seconds)"] < 20.0 and loud["RMS     amplitude"] > 0.03, loud
    assert 0.4 < quiet["RMS     amplitude"] / loud["RMS     amplitude"] < 0.6
    # the real aplay on ALSA's null device: the whole path a node uses, without a sound card
    speaker = make_speaker(AudioSpec(backend="espeak", device="null"))
    try:
        speaker.say(text, volume=50)
        assert speaker.wait_idle(60)
        health = speaker.health()
    finally:
        speaker.close()
    assert (health["played"], health["failed"], health["last_error"], health["volume"]) == (1, 0, None, 50)


def test_night_volume_by_local_time_across_midnight() -> None:
    audio = AudioSection(volume=80, night_volume=40, night_start="22:00", night_end="07:00")
    schedule = VolumeSchedule(audio, timezone="Asia/Shanghai")
    assert [schedule.is_night(dtime(h, m)) for h, m in ((21, 59), (22, 0), (3, 0), (6, 59), (7, 0))] == [
        False,
        True,
        True,
        True,
        False,
    ]
    no_night = AudioSection(night_start="22:00", night_end="22:00")
    assert not VolumeSchedule(no_night, "Asia/Shanghai").is_night(dtime(23, 0))  # same times: no night
    at = datetime(2026, 12, 4, 23, 30, tzinfo=SHANGHAI).timestamp()  # 15:30 UTC: local time decides
    assert schedule.volume_at(at) == 40 and schedule.volume_at(at - 12 * 3600) == 80
    speaker, clock = RecordingSpeaker(), [at]
    voice = Voice(speaker, schedule=schedule, wall=lambda: clock[0])
    prompt = Prompt("lift.entrapment", "请问电梯还在运行吗？")
    voice.say(prompt)
    clock[0] -= 12 * 3600
    voice.say(prompt)
    assert speaker.volumes == [40, 80]
