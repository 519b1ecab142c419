"""The central's SQLite WAL does not keep the size of its largest transaction (issue 15: retention's daily deletes
left it 16 MB larger for good): after a checkpoint it is cut back to ``WAL_SIZE_LIMIT``."""

from __future__ import annotations

from pathlib import Path

from central.storage.sqlite import WAL_SIZE_LIMIT, SqliteDatabase


def test_the_wal_shrinks_back_after_a_large_transaction(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "central.sqlite3")
    wal = tmp_path / "central.sqlite3-wal"
    try:
        with db.write() as tx:
            tx.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        with db.write() as tx:  # one transaction of 24 MB (a day's deletes at a city's scale)
            for i in range(96):
                tx.execute("INSERT INTO blobs (id, body) VALUES (?, ?)", (i, bytes(256 * 1024)))
        peak = wal.stat().st_size
        assert peak > 2 * WAL_SIZE_LIMIT
        for i in range(200):  # everyday small writes: the automatic checkpoints run and the WAL starts over
            with db.write() as tx:
                tx.execute("UPDATE blobs SET body = ? WHERE id = ?", (bytes(64), i % 96))
        assert wal.stat().st_size <= WAL_SIZE_LIMIT, (peak, wal.stat().st_size)
    finally:
        db.close()
