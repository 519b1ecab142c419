"""Write the example READINGS.csv files here, and (with --expected) the replay output beside each as .jsonl.

    .venv/bin/python examples/readings/generate.py --expected

The series are hand-made and deterministic; tests/test_meter_replay.py checks that replaying each CSV gives
exactly its .jsonl (golden files). Regenerate the .jsonl only after checking a rule change on purpose.
"""

from __future__ import annotations

import io
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
TZ = ZoneInfo("Asia/Shanghai")
POLL = timedelta(minutes=5)


class Series:
    def __init__(self, start: datetime, total: float = 5230.0) -> None:
        self.t = start
        self.total = total
        self.rows: list[str] = ["time,total_litres"]
        self.row()

    def row(self, failed: bool = False) -> None:
        value = "" if failed else f"{self.total:g}"
        self.rows.append(f"{self.t.isoformat()},{value}")

    def use(self, litres: float, polls: int = 1) -> None:
        for _ in range(polls):
            self.t += POLL
            self.total += litres / polls
            self.row()

    def idle(self, hours: float, drip_lph: float = 0.0, failed: bool = False) -> None:
        for _ in range(int(hours * 12)):
            self.t += POLL
            self.total += drip_lph / 12
            self.row(failed)

    def day(self, wake: float = 7.0, uses: int = 8) -> None:
        """A usual day from local midnight: asleep, up at ``wake``, water every ~2 h, bed at 22:00."""
        self.idle(wake)
        for _ in range(uses):
            self.use(9, polls=2)
            self.idle(2 - 10 / 60)
        self.idle(24 - wake - uses * 2)

    def text(self) -> str:
        return "\n".join(self.rows) + "\n"


def silent_day() -> Series:
    """Two ordinary days, then the resident uses water at 07:00 and nothing more."""
    s = Series(datetime(2026, 3, 2, tzinfo=TZ))
    s.day()
    s.day()
    s.idle(7.0)
    s.use(9, polls=2)
    s.idle(17)
    return s


def tap_left_running() -> Series:
    """A tap opened at 10:00 that nobody closes (6 L/min), then closed after 2.5 h."""
    s = Series(datetime(2026, 3, 2, 8, tzinfo=TZ))
    s.use(9, polls=2)
    s.idle(2 - 10 / 60)
    s.use(6 * 150, polls=30)
    s.idle(1)
    return s


def meter_offline() -> Series:
    """The bus fails for 10 h from the morning while the resident goes on using water (the meter counts on): the
    water found when the readings come back proves she was there, so no inactivity alert for the offline hours. (A
    gap whose water shows no use would count as silence once the readings are back.)"""
    s = Series(datetime(2026, 3, 2, 6, tzinfo=TZ))
    s.use(9, polls=2)
    s.idle(3)
    s.use(9, polls=2)
    s.idle(5, failed=True)
    s.total += 18  # two flushes the reader did not see
    s.idle(5, failed=True)
    s.idle(3)
    s.use(9, polls=2)
    s.idle(1)
    return s


def dripping_tap() -> Series:
    """Three days with a 2 L/h drip under ordinary use, then a silent day: the drip must not hide it."""
    s = Series(datetime(2026, 3, 2, tzinfo=TZ))
    for _ in range(3):
        s.idle(7, drip_lph=2)
        for _ in range(8):
            s.use(9, polls=2)
            s.idle(2 - 10 / 60, drip_lph=2)
        s.idle(1, drip_lph=2)
    s.idle(7, drip_lph=2)
    s.use(9, polls=2)
    s.idle(14, drip_lph=2)
    return s


EXAMPLES = {
    "silent_day": silent_day,
    "tap_left_running": tap_left_running,
    "meter_offline": meter_offline,
    "dripping_tap": dripping_tap,
}


def main(argv: list[str]) -> int:
    expected = "--expected" in argv
    for name, make in EXAMPLES.items():
        csv_path = HERE / f"{name}.csv"
        csv_path.write_text(make().text(), encoding="utf-8")
        if expected:
            sys.path.insert(0, str(HERE.parents[1]))
            from meter_node.replay import read_rows, replay
            from meter_node.wellbeing import WellbeingSettings

            out = io.StringIO()
            replay(read_rows(csv_path), WellbeingSettings(), TZ, out)
            (HERE / f"{name}.jsonl").write_text(out.getvalue(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
