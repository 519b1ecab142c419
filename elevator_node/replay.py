"""Replay a recorded or hand-written lift trace (CSV) through the detector and write its events as JSON lines.

Format (docs/elevator.md): header ``t,door,occupied,moving,level,alarm_button`` plus optional ``inspection``,
``power`` and ``restart`` columns; each row is a change and values hold until the next row; ``#`` lines are
comments. Between rows the detector is run at every timer deadline, as the node's tick would.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from common.events import Detection
from common.problems import ProblemsError
from elevator_node.config import ElevatorConfig
from elevator_node.detector import ElevatorDetector
from elevator_node.lift_state import LiftSnapshot, Timing

HEADER: tuple[str, ...] = ("t", "door", "occupied", "moving", "level", "alarm_button")
EXTRA_COLUMNS: tuple[str, ...] = ("inspection", "power", "restart")
# restart column: how the node came back, i.e. how well its downtime is known
RESTARTS: dict[str, Timing] = {"process": "monotonic", "reboot": "wall_clock", "reboot_unsynced": "lower_bound"}


class TraceError(ProblemsError):
    """A trace that cannot be replayed; ``problems`` holds one line per bad row, each naming its line."""


@dataclass(frozen=True)
class TraceRow:
    """One change in a trace: its time, the inputs from then on, and whether the node restarted there."""

    line: int
    t: float
    snapshot: LiftSnapshot
    restart: Timing | None = None


def _flag(column: str, value: str, required: bool) -> bool | None:
    if value == "" and not required:
        return None
    if value in ("1", "0"):
        return value == "1"
    allowed = "1 or 0" if required else "1, 0 or empty (not fitted)"
    raise ValueError(f"{column} = {value!r}: expected {allowed}")


def parse_trace(lines: Iterable[str], name: str = "trace") -> list[TraceRow]:
    """Parse a trace; raises TraceError naming every bad line (``name:LINE: problem``)."""
    problems: list[str] = []
    rows: list[TraceRow] = []
    columns: list[str] | None = None
    previous_t = -math.inf
    numbered = (
        (n, text) for n, text in enumerate(lines, start=1) if text.strip() and not text.lstrip().startswith("#")
    )
    for number, text in numbered:
        fields = [f.strip() for f in next(csv.reader([text]))]
        where = f"{name}:{number}"
        if columns is None:
            extra = fields[len(HEADER) :]
            if tuple(fields[: len(HEADER)]) != HEADER or any(c not in EXTRA_COLUMNS for c in extra):
                problems.append(
                    f"{where}: header must be {','.join(HEADER)} optionally followed by "
                    f"{', '.join(EXTRA_COLUMNS)}; got {text.strip()!r}"
                )
                break
            if len(set(extra)) != len(extra):
                problems.append(f"{where}: a column appears twice: {text.strip()!r}")
                break
            columns = fields
            continue
        if len(fields) != len(columns):
            problems.append(f"{where}: {len(fields)} fields, the header has {len(columns)}")
            continue
        row = dict(zip(columns, fields, strict=True))
        try:
            t = float(row["t"])
            if not math.isfinite(t) or t < 0:
                raise ValueError(f"t = {row['t']!r}: expected seconds >= 0")
            if t < previous_t:
                raise ValueError(f"t = {row['t']!r} goes back in time (previous row t = {previous_t:g})")
            if row["door"] not in ("open", "closed"):
                raise ValueError(f"door = {row['door']!r}: expected open or closed")
            restart = row.get("restart", "")
            if restart and restart not in RESTARTS:
                raise ValueError(f"restart = {restart!r}: expected empty or one of {', '.join(RESTARTS)}")
            if restart and not rows:
                raise ValueError("restart on the first row: there is nothing to restore")
            snapshot = LiftSnapshot(
                door_closed=row["door"] == "closed",
                occupied=bool(_flag("occupied", row["occupied"], required=True)),
                moving=_flag("moving", row["moving"], required=False),
                in_door_zone=_flag("level", row["level"], required=False),
                alarm_button=_flag("alarm_button", row["alarm_button"], required=False),
                inspection=_flag("inspection", row.get("inspection", ""), required=False),
                power_ok=_flag("power", row.get("power", ""), required=False),
            )
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        previous_t = t
        rows.append(TraceRow(number, t, snapshot, RESTARTS[restart] if restart else None))
    if columns is None and not problems:
        problems.append(f"{name}: empty trace: no header {','.join(HEADER)}")
    if problems:
        raise TraceError(problems)
    return rows


def replay(rows: list[TraceRow], settings: ElevatorConfig) -> Iterator[Detection]:
    """Run the rows through a detector, also at every timer deadline between rows, as the node's tick would."""
    detector = ElevatorDetector(settings)
    last_t: float | None = None
    previous: LiftSnapshot | None = None
    for row in rows:
        if row.restart is not None and last_t is not None:
            # the node was down since the last row: its state file is all that crosses the gap
            saved = json.loads(json.dumps(detector.export_state()))
            shift = row.t - last_t if row.restart == "lower_bound" else 0.0
            detector = ElevatorDetector.from_state(settings, saved, shift=shift, timing=row.restart)
        elif previous is not None:
            while (deadline := detector.next_deadline()) is not None and deadline < row.t:
                yield from detector.update(deadline, previous)
                last_t = deadline
        yield from detector.update(row.t, row.snapshot)
        last_t, previous = row.t, row.snapshot


def to_json_line(detection: Detection) -> str:
    """One replay output line: t, kind, state, severity, key (when set) and the payload."""
    out: dict[str, Any] = {
        "t": round(detection.at, 3),
        "kind": detection.kind,
        "state": detection.state,
        "severity": detection.severity,
    }
    if detection.key:
        out["key"] = detection.key
    out["payload"] = dict(detection.payload)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def replay_file(path: Path, settings: ElevatorConfig, out: TextIO) -> int:
    """Parse then replay ``path`` to ``out``; returns the number of events. Raises TraceError before any output."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of the header
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError([f"{path}: cannot read: {exc}"]) from None
    rows = parse_trace(text.splitlines(), str(path))
    count = 0
    for detection in replay(rows, settings):
        out.write(to_json_line(detection) + "\n")
        count += 1
    return count
