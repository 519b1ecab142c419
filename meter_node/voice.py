"""What a meter node says in a home: the chime prompt, with its stable id (a prompt pack records it by this id)."""

from __future__ import annotations

from common.speech.voice import Prompt

CHIME, TAKEN_IN = "meter.chime", "meter.taken_in"
# "Hello, if you are fine, please press the 'I'm OK' button." (Mandarin)
CHIME_TEXT = "您好，如果您一切安好，请按一下“我很好”按钮。"
# "Hello, we have been told, and someone is coming to see you. Please wait." (Mandarin)
TAKEN_IN_TEXT = "您好，已经有人收到通知，马上来看您，请您稍等。"


def prompts(section: object | None = None) -> tuple[Prompt, ...]:
    """The meter node's prompts (the same for every config)."""
    return (
        Prompt(CHIME, CHIME_TEXT, "in the home when a wellbeing alert is raised there (household.chime)"),
        Prompt(TAKEN_IN, TAKEN_IN_TEXT, "in the home, once, when somebody acknowledges its wellbeing alert"),
    )
