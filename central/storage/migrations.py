"""Versioned schema migrations, per component, for every engine.

A component (``core``, ``releases``, the duty console's tables, ...) owns a numbered list of ``Migration``s, each
with the SQL (or a function) for every engine. ``migrate(db, components)`` applies, in order, each migration the
database has not recorded in ``schema_migrations`` and records it in the same transaction, so a crash leaves every
migration either done or not started. Components are numbered independently: two engineers adding tables at the
same time never fight over a version number. A database that records a version this code does not know was
migrated by a newer central: ``SchemaTooNew``, nothing is touched.

PostgreSQL: every migration transaction first takes an advisory lock, so several processes starting at once
apply each migration exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from central.storage.database import Database, Tx, split_script
from central.storage.errors import SchemaTooNew

log = logging.getLogger("central.storage")

Step = str | Callable[[Tx], None]
MIGRATION_LOCK = 7_263_001  # advisory lock key (PostgreSQL) held while a migration runs

TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (component, version)
)
"""


@dataclass(frozen=True)
class Migration:
    """One step of a component's schema: SQL text (statements ending a line with ';') or a function of a Tx,
    per engine. A migration, once landed, never changes: a later change is a new migration."""

    version: int
    name: str
    sqlite: Step
    postgresql: Step

    def step(self, engine: str) -> Step:
        return self.sqlite if engine == "sqlite" else self.postgresql


@dataclass(frozen=True)
class Component:
    """A named, independently numbered list of migrations (versions 1, 2, 3, ... in order)."""

    name: str
    migrations: tuple[Migration, ...]

    def __post_init__(self) -> None:
        versions = [m.version for m in self.migrations]
        if versions != list(range(1, len(versions) + 1)):
            raise ValueError(f"component {self.name}: migrations must be numbered 1..n in order, got {versions}")

    @property
    def latest(self) -> int:
        return len(self.migrations)


def run_step(tx: Tx, step: Step) -> None:
    if callable(step):
        step(tx)
        return
    for statement in split_script(step):
        tx.execute(statement)


def applied(db: Database) -> dict[str, int]:
    """The highest version recorded per component."""
    with db.write() as tx:
        tx.execute(TABLE)
        rows = tx.all("SELECT component, MAX(version) AS version FROM schema_migrations GROUP BY component")
    return {r["component"]: int(r["version"]) for r in rows}


def migrate(db: Database, components: Sequence[Component]) -> list[str]:
    """Bring every component up to its latest migration; returns what was applied (``core 2: name``)."""
    done = applied(db)
    for component in components:
        if done.get(component.name, 0) > component.latest:
            raise SchemaTooNew(
                f"{db.target}: component {component.name!r} is at schema version {done[component.name]}, this"
                f" central knows up to {component.latest}: it was migrated by a newer central; run that version"
            )
    out: list[str] = []
    for component in components:
        for migration in component.migrations[done.get(component.name, 0) :]:
            if _apply(db, component, migration):
                out.append(f"{component.name} {migration.version}: {migration.name}")
                log.info(
                    "database %s: migrated %s to %d (%s)", db.target, component.name, migration.version, migration.name
                )
    return out


def _apply(db: Database, component: Component, migration: Migration) -> bool:
    with db.write() as tx:
        if tx.engine == "postgresql":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
        found = tx.scalar(
            "SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?", (component.name, migration.version)
        )
        if found:  # another process applied it while this one waited for the lock
            return False
        run_step(tx, migration.step(tx.engine))
        tx.execute(
            "INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)",
            (component.name, migration.version, migration.name, time.time()),
        )
    return True
