"""espeak-ng, the speech synthesiser: its voices, a text rendered to WAV, and a check that a text is really read
in the voice's language (espeak-ng quietly switches to English for what it cannot read, visible as ``(en)`` in
its phoneme output).

Takes plain arguments (text, voice name) and imports nothing from the rest of the project.
"""

from __future__ import annotations

import functools
import re
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path

ESPEAK = "espeak-ng"
MANDARIN_VOICE = "cmn-latn-pinyin"  # reads Chinese characters in Mandarin and pinyin with tone numbers
DEFAULT_VOICE = MANDARIN_VOICE
RATE_WPM = 150  # espeak-ng's default is 175 words/min; slower is clearer for elderly listeners
# how a Chinese voice is found out: it must read the characters and a plate's letter in Chinese. espeak-ng 1.51's
# cmn reads the characters as pinyin spelled in English; 1.52's (Debian 13) reads them in Mandarin, but a capital
# letter in English, as every voice of 1.52 does (respelled below for the pinyin voice)
PROBE_TEXT = "你好，沪 A"
# voices whose language is Chinese: their phonemes carry a tone number on every syllable
TONAL_PREFIXES = ("cmn", "zh", "yue", "hak", "sit/cmn", "sit/yue", "sit/hak")
PACKAGE = "espeak-ng"
# words espeak-ng misreads (1.51: 着急 as zhe5 ji2; 1.52: 人员 as ren5 yuan2, 已经 as yi3 jing5) or says without tone
# sandhi (不要 as bu4 yao4): cmn-latn-pinyin reads pinyin, so they are respelled in pinyin with tone numbers before
# synthesis. Found by comparing its readings of every prompt with pypinyin's (tests/test_speech.py), longest first.
RESPELL = {
    "一分钟": "yi4fen1zhong1", "着急": "zhao2ji2", "不要": "bu2yao4", "一下": "yi2xia4", "人员": "ren2yuan2",
    "已经": "yi3jing1",
}  # fmt: skip
# a capital letter on its own (a plate's, a spelled code's) as Chinese speakers name it, in pinyin: espeak-ng 1.52
# reads it in English even in the pinyin voice, 1.51 as a pinyin syllable (G as zhi). Spelling 1 of "Chinese
# respelling of the English alphabet" (Wikipedia; Lonely Planet Mandarin Phrasebook, 2012, p. 16)
LETTER_NAMES = {
    "A": "ei1", "B": "bi4", "C": "xi1", "D": "di4", "E": "yi1", "F": "ai4fu4", "G": "ji4", "H": "ai4chi3",
    "I": "ai1", "J": "zhai2", "K": "kai1", "L": "e4luo2", "M": "e4mu3", "N": "en1", "O": "ou3", "P": "pi1",
    "Q": "ku4", "R": "er3", "S": "ai4si1", "T": "ti1", "U": "you1", "V": "wei2", "W": "da4bo1liu2",
    "X": "ai1ke4si1", "Y": "wai1", "Z": "zai4de5",
}  # fmt: skip
_LONE_CAPITAL = re.compile(r"(?<![A-Za-z])[A-Z](?![A-Za-z])")
_SWITCH = re.compile(r"\(([a-z]{2,3}(?:-[a-z0-9]+)*)\)", re.IGNORECASE)  # "(en)": espeak-ng changed language
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_DIGITS = re.compile(r"[0-9]+")
_TRANSLATE = re.compile(r"^Translate '(.*)'$")


class AudioError(RuntimeError):
    """A prompt could not be rendered or played; ``render_to_wav`` raises it, ``Speaker.say`` never does."""


class EspeakError(AudioError):
    """espeak-ng is missing, failed, or was given a voice it does not have."""


def run_espeak(args: list[str], timeout_s: float = 30.0) -> str:
    """Run espeak-ng with ``args``; its stdout as text. Raises EspeakError with a message a technician can use."""
    try:
        done = subprocess.run(
            [ESPEAK, *args], capture_output=True, timeout=timeout_s, check=False, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise EspeakError(f"{ESPEAK} not found (apt-get install {PACKAGE})") from None
    except subprocess.TimeoutExpired:
        raise EspeakError(f"{ESPEAK} did not finish within {timeout_s:g} s") from None
    except OSError as exc:
        raise EspeakError(f"{ESPEAK} cannot run: {exc}") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise EspeakError(f"{ESPEAK} failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
    return done.stdout.decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=1)
def espeak_voices() -> frozenset[str]:
    """Voice and language names espeak-ng knows (``espeak-ng --voices``), lower case; empty when it cannot be asked."""
    try:
        listing = run_espeak(["--voices"], timeout_s=10)
    except EspeakError:
        return frozenset()
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            language, name, file = fields[1], fields[3], fields[4]
            names.update({language, name, file, file.rsplit("/", 1)[-1]})
            names.update(re.findall(r"\(([^\s()]+) \d+\)", line))  # other languages: "(zh-cmn 5)(zh 5)"
    return frozenset(n.lower() for n in names)


def unknown_voice(voice: str) -> str | None:
    """A problem line when espeak-ng would not know ``voice`` (it silently falls back to English), else None."""
    known = espeak_voices()
    base = voice.split("+", 1)[0].lower()  # "en+f3": voice plus variant
    if not known or base in known:
        return None
    return f"{voice!r} is not an espeak-ng voice (e.g. {MANDARIN_VOICE} for Mandarin, en for English)"


def is_tonal(voice: str) -> bool:
    """Whether ``voice`` speaks a Chinese language (Mandarin, Cantonese, Hakka): every syllable gets a tone."""
    return voice.split("+", 1)[0].lower().startswith(TONAL_PREFIXES)


def respell(text: str, voice: str | None) -> str:
    """``text`` with the words espeak-ng misreads, and each capital letter on its own, written in pinyin, for the
    voice that reads pinyin: '沪 A，着急' -> '沪 ei1，zhao2ji2'."""
    if voice is None or voice.split("+", 1)[0].lower() != MANDARIN_VOICE:
        return text
    for word, pinyin in RESPELL.items():
        text = text.replace(word, pinyin)
    return _LONE_CAPITAL.sub(lambda letter: LETTER_NAMES[letter.group()], text)


def espeak_amplitude(volume_percent: int) -> int:
    """Volume 0..100 % onto espeak-ng's amplitude 0..200 (its default 100 is 50 %)."""
    return max(0, min(200, round(volume_percent * 2)))


def render_to_wav(
    text: str,
    path: Path,
    voice: str | None = DEFAULT_VOICE,
    volume: int = 80,
    timeout_s: float = 30.0,
    check_voice: bool = True,
) -> Path:
    """Speak ``text`` into a WAV file with ``espeak-ng -w`` (no sound card needed); raises EspeakError.

    An unknown voice is an error here: espeak-ng itself would quietly speak Mandarin text in English.
    """
    if check_voice and voice is not None and (problem := unknown_voice(voice)):
        raise EspeakError(problem)
    chosen = ["-v", voice] if voice is not None else []  # None: espeak-ng's own default voice
    # "--": a prompt such as "-5 度" must never be read as an option
    spoken = respell(text, voice)
    run_espeak([*chosen, "-a", str(espeak_amplitude(volume)), "-s", str(RATE_WPM), "-w", str(path), "--", spoken])
    if not path.exists() or path.stat().st_size <= 44:  # 44 bytes: a WAV header without samples
        raise EspeakError(f"{ESPEAK} wrote no audio to {path} (voice {voice!r})")
    return path


# ------------------------------------------------------------------------------------------ the speech check
@dataclass(frozen=True)
class SpeechCheck:
    """How espeak-ng reads one text in one voice: its phonemes (``-x``) and what is wrong with them."""

    text: str
    voice: str
    phonemes: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def tones(self) -> int:
        """Syllables carrying a tone number (Chinese voices): '你好' -> n'i35 X'Au214 -> 2."""
        return len(_DIGITS.findall(_SWITCH.sub(" ", self.phonemes)))


def phonemes(text: str, voice: str, trace: bool = False, timeout_s: float = 10.0) -> str:
    """espeak-ng's phonemes for ``text`` as it is spoken (``-x``), or with ``trace`` its translation trace (``-X``)."""
    return run_espeak(["-q", "-v", voice, "-X" if trace else "-x", "--", respell(text, voice)], timeout_s).strip()


def _is_cjk(ch: str) -> bool:
    return unicodedata.category(ch) == "Lo" and "CJK" in unicodedata.name(ch, "")


def _switched_words(phones: str) -> list[str]:
    """The phoneme runs espeak-ng read in another language: '(en)nI55Tr'i:55(cmn)' -> ["nI55Tr'i:55"]."""
    parts = _SWITCH.split(phones)  # text, language, text, language, ...
    found = []
    for i in range(1, len(parts) - 1, 2):
        language, run = parts[i].lower(), parts[i + 1]
        if language not in ("cmn", "zh", "yue", "hak") and run.strip(" _|:!"):
            found.append(f"({language}){run.strip()}")
    return found


def _text_problems(text: str, tonal: bool) -> list[str]:
    """What in the text itself a voice cannot read in its language."""
    found = []
    if tonal:
        for word in dict.fromkeys(_LATIN_WORD.findall(text)):
            found.append(
                f"Latin word {word!r}: a Mandarin voice reads it as pinyin, not as letters (spell it: "
                f"{' '.join(word.upper())}, or write it in Chinese)"
            )
        for ch in dict.fromkeys(text):
            category = unicodedata.category(ch)
            if _is_cjk(ch) or ch.isascii() or category[0] in "PZC":
                continue
            found.append(f"character {ch!r} (U+{ord(ch):04X}) has no Mandarin reading")
    else:
        cjk = "".join(dict.fromkeys(ch for ch in text if _is_cjk(ch)))
        if cjk:
            found.append(f"Chinese characters {cjk[:8]!r} in a prompt for a non-Chinese voice")
    return found


def _unknown_characters(trace: str) -> list[str]:
    """Words espeak-ng spelled as character codes ('_??' in its -X trace): it has no reading for them."""
    found, word = [], ""
    for line in trace.splitlines():
        if match := _TRANSLATE.match(line.strip()):
            word = match.group(1)
        elif "'_??'" in line:
            found.append(f"{word!r} has no reading in this voice: espeak-ng spells its character code")
    return list(dict.fromkeys(found))


def check_speech(text: str, voice: str = DEFAULT_VOICE) -> SpeechCheck:
    """Read ``text`` with the real espeak-ng and list every sign that it is not read in ``voice``'s language.

    For any voice: a switch to another language (``(en)`` in the phonemes), or no phonemes at all. For a Chinese
    voice also: a character without a reading (spelled as its code), a Latin word (read as pinyin), and fewer
    toned syllables than characters (a character was dropped: '荣威Ei5' loses its 5). Raises EspeakError when
    espeak-ng cannot be run.
    """
    tonal = is_tonal(voice)
    phones = phonemes(text, voice)
    problems = _text_problems(text, tonal)
    if text.strip(" \t\n，。？！、：；,.?!:;") and not phones.strip(" _|:!\n"):
        problems.append("espeak-ng gives no phonemes for it (nothing would be heard)")
    problems += [f"switches language: {word}" for word in _switched_words(phones)]
    if tonal:
        problems += _unknown_characters(phonemes(text, voice, trace=True))
        expected = sum(_is_cjk(ch) for ch in text) + len(re.findall(r"[A-Za-z]", text)) + len(_DIGITS.findall(text))
        check = SpeechCheck(text, voice, phones, ())
        untoned = [w for w in re.split(r"\s+|_[:!|]*", _SWITCH.sub(" ", phones)) if w and not _DIGITS.search(w)]
        if untoned:
            problems.append(f"syllables without a tone (not read as Chinese): {' '.join(untoned[:5])}")
        if check.tones < expected:
            problems.append(f"{check.tones} toned syllables for {expected} characters: espeak-ng skipped some")
    return SpeechCheck(text, voice, phones, tuple(dict.fromkeys(problems)))


def resolve_voice(voice: str) -> tuple[str, str | None]:
    """The voice to speak with, and a warning when it is not ``voice``.

    espeak-ng 1.51's ``cmn`` reads Chinese characters as pinyin spelled in English ('你好' -> "nee three hay
    three"), 1.52's reads a plate's letters in English: a Chinese voice that switches to English on the probe text
    is replaced by ``cmn-latn-pinyin`` when that one reads it in Chinese. An unknown voice is replaced too
    (espeak-ng would use English).
    """
    if problem := unknown_voice(voice):
        return DEFAULT_VOICE, f"{problem}; speaking with {DEFAULT_VOICE} instead"
    if not is_tonal(voice) or voice.lower() == MANDARIN_VOICE:
        return voice, None
    try:
        probe = check_speech(PROBE_TEXT, voice)
        if probe.ok:
            return voice, None
        better = check_speech(PROBE_TEXT, MANDARIN_VOICE)
    except EspeakError:
        return voice, None  # nothing to compare with; speaking will report espeak-ng's absence
    if not better.ok:
        return voice, None
    return MANDARIN_VOICE, (
        f"espeak-ng voice {voice!r} does not read {PROBE_TEXT} in Chinese ({probe.phonemes}: it switches to "
        f"English); speaking with {MANDARIN_VOICE} instead ({PROBE_TEXT} -> {better.phonemes}). "
        f"Set the voice to {MANDARIN_VOICE} to silence this warning"
    )
