"""``central migrate-db --from SOURCE --to TARGET``: move a central's data from one database to another (SQLite to
PostgreSQL, back, or through a portable dump), every table as it is: nodes and their tokens' hashes, events,
alerts and their log, rides, the change feed with its positions, accounts, flats, notifications, releases.

A SOURCE or TARGET is a SQLite file, a ``postgresql://`` URL, or a dump file ending in ``.jsonl.gz``
(``central.transfer.dump``). The source is read in one snapshot and never written. The target is brought by
the central's own migrations to exactly the source's schema versions, refused if it holds data (unless
``--replace``, which deletes it first), written in one transaction (a failure leaves it as it was), then
migrated to this central's latest schema, and its rows counted again from a fresh connection: any table whose
count differs from the source's fails the move.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from central.storage import Component, SchemaTooNew, StorageError, describe_target, is_postgres, sqlite_path
from central.transfer.dump import DumpReader, DumpWriter, is_dump
from central.transfer.engines import (
    PostgresReader,
    PostgresWriter,
    Reader,
    SqliteReader,
    SqliteWriter,
    Table,
    TransferError,
    Writer,
)

PROGRESS_EVERY_S = 2.0
# filled by the migrations themselves: emptied and copied whatever the target holds
MIGRATION_ROWS = ("meta",)


def components() -> list[Component]:
    """Every component of the central's schema, core first (as ``open_store`` migrates them)."""
    from central.app import STORAGE_COMPONENTS
    from central.storage import CORE

    return [CORE, *STORAGE_COMPONENTS]


def open_reader(source: str) -> Reader:
    if is_postgres(source):
        return PostgresReader(source)
    if is_dump(source):
        return DumpReader(Path(source))
    return SqliteReader(sqlite_path(source))


class Progress:
    """Lines on ``out``: each table's size, a line every ``every_s`` while it is copied, its time at the end."""

    def __init__(self, out: IO[str], every_s: float = PROGRESS_EVERY_S) -> None:
        self.out = out
        self.every_s = every_s

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def rows(self, table: str, total: int, rows: Iterable[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        start = last = time.monotonic()
        done = 0
        for row in rows:
            yield row
            done += 1
            if done & 1023 == 0 and (now := time.monotonic()) - last >= self.every_s:
                last = now
                rate = done / (now - start)
                left = (total - done) / rate if rate else 0.0
                self.say(f"  {table}: {done:,} of {total:,} rows ({100 * done / max(total, 1):.0f}%),"
                         f" {rate:,.0f} rows/s, about {left:,.0f} s left")  # fmt: skip
        if total >= 10_000:
            self.say(f"  {table}: {done:,} rows in {time.monotonic() - start:.1f} s")


def _check_versions(found: dict[str, int], known: list[Component], where: str) -> None:
    latest = {c.name: c.latest for c in known}
    for name, version in sorted(found.items()):
        if name not in latest:
            raise TransferError(f"{where} has tables of component {name!r}, which this central does not know")
        if version > latest[name]:
            raise TransferError(
                f"{where} is at {name} schema version {version}; this central knows up to {latest[name]}:"
                " run migrate-db from the central version that made it"
            )


def _migrate_target(target: str, versions: dict[str, int] | None, known: list[Component]) -> None:
    """Apply the central's migrations to a database target: up to ``versions`` (the source's), or all."""
    from central.storage import migrate, open_database

    if not is_postgres(target):
        sqlite_path(target).parent.mkdir(parents=True, exist_ok=True)
    wanted = known if versions is None else [Component(c.name, c.migrations[: versions.get(c.name, 0)]) for c in known]
    try:
        db = open_database(target, pool_size=2)
        try:
            migrate(db, wanted)
        finally:
            db.close()
    except SchemaTooNew as exc:
        raise TransferError(
            f"the target's schema is newer than the source's ({exc}); move into a new, empty database, or start"
            " this central once on the source so that both are at the same version"
        ) from exc
    except StorageError as exc:
        raise TransferError(f"{describe_target(target)}: {exc}") from exc


def _open_writer(target: str, versions: dict[str, int], source: Reader, replace: bool) -> Writer:
    if is_dump(target):
        if Path(target).exists() and not replace:
            raise TransferError(f"{target} exists; give --replace to write over it")
        return DumpWriter(Path(target), versions, source.description)
    if is_postgres(target):
        return PostgresWriter(target)
    return SqliteWriter(sqlite_path(target))


def _plan(source: Reader, writer: Writer, replace: bool) -> list[Table]:
    """The source's tables, checked against the target's; refuses a target holding data unless replacing."""
    tables = source.tables()
    if isinstance(writer, DumpWriter):
        return tables
    there = writer.tables()
    for table in tables:
        if table.name not in there:
            raise TransferError(f"the target has no table {table.name!r}: it was not made by this central's schema")
        missing = sorted(set(table.columns) - set(there[table.name].columns))
        if missing:
            raise TransferError(f"the target's table {table.name} has no column(s) {missing}")
    held = {name: n for name, n in writer.counts().items() if n and name not in MIGRATION_ROWS}
    if held and not replace:
        listed = ", ".join(f"{name} ({n:,} rows)" for name, n in sorted(held.items()))
        raise TransferError(
            f"the target {writer.description} already holds data: {listed}. Nothing was written. Give --replace to"
            " delete everything in it first, or choose an empty database"
        )
    return tables


def move(source: str, target: str, *, replace: bool = False, out: IO[str] | None = None) -> dict[str, int]:
    """Copy every table from ``source`` to ``target`` and check the counts; returns rows per table. Progress
    goes to ``out`` (standard error). Raises TransferError saying what is wrong (nothing is committed then)."""
    progress = Progress(out or sys.stderr)
    known = components()
    reader = open_reader(source)
    try:
        versions = reader.versions()
        _check_versions(versions, known, reader.description)
        if not is_dump(target):
            _migrate_target(target, versions, known)
        writer = _open_writer(target, versions, reader, replace)
        try:
            tables = _plan(reader, writer, replace)
            counts = {t.name: reader.count(t) for t in tables}
            progress.say(
                f"moving {sum(counts.values()):,} rows in {len(tables)} tables from {reader.description} to"
                f" {writer.description} (schema {', '.join(f'{k} {v}' for k, v in sorted(versions.items()))})"
            )
            _copy(reader, writer, tables, counts, replace, progress)
        finally:
            writer.close()
        if not is_dump(target):
            _migrate_target(target, None, known)
        _verify(writer, counts, progress)
    finally:
        reader.close()
    return counts


def _copy(
    reader: Reader, writer: Writer, tables: list[Table], counts: dict[str, int], replace: bool, progress: Progress
) -> None:
    writer.begin()
    for table in writer.tables().values():  # a dump has none: it is written whole
        if replace or table.name in MIGRATION_ROWS:
            writer.clear(table)
    for table in tables:
        rows = progress.rows(table.name, counts[table.name], reader.rows(table))
        writer.write(table, table.columns, rows, counts[table.name])
    writer.commit()


def _verify(writer: Writer, expected: dict[str, int], progress: Progress) -> None:
    found = writer.counts()
    wrong = {name: (n, found.get(name)) for name, n in expected.items() if found.get(name) != n}
    for name, n in sorted(expected.items()):
        if n:
            progress.say(
                f"  {name:24} {n:>12,} rows" + ("" if name not in wrong else f"  TARGET HAS {found.get(name)}")
            )
    if wrong:
        raise TransferError(f"the target's counts differ from the source's (source, target): {wrong}")
    progress.say(f"done: {sum(expected.values()):,} rows in {len(expected)} tables, every count checked")


def _file_tree(root: Path) -> tuple[int, int]:
    """(files, bytes) under ``root``."""
    found = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    return len(found), sum(p.stat().st_size for p in found)


def copy_release_files(source: str, target: str, files_dir: Path, progress: Progress) -> None:
    """The release bundles' files live beside the database (central.release_store.files_root), not in it: copy
    them to where the target's central looks, and check that as many files and bytes arrived."""
    import shutil

    from central.release_store import files_root

    if is_dump(source) or is_dump(target):
        if not is_dump(source) and _file_tree(files_root(source, files_dir))[0]:
            progress.say(f"note: release files are not in a dump: copy {files_root(source, files_dir)} yourself")
        return
    here, there = files_root(source, files_dir), files_root(target, files_dir)
    files, size = _file_tree(here)
    if not files or here.resolve() == there.resolve():
        return
    shutil.copytree(here, there, dirs_exist_ok=True)
    arrived = _file_tree(there)
    if arrived[0] < files or arrived[1] < size:
        raise TransferError(f"release files: {arrived} (files, bytes) in {there}, {(files, size)} in {here}")
    progress.say(f"release files: {files:,} files, {size / 1e6:.1f} MB copied from {here} to {there}")


def cmd_migrate_db(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        move(args.source, args.target, replace=args.replace)
        copy_release_files(args.source, args.target, args.files_dir, Progress(sys.stderr))
    except (TransferError, OSError) as exc:
        print(f"central migrate-db: {exc}", file=sys.stderr)
        return 1
    print(f"central migrate-db: finished in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    """``central migrate-db`` on the central's command line."""
    parser = sub.add_parser(
        "migrate-db",
        help="move the data to another database or a dump (SQLite -> PostgreSQL, a portable .jsonl.gz dump, back)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--from", dest="source", required=True, help="SQLite file, postgresql:// URL or FILE.jsonl.gz")
    parser.add_argument("--to", dest="target", required=True, help="SQLite file, postgresql:// URL or FILE.jsonl.gz")
    parser.add_argument("--replace", action="store_true", help="delete what the target holds first (default: refuse)")
    parser.add_argument(
        "--files-dir",
        type=Path,
        default=Path("/var/lib/changbai"),
        help="[database] files_dir of a PostgreSQL source or target: release files are under DIR/releases"
        " (SQLite: beside the file)",
    )
    parser.set_defaults(func=cmd_migrate_db)
