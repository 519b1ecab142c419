"""`meter-node replay READINGS.csv [--config FILE]`: run recorded meter totals through the wellbeing rules.

The CSV has the header ``time,total_litres``; time is ISO 8601 with a UTC offset; an empty total is a failed read.
Every detection is printed as one JSON object per line (time, kind, state, severity, recipients, payload) and
nothing else goes to stdout. The same ``WellbeingMonitor`` code path as the live node learns from the history, so
replaying 60 days gives the alerts the node would have raised. Exit 0 done, 2 bad input or config.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.config import ConfigError, load_config
from common.events import Detection
from meter_node.wellbeing import WellbeingMonitor, WellbeingSettings, parse_local_date, recipients_for

EXIT_BAD_INPUT = 2
HEADER = ["time", "total_litres"]


class BadInput(Exception):
    """A problem with the replay input; the message names the file and line."""


def read_rows(path: Path) -> list[tuple[float, float | None]]:
    """All rows as (Unix time, litres or None); raises BadInput naming the first bad line."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        try:
            return list(_parse(path, handle))
        except UnicodeDecodeError as exc:
            raise BadInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except csv.Error as exc:
            raise BadInput(f"{path}: not valid CSV ({exc})") from None


def _parse(path: Path, handle: TextIO) -> Iterator[tuple[float, float | None]]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None or [h.strip().lstrip("\ufeff") for h in header] != HEADER:
        raise BadInput(f"{path}:1: header must be 'time,total_litres', got {','.join(header or [])!r}")
    previous = -math.inf
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines carry nothing
        if len(row) != 2:
            raise BadInput(f"{path}:{line}: expected 2 fields (time,total_litres), got {len(row)}")
        text_time, text_total = row[0].strip(), row[1].strip()
        try:
            when = datetime.fromisoformat(text_time)
        except ValueError:
            raise BadInput(f"{path}:{line}: time {text_time!r} is not ISO 8601") from None
        if when.tzinfo is None:
            raise BadInput(f"{path}:{line}: time {text_time!r} has no UTC offset (e.g. +08:00)")
        t = when.timestamp()
        if t <= previous:
            raise BadInput(f"{path}:{line}: time {text_time!r} is not after the previous row's")
        previous = t
        total: float | None
        if text_total == "":
            total = None
        else:
            try:
                total = float(text_total)
            except ValueError:
                raise BadInput(f"{path}:{line}: total_litres {text_total!r} is not a number") from None
            if not math.isfinite(total) or total < 0:
                raise BadInput(f"{path}:{line}: total_litres {text_total!r} must be a finite number >= 0")
        yield t, total


def detection_json(detection: Detection, tz: ZoneInfo) -> str:
    """One output line: the detection as the node would send it, with local ISO time."""
    body = {
        "time": datetime.fromtimestamp(detection.at, tz).isoformat(timespec="seconds"),
        "kind": detection.kind,
        "state": detection.state,
        "severity": detection.severity,
        "recipients": list(recipients_for(detection)),
        "payload": dict(detection.payload),
    }
    if detection.key:
        body["key"] = detection.key
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _settings_from_config(path: Path, meter_id: str | None) -> tuple[WellbeingSettings, str, str, str]:
    """(settings, time zone, meter id, away_until) from a meter node config; raises BadInput."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise BadInput("\n".join(f"config error: {line}" for line in exc.problems)) from None
    if config.node.role != "meter":
        raise BadInput(f"config error: {path}: node.role = {config.node.role!r}: replay needs a meter config")
    section = config.role_config
    meters = list(getattr(section, "meters", ()))
    chosen = next((m for m in meters if m.id == meter_id), None) if meter_id else (meters[0] if meters else None)
    if meter_id and chosen is None:
        raise BadInput(f"config error: {path}: no meter with id {meter_id!r}")
    away = chosen.household.away_until if chosen is not None else ""
    settings = section.wellbeing if chosen is None else chosen.household.settings(section.wellbeing)
    return settings, config.node.timezone, chosen.id if chosen is not None else "", away


def replay(
    rows: list[tuple[float, float | None]],
    settings: WellbeingSettings,
    tz: ZoneInfo,
    out: TextIO,
    key: str = "",
    away_until: str = "",
) -> int:
    """Feed the rows to a fresh monitor exactly as the node polls; print each detection. Returns the count."""
    monitor = WellbeingMonitor(settings, tz, key=key)
    count = 0
    for n, (t, total) in enumerate(rows):
        detections = monitor.update(t, total)
        if n == 0 and away_until:
            until = parse_local_date(away_until, tz)
            if until > t:  # the node applies a configured away date at start, if it is still ahead
                detections += monitor.set_away(until, t)
        for detection in detections:
            out.write(detection_json(detection, tz) + "\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="meter-node replay",
        description="Replay READINGS.csv (time,total_litres) through the wellbeing rules; one JSON event per line.",
        epilog="Exit codes: 0 done, 2 bad input or config (the message names the file and line).",
    )
    parser.add_argument("readings", type=Path, metavar="READINGS.csv")
    parser.add_argument("--config", type=Path, help="meter node config: [meter.wellbeing] and node.timezone")
    parser.add_argument("--meter", help="which meter's household in the config (default: the first)")
    parser.add_argument("--timezone", help="IANA time zone without a config (default Asia/Shanghai)")
    args = parser.parse_args(argv)
    try:
        settings, tz_name, key, away = WellbeingSettings(), args.timezone or "Asia/Shanghai", "", ""
        if args.config is not None:
            settings, tz_name, key, away = _settings_from_config(args.config, args.meter)
            tz_name = args.timezone or tz_name
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadInput(f"unknown time zone {tz_name!r}") from None
        rows = read_rows(args.readings)
    except BadInput as exc:
        print(f"meter-node replay: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    replay(rows, settings, tz, sys.stdout, key=key, away_until=away)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
