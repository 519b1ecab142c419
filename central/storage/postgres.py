"""The PostgreSQL engine (psycopg 3 and psycopg_pool): for a district or a city, several central processes and
hosts on one database.

Each process keeps a pool of ``[database] pool_size`` connections. Transactions run at READ COMMITTED; what must
not race takes a row lock (a node's batches: its ``node_stats`` row) or an advisory lock (migrations, the
ordered logs of ``central.storage.changes``, one maintenance round at a time). A commit is acknowledged only
once PostgreSQL says it is durable: with ``synchronous_commit = on`` and a synchronous standby
(docs/central.md#production-layout) that is on two hosts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg
import psycopg_pool
from psycopg.rows import DictRow, dict_row

from central.storage.database import split_script
from central.storage.errors import StorageError, StorageIntegrityError, StorageUnavailable
from central.storage.health import StorageHealth

CONNECT_TIMEOUT_S = 10


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


ARRAY_PARAMETER = re.compile(r"\?(?=::\w+\[\])")


@functools.lru_cache(maxsize=512)
def convert(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (and a literal ``%`` doubled); one cast to an array type
    (``?::float8[]``) to ``%b``: sent in binary format. psycopg's text format escapes every element of an array
    with a regular expression, which took 40% of a batch-200 insert; the binary format takes one type per array
    (a float column is given floats, not ints and floats mixed)."""
    return ARRAY_PARAMETER.sub("%b", sql.replace("%", "%%")).replace("?", "%s")


def translate(exc: Exception, target: str) -> StorageError:
    text = f"{type(exc).__name__}: {exc}".strip()
    if isinstance(exc, psycopg.IntegrityError):
        return StorageIntegrityError(text)
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout | psycopg.InterfaceError):
        return StorageUnavailable(f"{target}: {text}")
    return StorageError(text)


class PostgresTx:
    """A transaction on one pooled connection (see ``central.storage.database.Tx``)."""

    engine = "postgresql"

    def __init__(self, conn: psycopg.Connection[DictRow]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._conn.execute(convert(sql), args or None).rowcount

    def one(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        return self._conn.execute(convert(sql), args or None).fetchone()

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._conn.execute(convert(sql), args or None).fetchall()

    def scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self.one(sql, args)
        return next(iter(row.values())) if row else None

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(convert(sql), list(rows))

    def script(self, sql: str) -> None:
        for statement in split_script(sql):
            self._conn.execute(statement)

    def hold_append(self, key: int) -> None:
        self._conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (key,))

    def wait_appends(self, key: int) -> None:
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    def try_lock(self, key: int) -> bool:
        return bool(self.scalar("SELECT pg_try_advisory_xact_lock(?)", (key,)))


POOL_WAIT_S = 30.0  # a request waits this long for a connection (all busy, or the server away), then 503


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database."""

    engine = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.target = redact(url)
        self.health = StorageHealth()
        try:  # one direct connection first: a wrong URL or password is named at once, not after a pool timeout
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
        except psycopg.Error as exc:
            raise StorageUnavailable(f"{self.target}: {type(exc).__name__}: {exc}".strip()) from exc
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min(2, pool_size),
            max_size=pool_size,
            kwargs={"row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT_S},
            timeout=POOL_WAIT_S,
            name="central",
            # a connection is tried (an empty query, 40-70 us on a Unix socket) before each use: after a restart
            # of PostgreSQL every pooled connection is dead, and without it each answered one upload 503 (its
            # node then waits 30 s: an entrapment among them)
            check=psycopg_pool.ConnectionPool.check_connection,
            open=True,
        )

    @contextmanager
    def write(self) -> Iterator[PostgresTx]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield PostgresTx(cast("psycopg.Connection[DictRow]", conn))  # made with row_factory=dict_row
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise self.health.failed(translate(exc, self.target)) from exc

    read = write  # a read is a transaction too (advisory locks, one snapshot per statement)

    def close(self) -> None:
        self._pool.close()
