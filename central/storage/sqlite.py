"""The SQLite engine: one file in WAL mode with ``synchronous=FULL``, one writer connection.

A batch is acknowledged only after its transaction is on disk, because the node deletes what the central
acknowledged. Writes are serialised by a lock (SQLite has one writer anyway). Reads run on connections of their
own, one per thread and ``query_only``: in WAL mode a reader sees the last commit and never waits for the writer,
so an operator's page is not queued behind uploads (issue 15). One process only: a second process on the same
file would work but fight for the write lock, so ``central serve`` refuses ``--workers`` above 1 on SQLite.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from central.storage.database import split_script
from central.storage.errors import StorageCorrupt, StorageError, StorageIntegrityError, StorageUnavailable
from central.storage.health import StorageHealth

log = logging.getLogger("central")


def translate(exc: sqlite3.Error, target: str) -> StorageError:
    """The storage error for an sqlite3 exception; the message keeps its class name and text."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, sqlite3.IntegrityError):
        return StorageIntegrityError(text)
    if isinstance(exc, sqlite3.DatabaseError) and type(exc) is sqlite3.DatabaseError:
        return StorageCorrupt(text)  # "file is not a database", "database disk image is malformed"
    if "malformed" in str(exc) or "not a database" in str(exc):
        return StorageCorrupt(text)
    return StorageUnavailable(text)


class SqliteTx:
    """A transaction on the SQLite connection (see ``central.storage.database.Tx``)."""

    engine = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, args).rowcount

    def one(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        row = self._conn.execute(sql, args).fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute(sql, args).fetchall()]

    def scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self._conn.execute(sql, args).fetchone()
        return row[0] if row is not None else None

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def script(self, sql: str) -> None:
        for statement in split_script(sql):
            self._conn.execute(statement)

    def hold_append(self, key: int) -> None:
        """Nothing: one writer, so positions commit in order."""

    def wait_appends(self, key: int) -> None:
        """Nothing: a read sees a committed prefix of every log."""

    def try_lock(self, key: int) -> bool:
        """True: one process writes, and this transaction already holds the write lock."""
        return True


WAL_SIZE_LIMIT = 8 * 1024 * 1024  # bytes the WAL file is cut back to after a checkpoint


class SqliteDatabase:
    """One SQLite file (created mode 0600: it holds token hashes and residents' contacts)."""

    engine = "sqlite"

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.target = str(self.path)
        self._lock = threading.RLock()
        self._read_only = read_only
        self._local = threading.local()  # this thread's read connection
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()  # not the writer's: a first read must not wait for an upload
        self._closed = False
        self.health = StorageHealth(self.path.parent)
        try:
            if read_only:
                self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            else:
                _create_private(self.path)
                self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            if not read_only:
                self._conn.execute("PRAGMA journal_mode=WAL")
                # acknowledged events must survive a power cut: the node deletes them once acknowledged
                self._conn.execute("PRAGMA synchronous=FULL")
                # a day's deletes make the WAL large once; without a limit it keeps that size for good
                self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise translate(exc, self.target) from exc

    def write(self) -> AbstractContextManager[SqliteTx]:
        return self._transaction(self._conn, "BEGIN IMMEDIATE")  # the write lock at once: no upgrade deadlock

    def read(self) -> AbstractContextManager[SqliteTx]:
        if self._read_only:  # a file opened read-only (a command reading a central's file): its one connection
            return self._transaction(self._conn, "BEGIN")
        return self._transaction(self._reader(), "BEGIN", locked=False)

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (made on first use, closed with the database)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._readers_lock:
            if self._closed:
                raise StorageUnavailable(f"{self.target}: the database is closed")
            try:
                conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA query_only=ON")
                conn.execute("PRAGMA busy_timeout=5000")
            except sqlite3.Error as exc:
                raise self.health.failed(translate(exc, self.target)) from exc
            self._readers.append(conn)
        self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection, begin: str, *, locked: bool = True) -> Iterator[SqliteTx]:
        """One transaction on ``conn`` (the writer's, under the lock): committed at the end, rolled back on any
        exception; SQLite's errors become the storage's (``translate``)."""
        with self._lock if locked else contextlib.nullcontext():
            try:
                conn.execute(begin)
                yield SqliteTx(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise self.health.failed(translate(exc, self.target)) from exc
                raise

    def close(self) -> None:
        with self._lock, self._readers_lock:
            self._closed = True
            for conn in [self._conn, *self._readers]:
                conn.close()
            self._readers.clear()


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the connection is gone or closed: nothing was committed


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does; SQLite gives its -wal and -shm files the same mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "database %s has mode %04o: other users may read token hashes and contacts; chmod 600", path, mode
            )


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT on a plain sqlite3 connection, rolled back on any exception (which then
    propagates). For the release tables' own connection (central/release_store.py) until they move behind
    ``Store``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
