"""Table-level access to a central's database for ``central migrate-db``: read every row of every table in one
snapshot, write them in one transaction (PostgreSQL by COPY), count what is there.

This works below ``central.storage`` on purpose: a move copies tables as they are, whatever the Store makes of
them, so a table a later migration adds is moved without a change here. The schema itself is always made by
the central's own migrations (``central.transfer.copy``), never here.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

FETCH_ROWS = 5000
# never copied: the schema's own bookkeeping, made by the migrations on the target
BOOKKEEPING = "schema_migrations"


class TransferError(Exception):
    """The move cannot go on; the message names the table and what is wrong."""


@dataclass(frozen=True)
class Table:
    """A table, its columns in order, and its integer key column whose counter must follow the copied rows
    (SQLite AUTOINCREMENT, PostgreSQL identity), if any."""

    name: str
    columns: tuple[str, ...]
    identity: str | None = None


class Reader(Protocol):
    """One consistent snapshot of a source."""

    description: str

    def versions(self) -> dict[str, int]:
        """The schema version of each component (``schema_migrations``)."""

    def tables(self) -> list[Table]:
        """Every table but the bookkeeping, in a stable order."""

    def count(self, table: Table) -> int: ...

    def rows(self, table: Table) -> Iterator[Sequence[Any]]:
        """The rows, in the order of the table's key, each with ``table.columns`` in order."""

    def close(self) -> None: ...


class Writer(Protocol):
    """A target inside one transaction, from ``begin()`` to ``commit()``."""

    description: str

    def tables(self) -> dict[str, Table]: ...

    def counts(self) -> dict[str, int]:
        """Rows per table (committed ones, seen from a fresh connection, after ``commit()``)."""

    def begin(self) -> None: ...

    def clear(self, table: Table) -> None: ...

    def write(self, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]], count: int) -> None:
        """The ``count`` rows of ``table`` (their values for ``columns``, in order)."""

    def commit(self) -> None:
        """Move each key counter past the copied rows, then commit (PostgreSQL: and gather the planner's
        statistics)."""

    def close(self) -> None: ...


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------------------------------- SQLite
def _sqlite_tables(conn: sqlite3.Connection) -> list[Table]:
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    out = []
    for name in names:
        if name == BOOKKEEPING:
            continue
        info = conn.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0] or ""
        keys = [r[1] for r in info if r[5] == 1 and str(r[2]).upper() == "INTEGER"]
        identity = keys[0] if len(keys) == 1 and "AUTOINCREMENT" in sql.upper() else None
        out.append(Table(name, tuple(r[1] for r in info), identity))
    return out


class SqliteReader:
    """A SQLite file opened read-only; the whole read is one snapshot (a central still running is not seen)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise TransferError(f"{path}: no such database file")
        self.description = str(path)
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self._conn.execute("BEGIN")

    def versions(self) -> dict[str, int]:
        try:
            rows = self._conn.execute(
                f"SELECT component, MAX(version) FROM {BOOKKEEPING} GROUP BY component"  # noqa: S608 - a constant
            ).fetchall()
        except sqlite3.OperationalError:
            raise TransferError(
                f"{self.description} has no schema_migrations table (made by a central from before issue 15):"
                " start `central serve` on it once, which records its schema, then move it"
            ) from None
        return {str(c): int(v) for c, v in rows}

    def tables(self) -> list[Table]:
        return _sqlite_tables(self._conn)

    def count(self, table: Table) -> int:
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {_quote(table.name)}").fetchone()[0])  # noqa: S608

    def rows(self, table: Table) -> Iterator[Sequence[Any]]:
        cols = ", ".join(map(_quote, table.columns))
        cursor = self._conn.execute(f"SELECT {cols} FROM {_quote(table.name)} ORDER BY rowid")  # noqa: S608
        while batch := cursor.fetchmany(FETCH_ROWS):
            yield from batch

    def close(self) -> None:
        self._conn.close()


class SqliteWriter:
    """A SQLite file (made by the migrations before), written in one transaction."""

    def __init__(self, path: Path) -> None:
        self.description = str(path)
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=5000")

    def tables(self) -> dict[str, Table]:
        return {t.name: t for t in _sqlite_tables(self._conn)}

    def counts(self) -> dict[str, int]:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as fresh:
            return {
                t.name: int(fresh.execute(f"SELECT COUNT(*) FROM {_quote(t.name)}").fetchone()[0])  # noqa: S608
                for t in _sqlite_tables(fresh)
            }

    def begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def clear(self, table: Table) -> None:
        self._conn.execute(f"DELETE FROM {_quote(table.name)}")  # noqa: S608

    def write(self, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]], count: int) -> None:
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {_quote(table.name)} ({', '.join(map(_quote, columns))}) VALUES ({marks})"  # noqa: S608
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise TransferError(f"{self.description}: table {table.name}: {type(exc).__name__}: {exc}") from exc

    def commit(self) -> None:
        # AUTOINCREMENT counters follow explicit keys by themselves (sqlite_sequence)
        self._conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._conn.close()


# ------------------------------------------------------------------------------------------------ PostgreSQL
# a partition (readings' days) is read and written through its partitioned table, never on its own
_PG_TABLES = """
SELECT c.table_name, c.column_name, c.is_identity, c.data_type
FROM information_schema.columns c
JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
  AND NOT EXISTS (SELECT 1 FROM pg_inherits i
                  WHERE i.inhrelid = (quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))::regclass)
ORDER BY c.table_name, c.ordinal_position
"""
_INTEGER_TYPES = ("bigint", "integer", "smallint")


def _pg_tables(conn: Any) -> tuple[list[Table], dict[str, set[str]]]:
    """Tables, and per table its integer columns (a float from SQLite is made an int for them)."""
    columns: dict[str, list[str]] = {}
    identity: dict[str, str] = {}
    integers: dict[str, set[str]] = {}
    for table, column, is_identity, data_type in conn.execute(_PG_TABLES).fetchall():
        columns.setdefault(table, []).append(column)
        if is_identity == "YES":
            identity[table] = column
        if data_type in _INTEGER_TYPES:
            integers.setdefault(table, set()).add(column)
    tables = [Table(n, tuple(c), identity.get(n)) for n, c in sorted(columns.items()) if n != BOOKKEEPING]
    return tables, integers


def _pg_connect(url: str) -> Any:
    import psycopg  # only when PostgreSQL is used

    from central.storage.postgres import redact

    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        raise TransferError(f"{redact(url)}: {type(exc).__name__}: {exc}".strip()) from exc


class PostgresReader:
    """A PostgreSQL database read in one REPEATABLE READ transaction (one snapshot), by server-side cursors."""

    def __init__(self, url: str) -> None:
        from central.storage.postgres import redact

        self.description = redact(url)
        self._conn = _pg_connect(url)
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def versions(self) -> dict[str, int]:
        sql = f"SELECT component, MAX(version) FROM {BOOKKEEPING} GROUP BY component"
        return {str(c): int(v) for c, v in self._conn.execute(sql).fetchall()}

    def tables(self) -> list[Table]:
        return _pg_tables(self._conn)[0]

    def count(self, table: Table) -> int:
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {_quote(table.name)}").fetchone()[0])  # noqa: S608

    def rows(self, table: Table) -> Iterator[Sequence[Any]]:
        cols = ", ".join(map(_quote, table.columns))
        order = f" ORDER BY {_quote(table.identity)}" if table.identity else ""
        with self._conn.cursor(name=f"transfer_{table.name}") as cursor:
            cursor.itersize = FETCH_ROWS
            cursor.execute(f"SELECT {cols} FROM {_quote(table.name)}{order}")  # noqa: S608
            for row in cursor:  # uuid columns (readings' ids) as their text, as SQLite and the dump keep them
                yield tuple(str(v) if isinstance(v, uuid.UUID) else v for v in row)

    def close(self) -> None:
        self._conn.close()


class PostgresWriter:
    """A PostgreSQL database (made by the migrations before), written by COPY in one transaction."""

    def __init__(self, url: str) -> None:
        from central.storage.postgres import redact

        self.description = redact(url)
        self._url = url
        self._conn = _pg_connect(url)
        self._conn.autocommit = True
        self._integers: dict[str, set[str]] = {}

    def tables(self) -> dict[str, Table]:
        tables, self._integers = _pg_tables(self._conn)
        return {t.name: t for t in tables}

    def counts(self) -> dict[str, int]:
        with _pg_connect(self._url) as fresh:
            return {
                t.name: int(fresh.execute(f"SELECT COUNT(*) FROM {_quote(t.name)}").fetchone()[0])  # noqa: S608
                for t in _pg_tables(fresh)[0]
            }

    def begin(self) -> None:
        self._conn.execute("BEGIN")

    def clear(self, table: Table) -> None:
        self._conn.execute(f"DELETE FROM {_quote(table.name)}")  # noqa: S608

    def write(self, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]], count: int) -> None:
        import psycopg

        integers = [i for i, c in enumerate(columns) if c in self._integers.get(table.name, set())]
        sql = f"COPY {_quote(table.name)} ({', '.join(map(_quote, columns))}) FROM STDIN"
        try:
            with self._conn.cursor().copy(sql) as copy:
                for row in rows:
                    copy.write_row(_as_integers(row, integers) if integers else row)
        except psycopg.Error as exc:
            raise TransferError(f"{self.description}: table {table.name}: {type(exc).__name__}: {exc}") from exc

    def commit(self) -> None:
        for table in self.tables().values():
            if table.identity:
                name, key = _quote(table.name), _quote(table.identity)
                self._conn.execute(
                    f"SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE(MAX({key}), 0) + 1, false) FROM {name}",  # noqa: S608
                    (table.name, table.identity),
                )
        self._conn.execute("COMMIT")
        # the planner's statistics of the copied tables at once, not when autovacuum comes round: until then the
        # central's prepared statements are planned without them (a hash of every meter per batch)
        self._conn.execute("ANALYZE")

    def close(self) -> None:
        self._conn.close()


def _as_integers(row: Sequence[Any], integers: list[int]) -> list[Any]:
    """SQLite may hand back 3.0 for an integer column's 3; PostgreSQL's bigint takes only 3."""
    out = list(row)
    for i in integers:
        value = out[i]
        if isinstance(value, float) and value.is_integer():
            out[i] = int(value)
    return out
