"""Node configuration: one TOML file validated once, at start, into typed frozen dataclasses.

Every problem is collected and reported at once, one line each, naming the file, the key, the bad value and
what is allowed. Unknown keys are errors, so a typo in a threshold never silently falls back to a default.
Role sections (``[elevator]``, ``[meter]``, ``[kiosk]``) are dataclasses that live with their role and are
found through ``ROLE_SECTIONS``; they use the same ``setting()`` helper and shared types defined here.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.clock import HH_MM
from common.contract import NODE_ID_PATTERN, SITE_PATTERN
from common.problems import ProblemsError

DEFAULT_CONFIG_PATH = Path("/etc/changbai/node.toml")
EXIT_CONFIG = 2
# bumped with every config change a release migrates (updates/migrations.py); a bundle's manifest carries it
CONFIG_SCHEMA_VERSION = 1

# role name -> "module:Class" of its section; imported lazily so common/ never imports a role at load time
ROLE_SECTIONS: dict[str, str] = {
    "elevator": "elevator_node.config:ElevatorConfig",
    "meter": "meter_node.config:MeterConfig",
    "kiosk": "kiosk.config:KioskConfig",
}
Role = Literal["elevator", "meter", "kiosk"]


class ConfigError(ProblemsError):
    """A config that cannot be used; ``problems`` holds one human-readable line per problem."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    min: float | None = None,  # noqa: A002 - reads naturally at the call site
    max: float | None = None,  # noqa: A002
    pattern: str | None = None,
    help: str = "",  # noqa: A002
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with validation metadata: numeric bounds, a regex for strings, a help line."""
    meta = {"min": min, "max": max, "pattern": pattern, "help": help}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------------- shared types
@dataclass(frozen=True, kw_only=True)
class InputPin:
    """A digital input (door contact, level-zone magnet, relay, PIR/mmWave output)."""

    pin: int = setting(min=0, max=27, help="BCM GPIO number")
    active_high: bool = setting(True, help="true: a high level means the input is active")
    pull_up: bool | None = setting(None, help="internal pull: true up, false down; omit for none")
    bounce_s: float = setting(0.05, min=0.0, max=5.0, help="debounce time in seconds")


@dataclass(frozen=True, kw_only=True)
class ButtonPin:
    """A push button (alarm button, arcade button, I'm-OK button)."""

    pin: int = setting(min=0, max=27, help="BCM GPIO number")
    pull_up: bool = setting(True, help="true: button wired to ground with the internal pull-up")
    bounce_s: float = setting(0.05, min=0.0, max=5.0)
    hold_s: float = setting(1.0, min=0.0, max=120.0, help="seconds held before it counts as held")


@dataclass(frozen=True, kw_only=True)
class LedPin:
    """An LED or lamp on a GPIO output."""

    pin: int = setting(min=0, max=27, help="BCM GPIO number")
    active_high: bool = setting(True)


@dataclass(frozen=True, kw_only=True)
class SerialPort:
    """An RS-485 serial port shared by the Modbus slaves on it."""

    port: str = setting(help="device path, e.g. /dev/ttyUSB0 or /dev/serial0")
    baudrate: int = setting(9600, min=300, max=115200)
    parity: Literal["N", "E", "O"] = setting("N")
    stopbits: Literal[1, 2] = setting(1)
    bytesize: Literal[7, 8] = setting(8)
    timeout_s: float = setting(0.5, min=0.05, max=10.0, help="reply timeout per request")
    retries: int = setting(2, min=0, max=10, help="extra attempts after a failed request")
    gap_s: float = setting(0.03, min=0.0, max=1.0, help="minimum silence between frames on the bus")


# ----------------------------------------------------------------------------------------- common sections


@dataclass(frozen=True, kw_only=True)
class NodeSection:
    """Who and where this node is, and where it keeps its data."""

    id: str = setting(pattern=NODE_ID_PATTERN, help="unique node id, lower case")
    role: Role = setting()
    site: str = setting(pattern=SITE_PATTERN, help="site (residential compound) id")
    area: str = setting("", help="residential area / street, free text")
    location: str = setting("", help="where the node is, free text (building, unit, gate)")
    timezone: str = setting("Asia/Shanghai", help="IANA time zone for local-time rules")
    data_dir: Path = setting(Path("/var/lib/changbai"), help="outbox and state live here")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("INFO")


@dataclass(frozen=True, kw_only=True)
class CentralSection:
    """How the node reaches the central endpoint: URL, token, timeouts, batching, backoff, heartbeat."""

    url: str = setting(pattern=r"^https?://[^\s]+$", help="base URL of the central, without /api/v1")
    token_file: Path = setting(Path("/etc/changbai/token"), help="per-node token, mode 0600")
    ca_bundle: Path | None = setting(None, help="extra CA bundle for TLS; verification is always on")
    connect_timeout_s: float = setting(5.0, min=0.5, max=60.0)
    read_timeout_s: float = setting(15.0, min=1.0, max=300.0)
    request_limit_s: float = setting(
        30.0, min=2.0, max=600.0, help="total time for one request and its whole reply (a drip ends here)"
    )
    max_reply_kb: int = setting(4096, min=64, max=262144, help="largest reply read; a larger one is refused")
    batch_size: int = setting(200, min=1, max=5000, help="events per upload")
    batch_max_age_s: float = setting(2.0, min=0.0, max=3600.0, help="oldest waiting reading before upload")
    backoff_max_s: float = setting(300.0, min=1.0, max=3600.0, help="cap of the retry backoff")
    auth_retry_s: float = setting(900.0, min=10.0, max=86400.0, help="retry interval after 401/403")
    heartbeat_interval_s: float = setting(300.0, min=10.0, max=86400.0)
    ack_poll_s: float = setting(
        10.0, min=1.0, max=3600.0, help="while an alert waits to be taken in, ask the central this often (EN 81-28)"
    )
    selftest_interval_h: float = setting(24.0, min=1.0, max=72.0, help="EN 81-28: at least every 3 days")


@dataclass(frozen=True, kw_only=True)
class OutboxSection:
    """The durable store-and-forward queue on disk."""

    max_mb: float = setting(64.0, min=1.0, max=4096.0, help="disk bound; oldest readings dropped first")
    reading_commit_window_s: float = setting(5.0, min=0.0, max=60.0, help="group commit of readings")
    reading_commit_max: int = setting(100, min=1, max=10000)
    reserve_mb: float = setting(
        2.0, min=0.0, max=256.0, help="space kept beside the outbox, released when the disk fills; 0: none"
    )
    memory_events_max: int = setting(
        2000, min=100, max=100000, help="events kept in memory while the disk refuses writes"
    )


@dataclass(frozen=True, kw_only=True)
class GpioSection:
    """Which gpiozero pin factory drives the pins."""

    pin_factory: Literal["", "lgpio", "rpigpio", "pigpio", "native", "mock"] = setting(
        "", help="gpiozero pin factory; empty: GPIOZERO_PIN_FACTORY or gpiozero's default"
    )


@dataclass(frozen=True, kw_only=True)
class AudioSection:
    """Voice prompts: espeak-ng text or recorded WAV files (a prompt pack) via aplay, louder by day than at night."""

    backend: Literal["auto", "espeak", "wav", "none"] = setting(
        "auto",
        help="auto: recordings where the pack has them, else espeak-ng; espeak: espeak-ng only; wav: recordings, "
        "espeak-ng (if installed) only for a prompt without one; none: silent",
    )
    voice: str = setting(
        "cmn-latn-pinyin",
        help="espeak-ng voice: cmn-latn-pinyin (Mandarin), en, ...; cmn is read as English-spelled pinyin by "
        "espeak-ng 1.51 and is replaced by cmn-latn-pinyin with a warning",
    )
    volume: int = setting(80, min=0, max=100, help="percent, by day")
    night_volume: int = setting(50, min=0, max=100, help="percent, from night_start to night_end (local time)")
    night_start: str = setting("22:00", pattern=HH_MM, help="HH:MM local time (node.timezone) the night begins")
    night_end: str = setting("07:00", pattern=HH_MM, help="HH:MM local time the night ends; = night_start: no night")
    device: str = setting("", help="ALSA device for aplay; empty: default")
    pack: Path | None = setting(
        None, help="prompt pack folder (pack.toml + one WAV per prompt id), played instead of espeak-ng"
    )


@dataclass(frozen=True, kw_only=True)
class UpdateSection:
    """Software updates (docs/updates.md): the channel, the release key, where versions live, the health window."""

    enabled: bool = setting(True, help="false: the node never updates by itself (a technician still can)")
    channel: Literal["pilot", "stable"] = setting("stable", help="pilot nodes get each release first")
    public_key: Path = setting(Path("/etc/changbai/release.pub"), help="Ed25519 key releases must be signed with")
    root: Path = setting(Path("/opt/changbai"), help="versions/, the current and committed links live here")
    check_interval_h: float = setting(6.0, min=0.01, max=168.0, help="how often the node asks for a release")
    health_timeout_s: float = setting(
        150.0, min=5.0, max=1800.0, help="the new version must report healthy within this, else it is rolled back"
    )
    night_window: str = setting(
        "01:00-05:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$",
        help="kiosks update only in this local-time window, and only when idle",
    )
    keep_versions: int = setting(3, min=2, max=10, help="installed versions kept for rollback")
    min_free_mb: float = setting(
        100.0, min=0.0, max=100000.0, help="an update starts only if it leaves this much disk free (for the outbox)"
    )
    restart_command: tuple[str, ...] = setting((), help="empty: systemctl restart changbai-ROLE.service")


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """A whole validated node config. ``role_config`` is the section named by ``node.role``."""

    path: Path
    node: NodeSection
    central: CentralSection
    outbox: OutboxSection
    gpio: GpioSection
    audio: AudioSection
    role_config: Any
    update: UpdateSection = field(default_factory=UpdateSection)

    @property
    def state_dir(self) -> Path:
        return self.node.data_dir / self.node.id


# --------------------------------------------------------------------------------------------- the engine
def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin in (tuple, list):
        return "a list of " + _describe(typing.get_args(tp)[0])
    if origin in (dict, Mapping):
        return "a table of " + _describe(typing.get_args(tp)[1])
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path"}.get(
        tp, str(tp)
    )


class Problems:
    """Every problem of one config file, one line each naming the file, the key and the value."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.problems: list[str] = []

    def add(self, key: str, value: Any, problem: str) -> None:
        shown = "" if value is dataclasses.MISSING else f" = {value!r}"
        self.problems.append(f"{self.file}: {key}{shown}: {problem}")


_BAD = object()


def _convert(tp: Any, value: Any, key: str, out: Problems) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        out.add(key, value, f"not allowed; allowed: {', '.join(repr(a) for a in allowed)}")
        return _BAD
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _convert(args[0], value, key, out)
        for arg in args:
            probe = Problems(out.file)
            result = _convert(arg, value, key, probe)
            if result is not _BAD:
                return result
        out.add(key, value, f"wrong type; expected {_describe(tp)}")
        return _BAD
    if origin in (tuple, list):
        if not isinstance(value, list):
            out.add(key, value, f"wrong type; expected {_describe(tp)}")
            return _BAD
        item_tp = typing.get_args(tp)[0]
        items = [_convert(item_tp, v, f"{key}[{i}]", out) for i, v in enumerate(value)]
        return _BAD if any(i is _BAD for i in items) else tuple(items)
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            out.add(key, value, f"wrong type; expected {_describe(tp)}")
            return _BAD
        val_tp = typing.get_args(tp)[1]
        converted = {k: _convert(val_tp, v, f"{key}.{k}", out) for k, v in value.items()}
        return _BAD if any(v is _BAD for v in converted.values()) else types.MappingProxyType(converted)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            out.add(key, value, "wrong type; expected a table")
            return _BAD
        return build(tp, value, key, out)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, str) and value:
            return Path(value)
    elif tp is Any:
        return value
    out.add(key, value, f"wrong type; expected {_describe(tp)}")
    return _BAD


def bounds_problem(f: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with ``value`` against the min/max/pattern its ``setting()`` carries, or None."""
    lo, hi, pattern = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("pattern")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number and (lo is not None and value < lo or hi is not None and value > hi):
        return f"out of range; allowed: {lo if lo is not None else '-inf'}..{hi}"
    if pattern and isinstance(value, str) and not re.fullmatch(pattern, value):
        return f"does not match {pattern}"
    return None


def _check_bounds(f: dataclasses.Field, value: Any, key: str, out: Problems) -> bool:
    problem = bounds_problem(f, value)
    if problem is None:
        return True
    help_text = f.metadata.get("help")
    if problem.startswith("does not match") and help_text:
        problem += f" ({help_text})"
    out.add(key, value, problem)
    return False


def build(cls: type, data: Mapping[str, Any], prefix: str, out: Problems) -> Any:
    """Build dataclass ``cls`` from a TOML table, adding every problem to ``out``; returns _BAD on failure."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    dot = f"{prefix}." if prefix else ""
    ok = True
    for unknown in sorted(set(data) - set(fields)):
        out.add(f"{dot}{unknown}", data[unknown], f"unknown key; allowed keys: {', '.join(sorted(fields))}")
        ok = False
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{dot}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if dataclasses.is_dataclass(hints[name]):
                    value = build(hints[name], {}, key, out)  # a table whose keys all have defaults
                    ok = ok and value is not _BAD
                    kwargs[name] = value
                    continue
                help_text = f.metadata.get("help")
                out.add(key, dataclasses.MISSING, "missing" + (f"; {help_text}" if help_text else ""))
                ok = False
            continue
        value = _convert(hints[name], data[name], key, out)
        if value is _BAD or not _check_bounds(f, value, key, out):
            ok = False
            continue
        kwargs[name] = value
    if not ok:
        return _BAD
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        out.add(prefix or "(top level)", dataclasses.MISSING, str(exc))
        return _BAD
    for problem in getattr(obj, "problems", lambda: [])():
        out.add(prefix, dataclasses.MISSING, problem)
        ok = False
    return obj if ok else _BAD


def parse_section(cls: type, data: Mapping[str, Any], file: Path) -> Any:
    """Build dataclass ``cls`` from a whole parsed TOML document (another program's config, e.g. the central's);
    raises ConfigError listing every problem."""
    out = Problems(file)
    built = build(cls, data, "", out)
    if out.problems:
        raise ConfigError(out.problems)
    return built


def role_section_class(role: str) -> type:
    """The dataclass of a role's section (imported on first use)."""
    module, _, name = ROLE_SECTIONS[role].partition(":")
    return getattr(importlib.import_module(module), name)


def parse_config(data: Mapping[str, Any], file: Path) -> NodeConfig:
    """Validate an already-parsed TOML document; raises ConfigError listing every problem."""
    out = Problems(file)
    common = {"node": NodeSection, "central": CentralSection, "outbox": OutboxSection, "gpio": GpioSection}
    common["audio"] = AudioSection
    common["update"] = UpdateSection
    role = data.get("node", {}).get("role") if isinstance(data.get("node"), dict) else None
    allowed_top = set(common) | ({role} if role in ROLE_SECTIONS else set())
    for unknown in sorted(set(data) - allowed_top):
        hint = f"allowed sections: {', '.join(sorted(allowed_top))}"
        if unknown in ROLE_SECTIONS:
            hint = f"section [{unknown}] does not match node.role = {role!r}"
        out.add(f"[{unknown}]", dataclasses.MISSING, f"unknown section; {hint}")
    sections: dict[str, Any] = {}
    for name, cls in common.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            out.add(f"[{name}]", raw, "must be a table")
            continue
        if name == "central" and name not in data:
            out.add("[central]", dataclasses.MISSING, "missing section; needs at least url")
            continue
        sections[name] = build(cls, raw, name, out)
    role_config: Any = None
    if role in ROLE_SECTIONS:
        raw = data.get(role, {})
        if isinstance(raw, dict):
            role_config = build(role_section_class(role), raw, role, out)
        else:
            out.add(f"[{role}]", raw, "must be a table")
    if out.problems:
        raise ConfigError(out.problems)
    return NodeConfig(path=file, role_config=role_config, **sections)


def read_toml(path: Path | str) -> dict[str, Any]:
    """Read a TOML file; any problem (missing, unreadable, not UTF-8, bad TOML) is a ConfigError naming it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{file}: file not found (use --config PATH)"]) from None
    except PermissionError:
        raise ConfigError([f"{file}: not readable by user {os.getuid()} (check owner and mode)"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{file}: is a directory, expected a TOML file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{file}: cannot be read ({exc.strerror})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: invalid TOML: {exc}"]) from None


def load_config(path: Path | str) -> NodeConfig:
    """Read and validate a node config file; raises ConfigError naming every problem."""
    return parse_config(read_toml(path), Path(path))


def load_config_or_exit(path: Path | str, expected_role: str | None = None) -> NodeConfig:
    """Load a config for a node process: on any problem print one line each to stderr and exit 2."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    if expected_role and config.node.role != expected_role:
        print(
            f"config error: {path}: node.role = {config.node.role!r}: this program runs role {expected_role!r}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_CONFIG)
    return config


def default_config_path() -> Path:
    """--config default: $CHANGBAI_CONFIG or /etc/changbai/node.toml."""
    return Path(os.environ.get("CHANGBAI_CONFIG", str(DEFAULT_CONFIG_PATH)))
