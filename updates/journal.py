"""The updater's journal: which phase an update is in, from which version to which, and what happened last.

Written atomically (temp file, fsync, rename) before each risky step, so a run that starts after a kill -9 or
a power cut knows what was half done: ``switching`` is undone, ``rolling_back`` is finished, ``trial`` is judged.
Reports the central has not yet received wait in ``unreported`` (a halted rollout depends on them).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from common.files import write_atomic
from updates.manifest import VERSION_PATTERN

log = logging.getLogger(__name__)

PHASES = ("idle", "switching", "trial", "rolling_back")
HISTORY = 20


@dataclass
class Journal:
    """The persisted state; ``path`` is where it lives."""

    phase: str = "idle"
    from_version: str = ""
    to_version: str = ""
    rollout: int | None = None
    started_wall: float = 0.0
    trial_deadline_wall: float = 0.0
    restarted_wall: float = 0.0  # when the node was restarted on to_version (0: not yet, or a kill came first)
    config_before_sha: str = ""
    config_after_sha: str = ""
    reason: str = ""
    last_check_wall: float = 0.0
    last_check: str = ""
    last_result: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    unreported: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Journal:
        """The journal on disk; a fresh one when there is none or it cannot be read (said in the log)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.error("update journal %s unreadable (%s); starting from a clean one", path, exc)
            return cls()
        known = {f.name for f in fields(cls)}
        journal = cls(**{k: v for k, v in data.items() if k in known})
        if journal.phase not in PHASES:
            journal.phase = "idle"
        return journal

    def save(self, path: Path) -> None:
        write_atomic(Path(path), json.dumps(asdict(self), indent=1, sort_keys=True), mode=0o644)

    def finish(self, state: str, version: str, reason: str, at: float) -> dict[str, Any]:
        """End the update in progress with an outcome; queue its report; back to idle. Returns the outcome."""
        outcome = {
            "state": state,
            "version": version,
            "from_version": self.from_version,
            "rollout": self.rollout,
            "reason": reason,
            "at": at,
        }
        self.last_result = outcome
        self.history = [*self.history, outcome][-HISTORY:]
        if re.fullmatch(VERSION_PATTERN, version):  # a bundle refused before its manifest was read has none
            self.unreported = [*self.unreported, outcome][-HISTORY:]
        self.phase = "idle"
        self.reason = reason
        return outcome
