"""elevator-node replay: golden traces (hand-reasoned expected outputs), the CLI contract, bad traces exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from elevator_node.__main__ import main
from elevator_node.detector import INSPECTION_KIND, KINDS

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "examples" / "traces"
GOLDEN = sorted(TRACES.glob("*.csv"))
HEADER = "t,door,occupied,moving,level,alarm_button"


def config_for(trace: Path) -> Path:
    """The config a golden trace is replayed with (examples/traces/README.md)."""
    return TRACES / ("pir.toml" if trace.name.startswith("pir_") else "lift.toml")


def replay_lines(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_every_trace_has_its_expected_output() -> None:
    assert len(GOLDEN) >= 20
    for trace in GOLDEN:
        assert trace.with_suffix(".expected.jsonl").exists(), trace.name
    assert {p.name.removesuffix(".expected.jsonl") for p in TRACES.glob("*.expected.jsonl")} == {p.stem for p in GOLDEN}


@pytest.mark.parametrize("trace", GOLDEN, ids=lambda p: p.stem)
def test_golden_trace(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = replay_lines(capsys, str(trace), "--config", str(config_for(trace)))
    assert code == 0, err
    got = [json.loads(line) for line in lines]
    expected = [json.loads(line) for line in trace.with_suffix(".expected.jsonl").read_text("utf-8").splitlines()]
    assert got == expected


def test_golden_traces_cover_every_kind_and_state() -> None:
    seen: set[tuple[str, str]] = set()
    for path in TRACES.glob("*.expected.jsonl"):
        for line in path.read_text("utf-8").splitlines():
            event = json.loads(line)
            seen.add((event["kind"], event["state"]))
    for kind in KINDS:
        assert (kind, "raised") in seen and (kind, "cleared") in seen, kind
    assert (INSPECTION_KIND, "observed") in seen
    assert ("entrapment", "updated") in seen and ("alarm_button", "updated") in seen


def test_quiet_traces_really_are_near_misses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The traces expected to be silent would alarm with a shorter threshold: they test the threshold."""
    cfg = tmp_path / "short.toml"
    cfg.write_text((TRACES / "lift.toml").read_text() + "entrapment_s = 50\n")
    for name in ("left_before_90", "doors_reopen_at_89"):
        trace = TRACES / f"{name}.csv"
        assert trace.with_suffix(".expected.jsonl").read_text() == ""
        code, lines, _ = replay_lines(capsys, str(trace), "--config", str(cfg))
        assert code == 0
        assert any(json.loads(line)["kind"] == "entrapment" for line in lines), name


def test_long_ride_alarms_without_motion_and_level_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The documented false-alarm risk: the same long ride with only door + occupancy fitted is an entrapment."""
    blind = tmp_path / "blind.csv"
    rows = []
    for line in (TRACES / "normal_ride.csv").read_text().splitlines():
        if line and line[0].isdigit():
            t, door, occupied, _moving, _level, *rest = line.split(",")
            line = ",".join([t, door, occupied, "", "", *rest])
        rows.append(line)
    blind.write_text("\n".join(rows) + "\n")
    code, lines, _ = replay_lines(capsys, str(blind), "--config", str(TRACES / "lift.toml"))
    assert code == 0
    assert [json.loads(line)["t"] for line in lines] == [96.0, 113.0]  # raised 90 s after the close, cleared


def test_replay_without_config_uses_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(f"{HEADER}\n0,closed,1,,,\n90,closed,1,,,\n")
    code, lines, _ = replay_lines(capsys, str(trace))
    assert code == 0
    event = json.loads(lines[0])
    assert (event["t"], event["kind"], event["state"]) == (90.0, "entrapment", "raised")
    assert event["payload"]["label_zh"] == "困人" and event["payload"]["in_door_zone"] is None


def test_trace_ends_at_last_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(f"{HEADER}\n0,closed,1,0,1,\n89.9,closed,1,0,1,\n")
    code, lines, _ = replay_lines(capsys, str(trace))
    assert code == 0 and lines == []


def test_comments_blank_lines_and_spaces_are_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(f"# a comment\n\n{HEADER}\n0, closed, 1, 0, 1, 0\n  # another\n95,closed,1,0,1,0\n")
    code, lines, _ = replay_lines(capsys, str(trace))
    assert code == 0 and len(lines) == 1


BAD_ROWS = [
    ("bad header", "t,door,occupied\n0,closed,1\n", 1, "header must be"),
    ("unknown column", f"{HEADER},weight\n0,closed,1,,,,1\n", 1, "header must be"),
    ("door value", f"{HEADER}\n0,closed,1,,,\n5,ajar,1,,,\n", 3, "door = 'ajar'"),
    ("flag value", f"{HEADER}\n0,closed,yes,,,\n", 2, "occupied = 'yes'"),
    ("occupied empty", f"{HEADER}\n0,closed,,,,\n", 2, "occupied = ''"),
    ("moving value", f"{HEADER}\n0,closed,1,2,,\n", 2, "moving = '2'"),
    ("time back", f"{HEADER}\n0,closed,1,,,\n10,closed,1,,,\n9,closed,0,,,\n", 4, "goes back in time"),
    ("time text", f"{HEADER}\nsoon,closed,1,,,\n", 2, "could not convert"),
    ("negative time", f"{HEADER}\n-1,closed,1,,,\n", 2, "expected seconds >= 0"),
    ("nan time", f"{HEADER}\nnan,closed,1,,,\n", 2, "expected seconds >= 0"),
    ("field count", f"{HEADER}\n0,closed,1,,\n", 2, "5 fields, the header has 6"),
    ("restart value", f"{HEADER},restart\n0,closed,1,,,,\n5,closed,1,,,,now\n", 3, "restart = 'now'"),
    ("restart first", f"{HEADER},restart\n0,closed,1,,,,reboot\n", 2, "nothing to restore"),
    ("empty", "# only a comment\n", None, "empty trace"),
]


@pytest.mark.parametrize(("name", "text", "line", "why"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_rows_exit_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, line: int | None, why: str
) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(text)
    code, lines, err = replay_lines(capsys, str(trace))
    assert code == 2
    assert lines == []  # nothing on stdout, not even the events before the bad row
    assert why in err
    if line is not None:
        assert f"{trace}:{line}:" in err


def test_every_bad_row_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(f"{HEADER}\n0,closed,1,,,\n1,shut,1,,,\n2,closed,x,,,\n3,closed,1,,,\n")
    code, _, err = replay_lines(capsys, str(trace))
    assert code == 2 and f"{trace}:3:" in err and f"{trace}:4:" in err and f"{trace}:5:" not in err


def test_missing_trace_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = replay_lines(capsys, str(tmp_path / "nope.csv"))
    assert code == 2 and lines == [] and "nope.csv" in err


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text((TRACES / "lift.toml").read_text().replace("entrapment_s", "x") + "entrapmnet_s = 95\n")
    with pytest.raises(SystemExit) as info:
        main(["replay", str(GOLDEN[0]), "--config", str(cfg)])
    assert info.value.code == 2
    assert "elevator.entrapmnet_s" in capsys.readouterr().err


def test_console_script_prints_only_json_lines() -> None:
    """The real command in a fresh interpreter: stdout is JSON lines and nothing else, UTF-8 whatever the locale."""
    trace = TRACES / "trapped_between_floors.csv"
    result = subprocess.run(
        [sys.executable, "-m", "elevator_node", "replay", str(trace), "--config", str(config_for(trace))],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"},
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode("utf-8").splitlines()
    assert len(lines) == 6
    events = [json.loads(line) for line in lines]
    assert {"t", "kind", "state", "payload"} <= set(events[0])
    assert events[1]["payload"]["label_zh"] == "非平层关人"


def test_help_documents_both_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("replay", "run", "exit codes", "t,door,occupied,moving,level,alarm_button", "2  bad"):
        assert needle in text
    with pytest.raises(SystemExit) as info:
        main(["replay", "--help"])
    assert info.value.code == 0
    assert "TRACE" in capsys.readouterr().out.upper()


def test_a_spreadsheet_byte_order_mark_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.csv"
    trace.write_bytes(f"{HEADER}\r\n0,closed,1,,,\r\n95,closed,1,,,\r\n".encode("utf-8-sig"))
    code, lines, err = replay_lines(capsys, str(trace))
    assert code == 0, err
    assert len(lines) == 1
