"""An error that reports every problem found at once, one line each (a config file, a prompt pack, a trace, a
meter profile, the kiosk's texts), so the person fixing the file sees them all in one go."""

from __future__ import annotations


class ProblemsError(Exception):
    """``problems``: one human-readable line per problem; the message is all of them, one a line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
