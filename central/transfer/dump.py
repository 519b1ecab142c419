"""The portable dump of a central: one gzipped JSON-lines file, readable by either engine's central and by any
tool that reads JSON.

Line 1: ``{"format": "changbai-central-dump", "version": 1, "schema": {component: version}, "source", "made_at"}``.
Then per table a line ``{"table": NAME, "columns": [...], "identity": COLUMN|null, "rows": N}`` and its N rows,
one JSON array each, in the order of the table's key (bytes as ``{"b64": "..."}``). Last line:
``{"end": {table: rows}}``: a dump without it was cut short and is refused. The file is written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from central.transfer.engines import Table, TransferError
from common.files import fsync_path

FORMAT = "changbai-central-dump"
VERSION = 1
SUFFIX = ".jsonl.gz"


def is_dump(target: str) -> bool:
    return target.endswith(SUFFIX)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value


class DumpReader:
    """A dump file read from start to end; ``tables()`` reads the whole file once to find the tables and
    checks that it is complete, then ``rows()`` reads each table's rows in turn."""

    def __init__(self, path: Path) -> None:
        self.description = str(path)
        self.path = path
        self._index: dict[str, tuple[Table, int, int]] = {}  # name -> table, rows, line number of its header
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                self.header = self._header(f.readline())
                self._scan(f)
        except (OSError, EOFError, ValueError) as exc:
            raise TransferError(f"{path}: not a complete dump: {type(exc).__name__}: {exc}") from exc

    def _header(self, line: str) -> dict[str, Any]:
        header = json.loads(line) if line else {}
        if header.get("format") != FORMAT:
            raise ValueError(f"the first line is not a {FORMAT} header")
        if header.get("version") != VERSION:
            raise ValueError(f"dump format version {header.get('version')}; this central reads version {VERSION}")
        return header

    def _scan(self, f: IO[str]) -> None:
        number, skip, end = 1, 0, None
        for line in f:
            number += 1
            if skip:
                skip -= 1
                continue
            record = json.loads(line)
            if "end" in record:
                end = record["end"]
                break
            table = Table(record["table"], tuple(record["columns"]), record.get("identity"))
            self._index[table.name] = (table, int(record["rows"]), number)
            skip = int(record["rows"])
        if end is None or skip:
            raise ValueError("it ends before its last table's rows and its end line")
        counted = {name: rows for name, (_, rows, _) in self._index.items()}
        if end != counted:
            raise ValueError(f"its end line counts {end}, its tables hold {counted}")

    def versions(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.header["schema"].items()}

    def tables(self) -> list[Table]:
        return [table for table, _, _ in self._index.values()]

    def count(self, table: Table) -> int:
        return self._index[table.name][1]

    def rows(self, table: Table) -> Iterator[Sequence[Any]]:
        _, count, header_line = self._index[table.name]
        with gzip.open(self.path, "rt", encoding="utf-8") as f:
            for _ in range(header_line):
                f.readline()
            for _ in range(count):
                yield [_decode(v) for v in json.loads(f.readline())]

    def close(self) -> None:
        pass


class DumpWriter:
    """A new dump file: refused when one is there (unless replacing), complete only at ``commit()``."""

    def __init__(self, path: Path, versions: dict[str, int], source: str) -> None:
        self.description = str(path)
        self.path = path
        self._versions = versions
        self._source = source
        self._partial = path.with_name(f".{path.name}.partial")
        self._file: IO[str] | None = None
        self._written: dict[str, int] = {}
        self._tables: dict[str, Table] = {}

    def tables(self) -> dict[str, Table]:
        return self._tables  # takes whatever the source has: a dump has no schema of its own

    def counts(self) -> dict[str, int]:
        if not self.path.exists():
            return {}
        return {t.name: DumpReader(self.path).count(t) for t in DumpReader(self.path).tables()}

    def begin(self) -> None:
        self._file = gzip.open(self._partial, "wt", encoding="utf-8", compresslevel=6)  # noqa: SIM115 - closed at commit/close
        header = {"format": FORMAT, "version": VERSION, "schema": self._versions, "source": self._source}
        self._line({**header, "made_at": time.time()})

    def _line(self, record: Any) -> None:
        assert self._file is not None
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")

    def clear(self, table: Table) -> None:
        """Nothing: a dump is written whole or not at all."""

    def write(self, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]], count: int) -> None:
        """The table's header line, then its ``count`` rows."""
        self._tables[table.name] = table
        self._line({"table": table.name, "columns": list(columns), "identity": table.identity, "rows": count})
        n = 0
        for row in rows:
            self._line([_encode(v) for v in row])
            n += 1
        if n != count:
            raise TransferError(f"table {table.name}: {n} rows read, {count} counted: the source changed")
        self._written[table.name] = n

    def commit(self) -> None:
        assert self._file is not None
        self._line({"end": self._written})
        self._file.close()
        self._file = None
        fsync_path(self._partial)  # "export done" must survive a power cut: the source may be retired next
        os.replace(self._partial, self.path)
        fsync_path(self.path.parent)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._partial.unlink(missing_ok=True)
