"""The roles a person can hold, what each sees and may do, and ``Actor``: who is calling, with their sites.

A role sees the alerts of its groups (``central.kinds``: lift, meter, kiosk, node) at its sites; ``*`` is every
site. A machine client's key (``[[operators]]`` in the config) acts as an admin of every site, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from central.kinds import kind_group

ALL_SITES = "*"
# role -> (zh, en, alert groups it sees and handles, what else it may do)
ROLES: dict[str, tuple[str, str, frozenset[str], frozenset[str]]] = {
    "duty_desk": ("社区值班", "Duty desk", frozenset({"lift", "meter", "kiosk", "node"}),
                  frozenset({"rides", "residents", "nodes"})),
    "social_worker": ("社工", "Social worker", frozenset({"meter"}), frozenset({"residents", "nodes"})),
    "maintenance": ("维保", "Maintenance", frozenset({"lift", "node"}), frozenset({"nodes"})),
    "taxi_desk": ("叫车服务台", "Taxi desk", frozenset({"kiosk"}), frozenset({"rides", "nodes"})),
    "admin": ("管理员", "Administrator", frozenset({"lift", "meter", "kiosk", "node"}),
              frozenset({"rides", "residents", "nodes", "users", "audit", "flats", "updates"})),
}  # fmt: skip


@dataclass(frozen=True)
class Grant:
    """One role at some sites."""

    role: str
    sites: tuple[str, ...] = (ALL_SITES,)

    def covers(self, site: str | None) -> bool:
        return ALL_SITES in self.sites or site in self.sites


def parse_grant(text: str) -> Grant:
    """``duty_desk`` (every site) or ``social_worker:changbai-xincun,siping-road``; ValueError names the problem."""
    role, _, sites = text.partition(":")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    names = tuple(s.strip() for s in sites.split(",") if s.strip()) if sites else (ALL_SITES,)
    return Grant(role, names)


@dataclass(frozen=True)
class Actor:
    """Who is calling: a person (``via`` "session") or a machine client's key (``via`` "key")."""

    name: str
    via: str
    grants: tuple[Grant, ...]
    username: str | None = None
    session: str | None = field(default=None, repr=False)

    @property
    def roles(self) -> list[str]:
        return list(dict.fromkeys(g.role for g in self.grants))

    def sites(self) -> set[str] | None:
        """The sites this actor sees; None means every site."""
        out: set[str] = set()
        for g in self.grants:
            if ALL_SITES in g.sites:
                return None
            out |= set(g.sites)
        return out

    def may(self, power: str, site: str | None = None) -> bool:
        """``power`` (rides, residents, nodes, users, audit, flats, updates) at ``site`` (None: at any of its sites)."""
        return any(power in ROLES[g.role][3] and (site is None or g.covers(site)) for g in self.grants)

    def sees_alert(self, alert: Mapping[str, Any]) -> bool:
        group = kind_group(str(alert.get("kind", "")))
        site = alert.get("site")
        return any(group in ROLES[g.role][2] and g.covers(site) for g in self.grants)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "username": self.username,
            "via": self.via,
            "roles": [{"role": g.role, "role_zh": ROLES[g.role][0], "sites": list(g.sites)} for g in self.grants],
            "powers": sorted({p for g in self.grants for p in ROLES[g.role][3]}),
        }


def grants_json(grants: Iterable[Grant]) -> list[dict[str, Any]]:
    return [{"role": g.role, "sites": list(g.sites)} for g in grants]


def grants_from_json(data: Any) -> tuple[Grant, ...]:
    return tuple(
        Grant(str(d["role"]), tuple(d.get("sites") or [ALL_SITES])) for d in data or [] if d.get("role") in ROLES
    )
