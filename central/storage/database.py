"""The thin layer every engine provides: transactions that run SQL and answer rows as dicts.

Statements are written once with ``?`` placeholders; an engine that wants another style (psycopg's ``%s``)
converts them. ``Database.write()`` is a read-write transaction (committed when the block ends, rolled back on
any exception), ``Database.read()`` a read-only one. Engine exceptions never leave a block: they come out as
``central.storage.errors.StorageError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from central.storage.health import StorageHealth


class Tx(Protocol):
    """One open transaction."""

    engine: str

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""

    def one(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        """The first row, or None."""

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Every row."""

    def scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """The statement once per row of arguments."""

    def script(self, sql: str) -> None:
        """Several statements without arguments (DDL), in this transaction."""

    def hold_append(self, key: int) -> None:
        """This transaction appends to the ordered log ``key`` (change feed, events): readers that
        ``wait_appends(key)`` see its rows only once it committed, never a later position first."""

    def try_lock(self, key: int) -> bool:
        """Take the exclusive lock ``key`` until this transaction ends, if free (PostgreSQL advisory lock;
        always True on SQLite, where one process writes)."""

    def wait_appends(self, key: int) -> None:
        """Wait until no transaction appending to log ``key`` is in flight, and keep new ones out until this
        transaction ends (a PostgreSQL advisory lock; nothing on SQLite, whose one writer commits in order)."""


class Database(Protocol):
    """Connections to one database of one engine (``engine`` is ``"sqlite"`` or ``"postgresql"``)."""

    engine: str
    target: str  # what it was opened from, without a password (for messages)
    health: StorageHealth  # its failures and stored uploads in this process

    def write(self) -> AbstractContextManager[Tx]:
        """A read-write transaction."""

    def read(self) -> AbstractContextManager[Tx]:
        """A read-only transaction (a consistent snapshot)."""

    def close(self) -> None:
        """Close every connection; later calls raise StorageUnavailable."""


IN_LIST_MAX = 500  # SQLite: values per IN list (its limit on a statement's parameters is 999 in old versions)


def any_of(engine: str, values: Collection[Any], pg_type: str = "text") -> Iterator[tuple[str, list[Any]]]:
    """``(match, args)`` pairs for ``WHERE column {match}`` that together select the rows whose column is one of
    ``values``. PostgreSQL: one ``= ANY(array)`` (the same statement text for any count, so psycopg caches and
    prepares it); SQLite: ``IN (?, ...)`` lists of at most IN_LIST_MAX values."""
    wanted = sorted(values)
    if engine == "postgresql":
        if wanted:
            yield f"= ANY(?::{pg_type}[])", [wanted]
        return
    for start in range(0, len(wanted), IN_LIST_MAX):
        chunk = wanted[start : start + IN_LIST_MAX]
        yield f"IN ({', '.join('?' * len(chunk))})", chunk


def split_script(sql: str) -> Iterator[str]:
    """The statements of a DDL script: split at a ';' that ends a line (our migrations keep to that)."""
    statement: list[str] = []
    for line in sql.splitlines():
        statement.append(line)
        if line.rstrip().endswith(";"):
            text = "\n".join(statement).strip().rstrip(";").strip()
            statement = []
            if text and not all(part.strip().startswith("--") for part in text.splitlines()):
                yield text
    rest = "\n".join(statement).strip()
    if rest and not all(part.strip().startswith("--") for part in rest.splitlines()):
        yield rest
