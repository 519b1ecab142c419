"""Every prompt a role can say, by stable id, and the checks on them: the speech check with the real espeak-ng
(each prompt read in the voice's language) and a prompt pack's coverage (which prompts it records).

Used by ``provision prompts`` and ``provision selftest``; the tests run the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.config import NodeConfig
from common.speech.voice import Prompt
from common.spoken import Language
from elevator_node.voice import prompts as lift_prompts
from hal.espeak import EspeakError, SpeechCheck, check_speech, resolve_voice
from kiosk.texts import load_texts
from meter_node.voice import prompts as meter_prompts

ROLES = ("elevator", "kiosk", "meter")
# the prompt the self-test plays on each role: the one that matters most to the person who hears it
SELFTEST_PROMPT = {"elevator": "lift.entrapment", "kiosk": "kiosk.idle", "meter": "meter.chime"}
# what the kiosk's texts say without a config: the example gate and hotline of examples/kiosk.toml
EXAMPLE_PICKUP, EXAMPLE_PICKUP_EN, EXAMPLE_HOTLINE = "长白新村北门", "Changbai Xincun North Gate", "021-6543 2100"


def voice_language(config: NodeConfig | None) -> Language:
    """The language a node's prompts are in: the kiosk's voice_language, else Chinese."""
    if config is not None and config.node.role == "kiosk":
        return config.role_config.voice_language
    return "zh"


def role_prompts(role: str, config: NodeConfig | None = None) -> tuple[Prompt, ...]:
    """Every prompt ``role`` can say: with this node's texts when ``config`` is given, else the defaults (the
    kiosk's gate and hotline then stay {fields})."""
    if role == "elevator":
        return lift_prompts(config.role_config if config else None)
    if role == "meter":
        return meter_prompts()
    if role == "kiosk":
        if config is None:
            texts = load_texts(None, EXAMPLE_PICKUP, EXAMPLE_HOTLINE, EXAMPLE_PICKUP_EN)
            return texts.prompts("zh", fixed=False)
        kiosk = config.role_config
        texts = load_texts(kiosk.texts, kiosk.pickup_point, kiosk.hotline, kiosk.pickup_point_en)
        return texts.prompts(kiosk.voice_language)
    raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


@dataclass(frozen=True)
class PromptCheck:
    """The speech check of one prompt: each text it can take (its examples) as espeak-ng reads it."""

    prompt: Prompt
    checks: tuple[SpeechCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[str]:
        return [f"{c.text!r}: {p}" for c in self.checks for p in c.problems]


def check_prompts(prompts: tuple[Prompt, ...], voice: str) -> tuple[str, str | None, list[PromptCheck]]:
    """Run the speech check over every text of ``prompts`` with the voice a node would really use.

    Returns (that voice, the warning when it is not ``voice``, one result per prompt). Raises EspeakError when
    espeak-ng cannot run.
    """
    used, warning = resolve_voice(voice)
    results = [PromptCheck(p, tuple(check_speech(text, used) for text in p.texts())) for p in prompts]
    return used, warning, results


__all__ = ["EspeakError", "check_prompts", "role_prompts", "voice_language"]
