"""provision init: by flags, by answers on stdin, bad input (exit 2 naming the field), no half-written file."""

from __future__ import annotations

import io
import stat
import tomllib
from pathlib import Path

import pytest

from common import tomlwrite
from common.config import load_config
from provisioning.cli import main

ROOT = Path(__file__).resolve().parent.parent
ELEVATOR_FLAGS = [
    "init",
    "--role",
    "elevator",
    "--non-interactive",
    "--node-id",
    "cbxc-b7-u2-lift1",
    "--site",
    "changbai-xincun",
    "--area",
    "Yangpu, Changbai Xincun",
    "--location",
    'Building 7, Unit 2 "east" lift',
    "--central-url",
    "http://127.0.0.1:8080",
    "--building",
    "7",
    "--unit",
    "2",
    "--door-pin",
    "17",
    "--door-active-high",
    "no",
    "--door-pull-up",
    "yes",
    "--occupancy-pin",
    "27",
]


def run(argv: list[str], stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


def test_init_by_flags_writes_a_config_the_node_accepts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "etc" / "node.toml"
    assert run([*ELEVATOR_FLAGS, "--config", str(path)]) == 0
    config = load_config(path)
    assert config.node.id == "cbxc-b7-u2-lift1"
    assert config.node.location == 'Building 7, Unit 2 "east" lift'
    assert config.role_config.door.pin == 17
    assert config.role_config.door.active_high is False
    assert config.role_config.door.pull_up is True
    assert config.role_config.occupancy.pin == 27
    assert config.central.token_file == path.parent / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert list(path.parent.iterdir()) == [path], "no temp file left behind"
    assert "wrote" in capsys.readouterr().out


def test_init_interactive_answers_on_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "node.toml"
    answers = "\n".join(
        [
            "elevator",  # role
            "cbxc-b9-u1-lift2",  # node id
            "changbai-xincun",  # site
            "",  # area: empty
            "Building 9 unit 1",  # location
            "http://central.example:8080",  # central url
            "9",  # building
            "1",  # unit
            "2",  # lift
            "",  # door pin: standard wiring 17
            "sometimes",  # door active_high: a bad answer is asked again...
            "no",  # ...and then answered
            "yes",  # door pull_up
            "40",  # occupancy pin out of range: asked again
            "",  # standard 27
            "",  # occupancy active_high: default
            "",  # occupancy pull_up: none
            "motion",  # occupancy kind: a PIR
        ]
    )
    # Enter for everything asked after that: defaults, optional sensors not fitted
    assert run(["init", "--config", str(path)], answers + "\n" * 40, monkeypatch) == 0
    config = load_config(path)
    assert config.node.id == "cbxc-b9-u1-lift2"
    assert config.role_config.lift == "2"
    assert config.role_config.door.pin == 17
    assert config.role_config.door.active_high is False
    assert config.role_config.occupancy.pin == 27
    assert config.role_config.occupancy.pull_up is None
    assert config.role_config.occupancy_kind == "motion"
    assert config.role_config.moving is None
    err = capsys.readouterr().err
    assert "elevator.door.active_high" in err and "not yes/no" in err
    assert "out of range" in err


def test_init_interactive_stops_when_input_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "node.toml"
    assert run(["init", "--role", "kiosk", "--config", str(path)], "cbxc-gate-kiosk\n", monkeypatch) == 2
    assert "node.site" in capsys.readouterr().err
    assert not path.exists()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--door-pin", "40"], "elevator.door.pin"),
        (["--door-pin", "seventeen"], "--door-pin"),
        (["--node-id", "Lift 1!"], "node.id"),
        (["--central-url", "ftp://x"], "central.url"),
        (["--door-active-high", "maybe"], "--door-active-high"),
        (["--set", "elevator.entrapment_s=5"], "elevator.entrapment_s"),
        (["--set", "elevator.entrapmnet_s=95"], "elevator.entrapmnet_s"),
        (["--set", "nonsense"], "--set"),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture, change: list[str], named: str
) -> None:
    path = tmp_path / "node.toml"
    argv = [*ELEVATOR_FLAGS, "--config", str(path)]
    flag = change[0]
    if flag in argv and flag != "--set":
        i = argv.index(flag)
        argv[i : i + 2] = change
    else:
        argv += change
    assert run(argv) == 2
    assert named in capsys.readouterr().err
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_missing_settings_are_all_named_at_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "node.toml"
    argv = ["init", "--role", "elevator", "--non-interactive", "--config", str(path), "--node-id", "cbxc-x1"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    for flag in ("--site", "--central-url", "--building", "--door-pin", "--occupancy-pin"):
        assert flag in err
    assert not path.exists()


def test_missing_role_non_interactive(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(["init", "--non-interactive", "--config", str(tmp_path / "n.toml")]) == 2
    assert "--role" in capsys.readouterr().err


def test_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "node.toml"
    path.write_text("# the technician's earlier config\n")
    assert run([*ELEVATOR_FLAGS, "--config", str(path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert path.read_text() == "# the technician's earlier config\n"
    assert run([*ELEVATOR_FLAGS, "--config", str(path), "--force"]) == 0
    assert load_config(path).node.id == "cbxc-b7-u2-lift1"


def test_meter_with_meters_from_flags(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    argv = [
        "init",
        "--role",
        "meter",
        "--non-interactive",
        "--config",
        str(path),
        "--node-id",
        "cbxc-b12-meters",
        "--site",
        "changbai-xincun",
        "--central-url",
        "https://central.example",
        "--serial-port",
        "/dev/ttyUSB0",
        "--serial-parity",
        "e",
        "--meter",
        "id=b12-301,address=1,profile=ultrad_int_ml,household.resident=B12-301,household.ok_button.pin=5",
        "--meter",
        "id=b12-502,address=2,profile=pulse_u32_10l,household.resident=B12-502",
    ]
    assert run(argv) == 0
    config = load_config(path)
    assert config.role_config.serial.parity == "E"
    assert [m.address for m in config.role_config.meters] == [1, 2]
    assert config.role_config.meters[0].household.ok_button.pin == 5
    assert config.role_config.meters[1].household.ok_button is None


def test_meter_entry_with_unknown_key_names_the_allowed_keys(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["init", "--role", "meter", "--non-interactive", "--config", str(tmp_path / "n.toml")]
    argv += ["--node-id", "cbxc-m1", "--site", "s1", "--central-url", "http://c", "--serial-port", "/dev/ttyS0"]
    argv += ["--meter", "id=a,adress=1"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "'adress'" in err and "address" in err


def test_meter_profile_unknown_is_refused_by_the_node_rules(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["init", "--role", "meter", "--non-interactive", "--config", str(tmp_path / "n.toml")]
    argv += ["--node-id", "cbxc-m1", "--site", "s1", "--central-url", "http://c", "--serial-port", "/dev/ttyS0"]
    argv += ["--meter", "id=a,address=1,profile=no_such_meter,household.resident=A-1"]
    assert run(argv) == 2
    assert "unknown profile" in capsys.readouterr().err


def test_kiosk_with_cjk_pickup_point_and_set(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    argv = ["init", "--role", "kiosk", "--non-interactive", "--config", str(path)]
    argv += ["--node-id", "cbxc-north-gate-kiosk", "--site", "changbai-xincun", "--central-url", "http://c:1"]
    argv += ["--pickup-point", "长白新村北门 Changbai Xincun North Gate", "--hotline", "021-6543 2100"]
    argv += ["--button-pin", "26", "--led-pin", "12", "--set", "outbox.max_mb=128", "--set", "audio.voice=en"]
    assert run(argv) == 0
    config = load_config(path)
    assert config.role_config.pickup_point.startswith("长白新村北门")
    assert config.role_config.button.pin == 26 and config.role_config.led.pin == 12
    assert config.outbox.max_mb == 128.0
    assert config.audio.voice == "en"


def test_role_help_lists_role_flags(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["init", "--role", "elevator", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--door-pin" in out and "exit codes" in out


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_toml_writer_round_trips_every_example(example: Path) -> None:
    data = tomllib.loads(example.read_text(encoding="utf-8"))
    assert tomllib.loads(tomlwrite.dumps(data)) == data


def test_toml_writer_escapes_what_must_be_escaped() -> None:
    tricky = {"node": {"location": 'a "quoted"\\ path\nline\ttab\x01 楼', "n": 1.5, "flag": False, "none": []}}
    assert tomllib.loads(tomlwrite.dumps(tricky)) == tricky


def test_meter_interactive_with_one_meter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "node.toml"
    answers = "\n".join(
        [
            "cbxc-b12-meters",
            "changbai-xincun",
            "",  # area
            "Building 12 meter cupboard",
            "http://127.0.0.1:8080",
            "",  # serial port: standard /dev/ttyUSB0
            "19200",  # baud
            "e",  # parity, any case
            "",  # add a meter? yes (the default for the first)
            "b12-301",
            "1",
            "no_such_profile",  # not a shipped profile: asked again
            "ultrad_int_ml",
            "B12-301",
        ]
    )
    # Enter for the rest: no I'm-OK button, no second meter
    assert run(["init", "--role", "meter", "--config", str(path)], answers + "\n" * 20, monkeypatch) == 0
    assert "'no_such_profile' is not known" in capsys.readouterr().err
    config = load_config(path)
    assert config.role_config.serial.baudrate == 19200 and config.role_config.serial.parity == "E"
    (meter,) = config.role_config.meters
    assert (meter.id, meter.address, meter.profile) == ("b12-301", 1, "ultrad_int_ml")
    assert meter.household.resident == "B12-301" and meter.household.ok_button is None


def test_kiosk_interactive_asks_for_the_screen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "node.toml"
    answers = ["cbxc-north-gate-kiosk", "changbai-xincun", "", "North gate", "http://127.0.0.1:8080"]
    answers += ["长白新村北门", "Changbai Xincun North Gate", "021-6543 2100", ""]  # pickup, English, hotline, zh
    answers += ["800", "480", "45", "180", "26", "", "12"]  # rotation 45 is refused and asked again
    assert run(["init", "--role", "kiosk", "--config", str(path)], "\n".join(answers) + "\n" * 20, monkeypatch) == 0
    kiosk = load_config(path).role_config
    assert (kiosk.screen.width, kiosk.screen.height, kiosk.screen.rotation) == (800, 480, 180)
    assert kiosk.pickup_point == "长白新村北门"
    assert kiosk.button.pin == 26 and kiosk.led.pin == 12
