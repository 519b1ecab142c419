"""Central storage: versioned migrations per component, a database made by the previous schema, engine errors
turned into storage errors (no server: the Store itself)."""

from __future__ import annotations

import sqlite3

import pytest

from central.storage import (
    Component,
    Migration,
    NotFound,
    SchemaTooNew,
    StorageCorrupt,
    StorageUnavailable,
    open_database,
    open_store,
)
from central.storage.migrations import applied, migrate
from central.storage.schema_v1 import SQLITE as SCHEMA_V1

LIFT = "cbxc-b7-u2-lift1"


def _legacy_database(path) -> None:
    """A database as the central before versioned migrations made it: schema version 1 in ``meta``."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V1)
    db.execute(
        "INSERT INTO nodes (node_id, role, site, token_hash, registered_at, token_issued_at) VALUES (?, ?, ?, ?, ?, ?)",
        (LIFT, "elevator", "changbai-xincun", "ab" * 32, 1.0, 1.0),
    )
    db.commit()
    db.close()


def test_a_database_of_the_first_schema_is_recognised_and_kept(tmp_path):
    path = tmp_path / "central.sqlite3"
    _legacy_database(path)
    store = open_store(path)
    try:
        assert store.nodes.get(LIFT)["role"] == "elevator"
        assert applied(store.db)["core"] >= 1
    finally:
        store.close()


def test_a_component_adds_its_tables_once_and_in_order(tmp_path):
    path = tmp_path / "central.sqlite3"
    first = Migration(1, "notes", sqlite="CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT);", postgresql="")
    second = Migration(2, "notes.by", sqlite="ALTER TABLE notes ADD COLUMN by TEXT;", postgresql="")
    store = open_store(path, [Component("notes", (first,))])
    store.close()
    store = open_store(path, [Component("notes", (first, second))])  # a later central adds a migration
    try:
        with store.db.write() as tx:
            tx.execute("INSERT INTO notes (text, by) VALUES (?, ?)", ("hello", "me"))
        assert applied(store.db)["notes"] == 2
        assert migrate(store.db, [Component("notes", (first, second))]) == []  # nothing left to do
    finally:
        store.close()


def test_a_database_migrated_by_a_newer_central_is_refused_untouched(tmp_path):
    path = tmp_path / "central.sqlite3"
    one = Migration(1, "t", sqlite="CREATE TABLE t (x INTEGER);", postgresql="")
    two = Migration(2, "u", sqlite="CREATE TABLE u (x INTEGER);", postgresql="")
    open_store(path, [Component("extra", (one, two))]).close()
    with pytest.raises(SchemaTooNew, match="'extra' is at schema version 2"):
        open_store(path, [Component("extra", (one,))])


def test_migrations_must_be_numbered_in_order():
    with pytest.raises(ValueError, match="numbered 1..n"):
        Component("bad", (Migration(2, "x", sqlite="", postgresql=""),))


def test_a_failed_migration_leaves_nothing_half_done(tmp_path):
    path = tmp_path / "central.sqlite3"
    broken = Migration(1, "broken", sqlite="CREATE TABLE half (x INTEGER);\nNOT SQL AT ALL;", postgresql="")
    with pytest.raises(StorageUnavailable):
        open_store(path, [Component("broken", (broken,))])
    db = open_database(path)
    try:
        with db.read() as tx:
            assert tx.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'half'") == 0
        assert "broken" not in applied(db)
    finally:
        db.close()


def test_engine_errors_come_out_as_storage_errors(tmp_path):
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageCorrupt, match="DatabaseError: file is not a database"):
        open_store(damaged)
    store = open_store(tmp_path / "ok.sqlite3")
    with pytest.raises(NotFound):
        store.nodes.get("nobody")
    store.close()
    with pytest.raises(StorageUnavailable, match="closed database"):
        store.nodes.get("nobody")


def test_a_sqlite_read_does_not_wait_for_the_writer_and_sees_the_last_commit(tmp_path):
    """Reads run on their own query_only connection (issue 15): an operator's read is answered while an upload
    holds the write transaction, with what was committed before it; a write through ``read()`` is refused."""
    import threading

    from central.storage.errors import StorageError

    db = open_database(tmp_path / "central.sqlite3")
    try:
        with db.write() as tx:
            tx.script("CREATE TABLE t (v INTEGER);")
            tx.execute("INSERT INTO t (v) VALUES (1)")
        holding, release = threading.Event(), threading.Event()

        def upload() -> None:
            with db.write() as tx:
                tx.execute("INSERT INTO t (v) VALUES (2)")
                holding.set()
                release.wait(30)

        writer = threading.Thread(target=upload)
        writer.start()
        assert holding.wait(30)
        seen: list[list[int]] = []
        reader = threading.Thread(
            target=lambda: seen.append([r["v"] for r in db.read().__enter__().all("SELECT v FROM t")])
        )
        reader.start()
        reader.join(20)
        answered = not reader.is_alive()
        release.set()
        writer.join(30)
        reader.join(30)
        assert answered, "the read waited for the writer's transaction"
        assert seen == [[1]]
        with db.read() as tx:
            assert [r["v"] for r in tx.all("SELECT v FROM t ORDER BY v")] == [1, 2]
        with pytest.raises(StorageError, match="readonly"), db.read() as tx:
            tx.execute("INSERT INTO t (v) VALUES (3)")
    finally:
        db.close()
