"""The central's storage: one interface (``Store``), two engines (SQLite embedded, PostgreSQL for a district).

``open_store(target)`` opens a database, brings its schema up to date (``central.storage.migrations``) and
returns the ``Store``. ``target`` is a file path or ``sqlite:///path`` (SQLite), or ``postgresql://...``.
Other parts of the central that keep tables of their own add a ``Component`` of migrations to ``components``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from central.config import RetentionSection
from central.storage.database import Database, Tx
from central.storage.errors import (
    Conflict,
    NotFound,
    SchemaTooNew,
    StorageCorrupt,
    StorageError,
    StorageIntegrityError,
    StorageUnavailable,
)
from central.storage.migrations import Component, Migration, migrate
from central.storage.schema import CORE
from central.storage.store import Store

__all__ = [
    "CORE",
    "Component",
    "Conflict",
    "Database",
    "Migration",
    "NotFound",
    "SchemaTooNew",
    "StorageCorrupt",
    "StorageError",
    "StorageIntegrityError",
    "StorageUnavailable",
    "Store",
    "Tx",
    "describe_target",
    "open_database",
    "open_store",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(POSTGRES_SCHEMES)


def sqlite_path(target: str | Path) -> Path:
    """The file of a SQLite target: a path, ``sqlite:///abs/path`` or ``sqlite:relative/path``."""
    text = str(target)
    if text.startswith("sqlite://"):
        return Path(text.removeprefix("sqlite://"))
    if text.startswith("sqlite:"):
        return Path(text.removeprefix("sqlite:"))
    return Path(text)


def describe_target(target: str | Path) -> str:
    """The target for messages and logs: a PostgreSQL URL without its password."""
    if not is_postgres(target):
        return str(sqlite_path(target))
    from central.storage.postgres import redact

    return redact(str(target))


def open_database(target: str | Path, *, read_only: bool = False, pool_size: int = 10) -> Database:
    """A database of the engine the target names, without touching its schema."""
    if is_postgres(target):
        from central.storage.postgres import PostgresDatabase  # psycopg only when PostgreSQL is used

        return PostgresDatabase(str(target), pool_size=pool_size)
    from central.storage.sqlite import SqliteDatabase

    return SqliteDatabase(sqlite_path(target), read_only=read_only)


def open_store(
    target: str | Path,
    components: Sequence[Component] = (),
    *,
    retention: RetentionSection | None = None,
    stale_after_s: float = 900.0,
    read_only: bool = False,
    pool_size: int = 10,
) -> Store:
    """Open the database, apply every migration it lacks (core first, then ``components``), return the Store.
    ``retention`` and ``stale_after_s`` are the config's ``[retention]`` and ``server.node_stale_after_s``."""
    db = open_database(target, read_only=read_only, pool_size=pool_size)
    try:
        store = Store(db, retention or RetentionSection(), stale_after_s)
        if not read_only:
            migrate(db, [CORE, *components])
            store.repair()
        return store
    except BaseException:
        db.close()
        raise
