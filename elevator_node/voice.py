"""What the lift car says, as prompts with stable ids (a prompt pack records them by these ids)."""

from __future__ import annotations

from common.speech.voice import Prompt
from elevator_node.config import ElevatorConfig, VoicePrompts

ENTRAPMENT, REASSURANCE, ALARM_ACK = "lift.entrapment", "lift.reassurance", "lift.alarm_ack"
TAKEN_IN = "lift.taken_in"


def prompts(section: ElevatorConfig | None = None) -> tuple[Prompt, ...]:
    """The car's prompts with this lift's texts ([elevator.voice]), or the defaults."""
    voice = section.voice if section is not None else VoicePrompts()
    return (
        Prompt(ENTRAPMENT, voice.question, "once, when a passenger has been trapped for entrapment_s"),
        Prompt(REASSURANCE, voice.reassurance, "every voice.repeat_s until the entrapment clears"),
        Prompt(ALARM_ACK, voice.alarm_ack, "when a held alarm button raises an alert"),
        Prompt(TAKEN_IN, voice.taken_in, "once, when a person at the central acknowledges the alarm (EN 81-28)"),
    )
