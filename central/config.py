"""The central's own TOML config: sites and their claim keys, operator keys, limits, escalation, the fleet.

Validated once at start with the same engine as node configs (common/config.py): every problem is reported at
once, one line each, naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central.accounts.config import AccountsSection
from central.dispatch.config import DispatchSection
from central.notify.config import NotifySection
from common.catalogue import RECIPIENTS
from common.config import ConfigError, parse_section, read_toml, setting
from common.contract import SITE_PATTERN

KEY_MIN_CHARS = 24
KEY_HELP = f"at least {KEY_MIN_CHARS} characters, not the example's CHANGE-ME; make one with `central new-key`"
KEY_PATTERN = rf"^(?!.*(?i:change-me))\S{{{KEY_MIN_CHARS},256}}$"


@dataclass(frozen=True, kw_only=True)
class ServerSection:
    """Limits of the HTTP API and of the connections that carry it."""

    max_body_bytes: int = setting(2_097_152, min=1024, max=268_435_456, help="larger request bodies get 413")
    max_events_per_batch: int = setting(5000, min=1, max=100_000, help="more events in one upload get 413")
    max_event_bytes: int = setting(65_536, min=256, max=16_777_216, help="a larger single event is rejected")
    max_heartbeat_bytes: int = setting(65_536, min=1024, max=16_777_216, help="a larger heartbeat gets 413")
    node_stale_after_s: float = setting(900.0, min=10.0, max=604_800.0, help="operator page flags a silent node")
    summary_max_age_s: float = setting(
        5.0, min=0.0, max=300.0, help="the summary's node counts are counted again at most this often (0: always)"
    )
    header_timeout_s: float = setting(
        10.0, min=0.5, max=300.0, help="a connection whose request head has not arrived by then is closed"
    )
    body_timeout_s: float = setting(60.0, min=1.0, max=3600.0, help="a request body not complete by then gets 408")
    idle_timeout_s: float = setting(5.0, min=0.5, max=300.0, help="an idle kept-alive connection is closed")
    max_connections: int = setting(
        1000, min=10, max=100_000, help="beyond this, the oldest connection still waiting for its head is dropped"
    )
    max_buffered_bytes: int = setting(
        16_777_216, min=1_048_576, max=4_294_967_296, help="bytes of request bodies held at once; beyond, 503"
    )
    register_failures_per_min: int = setting(
        10, min=1, max=10_000, help="wrong claim keys per client address and minute before 429"
    )
    max_streams: int = setting(100, min=1, max=10_000, help="change streams (server-sent events) open at once")
    max_ingest_in_flight: int = setting(
        2, min=1, max=10_000, help="node uploads (events, heartbeats, ...) worked on at once per process"
    )
    max_interactive_in_flight: int = setting(
        8, min=1, max=10_000, help="console and ride requests worked on at once per process"
    )
    max_alert_in_flight: int = setting(
        2, min=1, max=10_000, help="node uploads carrying an alert worked on at once per process, beside the others"
    )
    interactive_first_s: float = setting(
        1.0, min=0.0, max=30.0, help="after a console request, readings' uploads run one at a time this long (0: off)"
    )
    admission_line: int = setting(
        32, min=0, max=100_000, help="requests of each class waiting for a slot per process; beyond, 503"
    )
    overload_retry_after_s: int = setting(
        5, min=1, max=600, help="a 503's Retry-After at most: the line's measured drain time, 1 s or more, up to this"
    )
    feed_poll_s: float = setting(1.0, min=0.05, max=60.0, help="how often each change stream looks for changes")


@dataclass(frozen=True, kw_only=True)
class SiteSection:
    """A residential compound; its claim key lets a technician register nodes there."""

    id: str = setting(pattern=SITE_PATTERN, help="site id, as in the nodes' node.site")
    name: str = setting("", help="display name, e.g. 长白新村 Changbai Xincun")
    claim_key: str = setting(pattern=KEY_PATTERN, help=KEY_HELP)


@dataclass(frozen=True, kw_only=True)
class OperatorSection:
    """A person or desk allowed to read and handle alerts; named on every ack/resolve they make."""

    name: str = setting(pattern=r"^\S.{0,79}$", help="shown as who acknowledged/resolved")
    key: str = setting("", pattern=rf"^({KEY_PATTERN[1:-1]})?$", help=KEY_HELP)
    key_sha256: str = setting("", pattern=r"^([0-9a-f]{64})?$", help="sha256 hex of the key instead of the key")

    def problems(self) -> list[str]:
        if bool(self.key) == bool(self.key_sha256):
            return ["give exactly one of key or key_sha256"]
        return []

    def matches(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).hexdigest()
        wanted = self.key_sha256 or hashlib.sha256(self.key.encode()).hexdigest()
        return hmac.compare_digest(digest, wanted)


@dataclass(frozen=True, kw_only=True)
class EscalationSection:
    """Urgent alerts reach the first roles at once and the later roles only when nobody acknowledges in time."""

    after_s: float = setting(600.0, min=1.0, max=86_400.0, help="default when the event has no escalate_after_s")
    later_roles: tuple[str, ...] = setting(("social_worker",), help="roles held back until the escalation")

    def problems(self) -> list[str]:
        bad = [r for r in self.later_roles if r not in RECIPIENTS]
        return [f"later_roles: unknown role(s) {bad}; allowed: {', '.join(RECIPIENTS)}"] if bad else []


@dataclass(frozen=True, kw_only=True)
class FleetSection:
    """The simulated taxi fleet. Durations are fleet seconds; ``time_scale`` fleet seconds pass per real second."""

    seed: int = setting(1, help="same seed and request id: same car, same timings")
    time_scale: float = setting(1.0, min=0.001, max=100_000.0, help="> 1 speeds the fleet up (demo, tests)")
    assign_delay_min_s: float = setting(20.0, min=0.0, max=3600.0)
    assign_delay_max_s: float = setting(90.0, min=0.0, max=3600.0)
    eta_min_s: float = setting(120.0, min=0.0, max=7200.0)
    eta_max_s: float = setting(420.0, min=0.0, max=7200.0)
    no_car_rate: float = setting(0.05, min=0.0, max=1.0, help="share of requests that find no car")

    def problems(self) -> list[str]:
        out = []
        if self.assign_delay_min_s > self.assign_delay_max_s:
            out.append("assign_delay_min_s > assign_delay_max_s")
        if self.eta_min_s > self.eta_max_s:
            out.append("eta_min_s > eta_max_s")
        return out


@dataclass(frozen=True, kw_only=True)
class DatabaseSection:
    """Where the central keeps its data (docs/central.md#the-two-engines)."""

    url: str = setting(
        "",
        pattern=r"^((sqlite|postgresql|postgres):\S+)?$",
        help="empty: the SQLite file given by --db; postgresql://user@host:5432/db for PostgreSQL",
    )
    pool_size: int = setting(10, min=1, max=200, help="PostgreSQL connections per central process")
    files_dir: Path = setting(
        Path("/var/lib/changbai"), help="release bundles with PostgreSQL (SQLite: beside the file); shared by hosts"
    )


@dataclass(frozen=True, kw_only=True)
class RetentionSection:
    """How long what is kept (docs/central.md#data-and-retention)."""

    readings_days: int = setting(14, min=1, max=3650, help="raw readings; their daily totals are kept for good")
    state_days: int = setting(90, min=1, max=36500, help="state events (door states, meter health, ...)")
    changes_days: int = setting(30, min=1, max=3650, help="the change feed; an older cursor gets reset")
    maintenance_interval_s: float = setting(
        300.0, min=0.2, max=86_400.0, help="how often silent nodes are found and old rows removed"
    )
    utc_offset_h: float = setting(8.0, min=-12.0, max=14.0, help="the local day of daily totals (China: +8)")


@dataclass(frozen=True, kw_only=True)
class CentralConfig:
    """A whole validated central config."""

    server: ServerSection = setting(default_factory=ServerSection)
    sites: tuple[SiteSection, ...] = setting((), help="[[sites]] tables")
    operators: tuple[OperatorSection, ...] = setting((), help="[[operators]] tables")
    escalation: EscalationSection = setting(default_factory=EscalationSection)
    fleet: FleetSection = setting(default_factory=FleetSection)
    notify: NotifySection = setting(default_factory=NotifySection)
    accounts: AccountsSection = setting(default_factory=AccountsSection)
    dispatch: DispatchSection = setting(default_factory=DispatchSection)
    database: DatabaseSection = setting(default_factory=DatabaseSection)
    retention: RetentionSection = setting(default_factory=RetentionSection)

    def problems(self) -> list[str]:
        out = []
        ids = [s.id for s in self.sites]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            out.append(f"sites: site id {dup!r} given twice")
        if not self.sites:
            out.append("sites: no [[sites]] table; no node could register")
        if not self.operators:
            out.append("operators: no [[operators]] table; nobody could read or handle alerts")
        return out

    def site(self, site_id: str) -> SiteSection | None:
        return next((s for s in self.sites if s.id == site_id), None)

    def operator_for(self, presented: str) -> OperatorSection | None:
        """The operator whose key this is, or None."""
        found = None
        for op in self.operators:  # no early exit: every key is compared
            if op.matches(presented) and found is None:
                found = op
        return found


def parse_central_config(data: dict[str, Any], file: Path) -> CentralConfig:
    """Validate a parsed TOML document; raises ConfigError listing every problem."""
    config: CentralConfig = parse_section(CentralConfig, data, file)
    return config


def file_mode_problems(path: Path) -> list[str]:
    """The config holds claim and operator keys: other users must not read it, nor the group change it."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return []  # read_toml names a missing or unreadable file
    if mode & 0o027:
        return [f"{path}: mode {mode:04o} lets other users read or change the keys in it; run chmod 600 {path}"]
    return []


def load_central_config(path: Path | str) -> CentralConfig:
    """Read and validate the central config file and its mode; raises ConfigError naming every problem."""
    path = Path(path)
    document = read_toml(path)
    mode_problems = file_mode_problems(path)
    try:
        config = parse_central_config(document, path)
    except ConfigError as exc:
        raise ConfigError(mode_problems + exc.problems) from None
    if mode_problems:
        raise ConfigError(mode_problems)
    return config


def replace_fleet(config: CentralConfig, **changes: Any) -> CentralConfig:
    """A copy of ``config`` with some fleet settings changed (tests, demo)."""
    return dataclasses.replace(config, fleet=dataclasses.replace(config.fleet, **changes))
