"""Questions to the technician: asked on stderr, answered on stdin, so stdout stays clean for scripts."""

from __future__ import annotations

import getpass
import sys

from provisioning.errors import EXIT_BAD_INPUT, ProvisionError


def say(text: str) -> None:
    """A line for the technician (progress, prompts, hints): stderr, flushed at once."""
    print(text, file=sys.stderr, flush=True)


def ask(question: str, default: str | None = None, *, what: str = "") -> str:
    """Ask one question; Enter gives ``default``. A closed stdin is a bad-input error naming ``what``."""
    shown = f" [{default}]" if default not in (None, "") else ""
    sys.stderr.write(f"{question}{shown}: ")
    sys.stderr.flush()
    line = sys.stdin.readline()
    if line == "":
        sys.stderr.write("\n")
        raise ProvisionError(
            EXIT_BAD_INPUT, f"no answer for {what or question}: input ended (give it as a flag, or run on a terminal)"
        )
    answer = line.rstrip("\r\n")
    if not sys.stdin.isatty():
        sys.stderr.write(answer + "\n")  # piped answers: keep the transcript readable
    if answer.strip() == "" and default is not None:
        return default
    return answer


def confirm(question: str, default: bool = True) -> bool:
    """A yes/no question; anything but y/yes/n/no is asked again."""
    hint = "Y/n" if default else "y/N"
    for _ in range(5):
        answer = ask(f"{question} ({hint})", "", what=question).strip().lower()
        if answer == "":
            return default
        if answer in {"y", "yes", "是", "对"}:
            return True
        if answer in {"n", "no", "否", "不"}:
            return False
        say("  please answer y or n")
    return False


def ask_secret(question: str) -> str:
    """A secret typed without echo (claim key); never stored anywhere but the caller's variable."""
    if sys.stdin.isatty():
        return getpass.getpass(f"{question}: ", stream=sys.stderr)
    # piped in by a script: read one line, still never echoed back
    line = sys.stdin.readline()
    if line == "":
        raise ProvisionError(EXIT_BAD_INPUT, f"no answer for {question}: input ended")
    return line.rstrip("\r\n")
