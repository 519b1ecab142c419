"""The kiosk's words, from one data file (kiosk/texts.toml): screen lines Chinese first, English under, voice.

Loaded and checked once at start: every state has every line, and every placeholder can be filled, so a typo
in the texts file stops the kiosk with a clear message instead of crashing on a resident's press. Voice lines
become prompts with stable ids (``kiosk.<state>``) whose numbers are written for listening (common.spoken): the
hotline digit by digit with 幺, the plate character by character, minutes as a whole count.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.problems import ProblemsError
from common.spoken import (
    COUNT_WORDS,
    DIGITS_ZH,
    PHONE_ONE,
    PLATE_WORDS,
    Language,
    code_for_listening,
    minutes_for_listening,
    phone_for_listening,
    plate_for_listening,
)
from kiosk.view import STATES

if TYPE_CHECKING:  # the voice is needed only after the first screen is drawn (kiosk start-up)
    from common.speech.voice import Prompt

DEFAULT_TEXTS = Path(__file__).with_name("texts.toml")
VOICE_KEYS = ("voice_zh", "voice_en")
STATE_KEYS = ("heading_zh", "heading_en", "detail_zh", "detail_en", *VOICE_KEYS)
# recorded prompts moved to prompt packs ([audio] pack): one folder for every role, with fallback to espeak-ng
OLD_WAV_KEYS = ("wav_zh", "wav_en")
PROMPT_PREFIX = "kiosk."
LABEL_KEYS = (
    "call_zh",
    "call_en",
    "call_hint_zh",
    "call_hint_en",
    "cancel_zh",
    "cancel_en",
    "back_zh",
    "back_en",
    "keep_zh",
    "keep_en",
    "confirm_zh",
    "confirm_en",
    "help_zh",
    "help_en",
    "waited_zh",
    "waited_en",
    "pickup_zh",
    "pickup_en",
    "eta_title_zh",
    "eta_title_en",
    "eta_zh",
    "eta_en",
    "eta_due_zh",
    "eta_due_en",
    "hotline_zh",
    "hotline_en",
)
# what each placeholder may hold; a state without a car cannot name one
CAR_FIELDS = ("plate", "plate_spoken", "colour", "model", "colour_zh", "model_zh", "eta_min")
ALWAYS_FIELDS = ("pickup_point", "pickup_point_en", "hotline")
CAR_STATES = frozenset({"assigned", "arrived", "car_late", "confirm_cancel"})
# minutes since the press that started the ride
WAIT_STATES = frozenset({"searching", "searching_wait"})
# prompts that are spoken only, never a screen of their own: [section] with voice_zh and voice_en
VOICE_ONLY = ("searching_wait",)
# how each placeholder is said: fixed ones (from the config) are written into the prompt's text, the others are
# the prompt's variable fields
FIXED_VOICE_FIELDS = ("pickup_point", "pickup_point_en", "hotline")
# example cars and waits for speech checks and listings: a blue 7-character plate, a green 8-character one,
# a W (said in two syllables), models whose letters and digits a Mandarin voice must spell
EXAMPLE_CARS = (
    {
        "plate": "沪A·5G832",
        "colour_zh": "白色",
        "model_zh": "大众朗逸",
        "colour": "white",
        "model": "Volkswagen Lavida",
    },
    {"plate": "沪A·D12345", "colour_zh": "天蓝色", "model_zh": "荣威Ei5", "colour": "sky blue", "model": "Roewe Ei5"},
    {"plate": "苏E·W0W88", "colour_zh": "深蓝色", "model_zh": "别克GL8", "colour": "dark blue", "model": "Buick GL8"},
)
EXAMPLE_MINUTES = (2, 1, 12)
# the words a recorded voice needs for a field (car colours and models come from the central: record those seen)
WORDS_OF = {
    "plate": PLATE_WORDS,
    "plate_spoken": PLATE_WORDS,
    "hotline": (*DIGITS_ZH, PHONE_ONE),
    "eta_min": COUNT_WORDS,
    "minutes": COUNT_WORDS,
}


class TextsError(ProblemsError):
    """The texts file cannot be used; ``problems`` has one line each."""


@dataclass(frozen=True)
class Texts:
    """Lines by state and label, with the fixed parameters (pickup point, hotline) already known."""

    states: Mapping[str, Mapping[str, str]]
    labels: Mapping[str, str]
    pickup_point: str
    hotline: str
    source: Path
    pickup_point_en: str = ""

    def params(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "pickup_point": self.pickup_point,
            "pickup_point_en": self.pickup_point_en or self.pickup_point,
            "hotline": self.hotline,
        }
        params.update(extra or {})
        if "plate" in params:
            params["plate_spoken"] = speakable_plate(str(params["plate"]))
        for zh, en in (("colour_zh", "colour"), ("model_zh", "model")):
            params.setdefault(zh, params.get(en, ""))
        return params

    def line(self, state: str, key: str, extra: Mapping[str, Any] | None = None) -> str:
        """A screen line of ``state``: key is heading_zh, heading_en, detail_zh or detail_en."""
        return self.states[state][key].format(**self.params(extra))

    def voice(self, key: str, language: Language, extra: Mapping[str, Any] | None = None) -> str:
        """The voice prompt for state ``key`` in ``language`` (zh or en), as it is said."""
        return self.prompt(key, language).fill(self.voice_fields(extra, language))

    def prompt(self, key: str, language: Language, fixed: bool = True) -> Prompt:
        """State ``key``'s voice line as a prompt (id ``kiosk.<key>``): the gate and hotline written in (unless
        not ``fixed``), the car and the minutes left as fields; ``examples`` fill them with EXAMPLE_CARS."""
        fills = {name: self._spoken(name, value, language) for name, value in self.params().items()}
        template, words = "", set()
        for literal, name, _, _ in string.Formatter().parse(self.states[key][f"voice_{language}"]):
            template += literal.replace("{", "{{").replace("}", "}}")
            if name is None:
                continue
            if fixed and name in FIXED_VOICE_FIELDS:
                template += fills[name].replace("{", "{{").replace("}", "}}")
            else:
                template += "{" + name + "}"
                words |= set(WORDS_OF.get(name, ()))
        cases = zip(EXAMPLE_CARS, EXAMPLE_MINUTES, strict=True)
        examples = tuple(self.voice_fields({**car, "eta_min": m, "minutes": m}, language) for car, m in cases)
        from common.speech.voice import Prompt  # deferred with the voice (see the TYPE_CHECKING import)

        return Prompt(PROMPT_PREFIX + key, template, f"the kiosk shows {key}", examples, tuple(sorted(words)))

    def prompts(self, language: Language, fixed: bool = True) -> tuple[Prompt, ...]:
        """Every voice prompt of the kiosk, in state order."""
        return tuple(self.prompt(state, language, fixed) for state in self.states)

    def voice_fields(self, extra: Mapping[str, Any] | None, language: Language) -> dict[str, str]:
        """The variable parts of a voice prompt (car, minutes), each written for listening."""
        values = self.params(extra)
        return {name: self._spoken(name, value, language) for name, value in values.items()}

    @staticmethod
    def _spoken(name: str, value: Any, language: Language) -> str:
        if name == "hotline":
            return phone_for_listening(str(value), language)
        if name in ("plate", "plate_spoken"):
            return plate_for_listening(str(value), language)
        if name in ("eta_min", "minutes"):
            return minutes_for_listening(float(value), language)
        return code_for_listening(str(value), language)

    def label(self, key: str, **extra: Any) -> str:
        return self.labels[key].format(**self.params(extra))


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def load_texts(path: Path | None, pickup_point: str, hotline: str, pickup_point_en: str = "") -> Texts:
    """Read and check a texts file (default: the built-in one); raises TextsError naming each problem."""
    file = path or DEFAULT_TEXTS
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TextsError([f"{file}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise TextsError([f"{file}: invalid TOML: {exc}"]) from None
    problems: list[str] = []
    states: dict[str, dict[str, str]] = {}
    for state in (*STATES, *VOICE_ONLY):
        table = data.get(state)
        if not isinstance(table, dict):
            problems.append(f"{file}: [{state}]: missing section")
            continue
        allowed = set(ALWAYS_FIELDS) | (set(CAR_FIELDS) if state in CAR_STATES else set())
        allowed |= {"minutes"} if state in WAIT_STATES else set()
        keys = STATE_KEYS if state in STATES else VOICE_KEYS
        for key in keys:
            value = table.get(key)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{file}: {state}.{key}: missing or empty")
                continue
            try:
                unknown = _fields(value) - allowed
            except ValueError as exc:
                problems.append(f"{file}: {state}.{key}: bad braces ({exc})")
                continue
            if unknown:
                problems.append(
                    f"{file}: {state}.{key}: placeholder {{{sorted(unknown)[0]}}} not available here; "
                    f"allowed: {', '.join(sorted(allowed))}"
                )
        for key in OLD_WAV_KEYS:
            if key in table:
                problems.append(
                    f"{file}: {state}.{key}: recorded prompts are now a prompt pack: record {PROMPT_PREFIX}{state} "
                    "in a pack folder and set [audio] pack (provision prompts --role kiosk lists what to record)"
                )
        for extra in sorted(set(table) - set(keys) - set(OLD_WAV_KEYS)):
            problems.append(f"{file}: {state}.{extra}: unknown key; allowed: {', '.join(keys)}")
        states[state] = {k: v for k, v in table.items() if isinstance(v, str)}
    labels = data.get("labels")
    if not isinstance(labels, dict):
        problems.append(f"{file}: [labels]: missing section")
        labels = {}
    for key in LABEL_KEYS:
        if not isinstance(labels.get(key), str):
            problems.append(f"{file}: labels.{key}: missing")
    for section in sorted(set(data) - set(STATES) - set(VOICE_ONLY) - {"labels"}):
        problems.append(f"{file}: [{section}]: unknown section")
    if problems:
        raise TextsError(problems)
    texts = Texts(states, dict(labels), pickup_point, hotline, file, pickup_point_en)
    sample = {"plate": "沪A·D12345", "colour": "white", "model": "car", "eta_min": 3, "minutes": 3, "seconds": 5}
    for key in LABEL_KEYS:
        try:
            texts.label(key, **sample)
        except (KeyError, ValueError, IndexError) as exc:
            problems.append(f"{file}: labels.{key}: cannot be filled in ({exc})")
    if problems:
        raise TextsError(problems)
    return texts


def speakable_plate(plate: str) -> str:
    """A plate read character by character: 沪A·D12345 -> '沪 A D 1 2 3 4 5' (separators dropped)."""
    return " ".join(ch for ch in plate if ch.isalnum())
