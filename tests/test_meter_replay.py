"""`meter-node replay`: golden example files, bad input naming the line, config settings, restart equivalence."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from meter_node.replay import main, read_rows, replay
from meter_node.wellbeing import WellbeingMonitor, WellbeingSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "readings"
TZ = ZoneInfo("Asia/Shanghai")


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("csv_path", sorted(EXAMPLES.glob("*.csv")), ids=lambda p: p.stem)
def test_example_replays_to_its_golden_output(csv_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main([str(csv_path)], capsys)
    assert code == 0, err
    assert out == csv_path.with_suffix(".jsonl").read_text(encoding="utf-8")
    for line in out.splitlines():
        event = json.loads(line)
        assert {"time", "kind", "state", "severity", "payload"} <= set(event)


def test_the_examples_say_what_they_are_for() -> None:
    def events(name: str) -> list[tuple[str, str, str]]:
        lines = (EXAMPLES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        return [(e["kind"], e["state"], e["severity"]) for e in map(json.loads, lines)]

    assert ("inactivity", "updated", "urgent") in events("silent_day")
    assert ("continuous_flow", "raised", "urgent") in events("tap_left_running")
    assert events("meter_offline") == []  # ten hours offline in which she used water are no silence
    assert ("inactivity", "raised", "warning") in events("dripping_tap")
    assert ("leak_suspected", "raised", "info") in events("dripping_tap")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "readings.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("when,litres\n2026-03-02T08:00:00+08:00,1\n", 1, "header"),
        ("time,total_litres\n2026-03-02T08:00:00+08:00,1\nyesterday,2\n", 3, "not ISO 8601"),
        ("time,total_litres\n2026-03-02T08:00:00,1\n", 2, "no UTC offset"),
        ("time,total_litres\n2026-03-02T08:00:00+08:00,lots\n", 2, "not a number"),
        ("time,total_litres\n2026-03-02T08:00:00+08:00,-5\n", 2, ">= 0"),
        ("time,total_litres\n2026-03-02T08:00:00+08:00,nan\n", 2, "finite"),
        ("time,total_litres\n2026-03-02T08:00:00+08:00,1,2\n", 2, "expected 2 fields"),
        ("time,total_litres\n2026-03-02T08:00:00+08:00,1\n2026-03-02T07:59:00+08:00,1\n", 3, "not after"),
    ],
)
def test_bad_rows_exit_2_naming_the_line_and_print_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, words: str
) -> None:
    path = _write(tmp_path, text)
    code, out, err = run_main([str(path)], capsys)
    assert code == 2
    assert out == ""
    assert f"{path}:{line}:" in err and words in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main([str(tmp_path / "nope.csv")], capsys)
    assert (code, out) == (2, "")
    assert "cannot open" in err


def test_empty_total_is_a_failed_read_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path, "time,total_litres\n2026-03-02T08:00:00+08:00,10\n\n2026-03-02T08:01:00+08:00,\n")
    assert read_rows(path) == [(1772409600.0, 10.0), (1772409660.0, None)]


def _silence_csv(tmp_path: Path, hours: int) -> Path:
    rows = ["time,total_litres", "2026-03-02T08:00:00+08:00,100", "2026-03-02T08:01:00+08:00,106"]
    rows += [f"2026-03-02T{8 + h // 60:02d}:{h % 60:02d}:00+08:00,106" for h in range(2, hours * 60)]
    return _write(tmp_path, "\n".join(rows) + "\n")


def _config(tmp_path: Path, wellbeing: str, timezone: str = "Asia/Shanghai") -> Path:
    path = tmp_path / "node.toml"
    path.write_text(
        f"""
[node]
id = "test-meters"
role = "meter"
site = "test-site"
timezone = "{timezone}"

[central]
url = "http://127.0.0.1:9"

[meter.serial]
port = "/dev/null"

[meter.wellbeing]
{wellbeing}
""",
        encoding="utf-8",
    )
    return path


def test_config_thresholds_and_time_zone_are_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readings = _silence_csv(tmp_path, 4)
    code, out, _ = run_main([str(readings)], capsys)
    assert code == 0 and out == ""  # 4 h by day: nothing with the defaults
    config = _config(tmp_path, "inactivity_warning_h = 3.0", timezone="Asia/Tokyo")
    code, out, err = run_main([str(readings), "--config", str(config)], capsys)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["kind"], e["state"], e["severity"]) for e in events] == [("inactivity", "raised", "warning")]
    assert events[0]["time"] == "2026-03-02T12:01:00+09:00"  # printed in the node's time zone


def test_a_replay_asking_first_has_nobody_to_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readings = _silence_csv(tmp_path, 4)
    config = _config(tmp_path, "inactivity_warning_h = 3.0\nask_first_min = 10.0", timezone="Asia/Tokyo")
    code, out, err = run_main([str(readings), "--config", str(config)], capsys)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["kind"], e["time"]) for e in events] == [
        ("check_in", "2026-03-02T11:51:00+09:00"),  # the question, 10 minutes before the warning is due
        ("inactivity", "2026-03-02T12:01:00+09:00"),  # no answer in a replay: told when due, as without asking
    ]


def test_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readings = _silence_csv(tmp_path, 1)
    config = _config(tmp_path, "inactivity_warning_h = 0.1\nno_such_key = 1")
    code, out, err = run_main([str(readings), "--config", str(config)], capsys)
    assert (code, out) == (2, "")
    assert "inactivity_warning_h" in err and "no_such_key" in err


def test_replay_equals_a_node_restarted_halfway(tmp_path: Path) -> None:
    """Replaying gives what the live node gives, even across a restart that reloads the saved state."""
    rows = read_rows(EXAMPLES / "dripping_tap.csv")
    out = io.StringIO()
    replay(rows, WellbeingSettings(), TZ, out)
    expected = out.getvalue().splitlines()
    half = len(rows) // 2
    first = WellbeingMonitor(WellbeingSettings(), TZ)
    found = [d for t, v in rows[:half] for d in first.update(t, v)]
    second = WellbeingMonitor(WellbeingSettings(), TZ, json.loads(json.dumps(first.state())))
    found += [d for t, v in rows[half:] for d in second.update(t, v)]
    assert [(d.kind, d.state, d.severity) for d in found] == [
        (e["kind"], e["state"], e["severity"]) for e in map(json.loads, expected)
    ]


def test_meter_node_command_dispatches_replay_with_only_json_on_stdout() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "meter_node", "replay", str(EXAMPLES / "tap_left_running.csv")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (EXAMPLES / "tap_left_running.jsonl").read_text(encoding="utf-8")
