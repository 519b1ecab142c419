"""The kiosk's words, from one data file (kiosk/texts.toml): screen lines Chinese first, English under, voice.

Loaded and checked once at start: every state has every line, and every placeholder can be filled, so a typo
in the texts file stops the kiosk with a clear message instead of crashing on a resident's press.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.ride import STATES, speakable_plate

DEFAULT_TEXTS = Path(__file__).with_name("texts.toml")
STATE_KEYS = ("heading_zh", "heading_en", "detail_zh", "detail_en", "voice_zh", "voice_en")
# optional recorded prompts, relative to the texts file; played instead of the spoken text
WAV_KEYS = ("wav_zh", "wav_en")
LABEL_KEYS = (
    "call_zh",
    "call_en",
    "call_hint_zh",
    "call_hint_en",
    "cancel_zh",
    "cancel_en",
    "back_zh",
    "back_en",
    "retry_zh",
    "retry_en",
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
CAR_STATES = frozenset({"assigned", "arrived"})


class TextsError(Exception):
    """The texts file cannot be used; ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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

    def voice(self, key: str, language: str, extra: Mapping[str, Any] | None = None) -> str:
        """The voice prompt for state ``key`` in ``language`` (zh or en)."""
        return self.states[key][f"voice_{language}"].format(**self.params(extra))

    def wav(self, key: str, language: str) -> Path | None:
        """A recorded prompt for state ``key`` (absolute path), or None: then the text is spoken."""
        name = self.states[key].get(f"wav_{language}")
        return (self.source.parent / name) if name else None

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
    for state in STATES:
        table = data.get(state)
        if not isinstance(table, dict):
            problems.append(f"{file}: [{state}]: missing section")
            continue
        allowed = set(ALWAYS_FIELDS) | (set(CAR_FIELDS) if state in CAR_STATES else set())
        for key in STATE_KEYS:
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
        for key in WAV_KEYS:
            if key in table and not (isinstance(table[key], str) and (file.parent / table[key]).is_file()):
                problems.append(f"{file}: {state}.{key} = {table[key]!r}: no such WAV file next to the texts file")
        for extra in sorted(set(table) - set(STATE_KEYS) - set(WAV_KEYS)):
            allowed = ", ".join(STATE_KEYS + WAV_KEYS)
            problems.append(f"{file}: {state}.{extra}: unknown key; allowed: {allowed}")
        states[state] = {k: v for k, v in table.items() if isinstance(v, str)}
    labels = data.get("labels")
    if not isinstance(labels, dict):
        problems.append(f"{file}: [labels]: missing section")
        labels = {}
    for key in LABEL_KEYS:
        if not isinstance(labels.get(key), str):
            problems.append(f"{file}: labels.{key}: missing")
    for section in sorted(set(data) - set(STATES) - {"labels"}):
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
