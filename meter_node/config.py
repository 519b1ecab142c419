"""The ``[meter]`` config section: the RS-485 bus, the meters on it and the wellbeing thresholds."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC
from pathlib import Path

from common.clock import HH_MM
from common.config import ButtonPin, InputPin, SerialPort, setting
from meter_node.profiles import ProfileError, load_profile_file, profile_files
from meter_node.wellbeing import WellbeingSettings, parse_local_date

QUIET_HOURS = rf"^({HH_MM[1:-1]}-{HH_MM[1:-1]})?$"


@dataclass(frozen=True, kw_only=True)
class HouseholdSection:
    """The home a meter watches. A label only: no name, phone number or other personal data on the node."""

    resident: str = setting(
        pattern=r"^[^\s].{0,63}$", help="a label for the resident, e.g. 'B12-301' (no names: the central has them)"
    )
    ok_button: ButtonPin | None = setting(None, help="optional 'I'm OK' button in the home")
    away_button: ButtonPin | None = setting(
        None, help="optional 'going out' button by the flat's door: out until the next water use or door event"
    )
    door: InputPin | None = setting(
        None, help="optional contact on the flat's door: a sign of life; no water after it: the resident is out"
    )
    chime: bool = setting(
        False, help="play a chime and prompt in the home when an alert is raised (and when asking first)"
    )
    away_until: str = setting(
        "",
        pattern=r"^(\d{4}-\d{2}-\d{2}([T ][0-9:.+-]+)?)?$",
        help="away or in hospital until this local date (YYYY-MM-DD): person alerts suppressed; empty: at home",
    )
    quiet_hours: str = setting(
        "",
        pattern=QUIET_HOURS,
        help="'HH:MM-HH:MM': this home's quiet hours, no question and no chime for an info note (she keeps late "
        "hours); empty: [meter.wellbeing] ask_quiet_from to ask_quiet_until",
    )
    ask_at_bedtime: bool | None = setting(
        None, help="ask at bedtime about a silence her family would hear of in the night; omit: [meter.wellbeing]'s"
    )

    def settings(self, wellbeing: WellbeingSettings) -> WellbeingSettings:
        """The wellbeing settings this home's monitor runs with: it is asked first (``ask_first_min``) only if it
        can hear the question and answer it (a chime and an "I'm OK" button), not in its quiet hours, and at bedtime
        as it chose."""
        if not (self.chime and self.ok_button is not None):
            return replace(wellbeing, ask_first_min=0.0)
        if self.ask_at_bedtime is not None:
            wellbeing = replace(wellbeing, ask_at_bedtime=self.ask_at_bedtime)
        if self.quiet_hours:
            start, end = self.quiet_hours.split("-")
            return replace(wellbeing, ask_quiet_from=start, ask_quiet_until=end)
        return wellbeing

    def problems(self) -> list[str]:
        if not self.away_until:
            return []
        try:
            parse_local_date(self.away_until, UTC)
        except ValueError as exc:
            return [f"away_until = {self.away_until!r}: not a date ({exc})"]
        return []


@dataclass(frozen=True, kw_only=True)
class MeterEntry:
    """One water meter on the bus and the household it watches."""

    id: str = setting(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", help="meter id, unique on this node")
    address: int = setting(min=1, max=247, help="Modbus slave address")
    profile: str = setting(pattern=r"^[a-z0-9_]{1,64}$", help="meter profile name (meter_node/profiles/*.toml)")
    poll_interval_s: float = setting(10.0, min=0.2, max=3600.0, help="seconds between reads of this meter")
    offline_after_s: float = setting(
        600.0, min=5.0, max=86400.0, help="no good read for this long: meter_offline technical alert"
    )
    household: HouseholdSection = setting(help="the home this meter watches")


@dataclass(frozen=True, kw_only=True)
class MeterConfig:
    """The water-meter role: one RS-485 bus, the meters on it, how readings are recorded."""

    serial: SerialPort = setting(help="the RS-485 bus")
    meters: tuple[MeterEntry, ...] = setting(default_factory=tuple, help="the meters on the bus, [[meter.meters]]")
    profile_dir: Path | None = setting(None, help="extra meter profiles (*.toml) beside the shipped ones")
    reading_min_interval_s: float = setting(
        60.0, min=0.0, max=86400.0, help="a changed total is recorded at most this often per meter"
    )
    reading_sample_s: float = setting(
        900.0, min=10.0, max=86400.0, help="an unchanged total is still recorded this often per meter"
    )
    offline_poll_s: float = setting(
        30.0, min=1.0, max=3600.0, help="an offline meter is retried this often (it must not hog the bus)"
    )
    state_save_s: float = setting(300.0, min=5.0, max=86400.0, help="learned wellbeing state saved this often")
    clock_wait_min: float = setting(
        30.0,
        min=0.0,
        max=120.0,
        help="started with the wall clock not yet synchronised: the rules wait this long for it",
    )
    wellbeing: WellbeingSettings = setting(
        default_factory=WellbeingSettings, help="the wellbeing rules' thresholds, [meter.wellbeing]"
    )

    def problems(self) -> list[str]:
        out: list[str] = []
        ids = [m.id for m in self.meters]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            out.append(f"meters: id {dup!r} is used more than once")
        addresses = [m.address for m in self.meters]
        for address in sorted({a for a in addresses if addresses.count(a) > 1}):
            out.append(f"meters: slave address {address} is used more than once on one bus")
        if self.profile_dir is not None and not self.profile_dir.is_dir():
            out.append(f"profile_dir = {str(self.profile_dir)!r}: not a directory")
        try:
            known = profile_files([self.profile_dir] if self.profile_dir else [])
        except OSError as exc:
            return [*out, f"profile_dir = {str(self.profile_dir)!r}: cannot be read ({exc.strerror})"]
        loaded: set[str] = set()
        for i, meter in enumerate(self.meters):
            if meter.profile not in known:
                out.append(
                    f"meters[{i}].profile = {meter.profile!r}: unknown profile; known: {', '.join(sorted(known))}"
                )
            elif meter.profile not in loaded:
                loaded.add(meter.profile)
                try:
                    load_profile_file(known[meter.profile])
                except ProfileError as exc:  # a broken profile file stops the node like a broken config
                    out += [f"meters[{i}].profile = {meter.profile!r}: {line}" for line in exc.problems]
        gap_s = self.wellbeing.max_reading_interval_min * 60.0
        for i, meter in enumerate(self.meters):
            if meter.poll_interval_s >= gap_s:
                # every interval between two reads would be a gap: the household would never be watched
                out.append(
                    f"meters[{i}].poll_interval_s = {meter.poll_interval_s:g}: must be below "
                    f"wellbeing.max_reading_interval_min ({gap_s:g} s), or every interval is a gap"
                )
            if meter.offline_after_s < 2 * meter.poll_interval_s:
                out.append(
                    f"meters[{i}].offline_after_s = {meter.offline_after_s:g}: must be at least two poll "
                    f"intervals ({2 * meter.poll_interval_s:g} s), or one late read is an outage"
                )
        asked = any(m.household.settings(self.wellbeing).ask_first_min for m in self.meters)
        if self.wellbeing.ask_first_min > 0 and self.meters and not asked:
            out.append(
                f"wellbeing.ask_first_min = {self.wellbeing.ask_first_min:g}: no household has both chime = true "
                "and an ok_button, so nobody could be asked first (set them, or ask_first_min = 0)"
            )
        pins = [
            (pin.pin, f"{m.id}.{name}")
            for m in self.meters
            for name, pin in (
                ("ok_button", m.household.ok_button),
                ("away_button", m.household.away_button),
                ("door", m.household.door),
            )
            if pin is not None
        ]
        numbers = [n for n, _ in pins]
        for number in sorted({n for n in numbers if numbers.count(n) > 1}):
            users = ", ".join(where for n, where in pins if n == number)
            out.append(f"meters: GPIO pin {number} is used more than once ({users})")
        return out
