"""``central migrate-db`` (issue 15): a community's central moved through a portable dump and between databases,
every table checked with the sqlite3 command-line tool (not our code), tokens, alerts, accounts and the change
feed's positions working on the new database; a non-empty target refused without --replace."""

from __future__ import annotations

import csv
import gzip
import io
import math
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from central.__main__ import main
from central.server import CentralServer
from tests.fixtures.central import SITE, wire_event

LIFT = "cbxc-b7-u2-lift1"
URGENT = {"severity": "urgent", "state": "raised", "priority": "alert", "recipients": ["maintenance"]}


def _community(central: Any) -> dict[str, Any]:
    """A small community's history through the API: nodes, readings, an acknowledged alert, a ride, a person."""
    token = central.register(LIFT, location="Building 7")
    kiosk = central.register("cbxc-gate-kiosk", "kiosk", pickup_point="East gate")
    meter = central.register("cbxc-b12-meter", "meter")
    central.post_events(token, [wire_event(LIFT, 1, kind="entrapment", alert_id="t1", **URGENT)])
    central.post_events(token, [wire_event(LIFT, n) for n in range(2, 40)])
    flows = [wire_event("cbxc-b12-meter", n, kind="flow", priority="reading", payload={"meter": "b12", "litres": n * 1.5})
             for n in range(1, 300)]  # fmt: skip
    assert central.post_events(meter, flows).status_code == 200
    (alert,) = central.alerts()
    api = f"{central.url}/api/v1"
    ack = requests.post(f"{api}/alerts/{alert['id']}/ack", json={"note": "已派人"}, headers=central.operator_headers)
    assert ack.status_code == 200
    ride = requests.post(f"{api}/rides", json={"request_id": "r1"}, headers=central.node_headers(kiosk), timeout=10)
    assert ride.status_code == 201
    sys.stdin = io.StringIO("correct horse battery staple 7\n")  # restored by pytest after the test
    assert main(["user", "add", "limin", "--db", str(central.db_path), "--role", f"duty_desk:{SITE}",
                 "--name", "李敏", "--password-stdin"]) == 0  # fmt: skip
    changes = central.get("/changes", after=0)
    return {"token": token, "alert": alert["id"], "last_pos": changes["next_after"]}


def _serves_the_community(central: Any, database: Path | str, made: dict[str, Any]) -> None:
    """A central on the moved database: the lift's old token works, the alert is still acknowledged, and the
    change feed goes on from its last position."""
    server = CentralServer(central.config, database)
    server.start()
    try:
        api, operator = f"{server.url}/api/v1", central.operator_headers
        late = requests.post(
            f"{api}/events", json={"node_wall_time": 1.0, "events": [wire_event(LIFT, 40)]},
            headers=central.node_headers(made["token"]), timeout=10,
        )  # fmt: skip
        assert late.status_code == 200 and len(late.json()["accepted"]) == 1
        alert = requests.get(f"{api}/alerts/{made['alert']}", headers=operator, timeout=10).json()
        assert alert["state"] == "acknowledged"
        resolve = requests.post(f"{api}/alerts/{made['alert']}/resolve", json={}, headers=operator, timeout=10)
        assert resolve.status_code == 200
        changes = requests.get(f"{api}/changes", params={"after": made["last_pos"]}, headers=operator).json()
        assert [c["action"] for c in changes["changes"]] == ["resolved"]  # the feed goes on after its old end
        assert changes["changes"][0]["pos"] == made["last_pos"] + 1 and not changes["reset"]
    finally:
        server.stop()


def _sqlite_dump(db: Path) -> dict[str, str]:
    """Every table's rows as the sqlite3 tool prints them (schema bookkeeping aside: its applied_at differs)."""
    names = subprocess.run(
        ["sqlite3", str(db), "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    out = {}
    for name in names:
        if name != "schema_migrations":
            query = f'SELECT * FROM "{name}" ORDER BY rowid'
            out[name] = subprocess.run(
                ["sqlite3", "-csv", str(db), query], capture_output=True, text=True, check=True
            ).stdout
    return out


def test_a_community_moves_through_a_dump_and_keeps_working(
    make_central: Any, tmp_path: Path, capsys: Any, fsynced: Any
) -> None:
    central = make_central()
    made = _community(central)
    central.stop()
    dump, moved = tmp_path / "central.jsonl.gz", tmp_path / "moved" / "central.sqlite3"
    assert main(["migrate-db", "--from", str(central.db_path), "--to", str(dump)]) == 0
    assert fsynced.covers(dump) and fsynced.covers(tmp_path)  # "done" survives a power cut
    moved.parent.mkdir()
    empty = CentralServer(central.config, moved)  # a database made by the central and never used: empty
    empty.start()
    empty.stop()
    assert main(["migrate-db", "--from", str(dump), "--to", str(moved)]) == 0
    said = capsys.readouterr().err
    assert "every count checked" in said and "events" in said

    before, after = _sqlite_dump(central.db_path), _sqlite_dump(moved)
    assert before.keys() == after.keys() and "events" in before and "changes" in before
    for name in before:
        assert before[name] == after[name], f"table {name} differs after the move"
    assert before["events"].count("\n") == 1 + 38 + 299

    _serves_the_community(central, moved, made)


def test_a_target_holding_data_is_refused_unless_replaced(make_central: Any, tmp_path: Path, capsys: Any) -> None:
    central = make_central()
    _community(central)
    central.stop()
    other = make_central()
    other.register("cbxc-other-lift")
    other.stop()
    before = _sqlite_dump(other.db_path)
    assert main(["migrate-db", "--from", str(central.db_path), "--to", str(other.db_path)]) == 1
    said = capsys.readouterr().err
    assert "already holds data" in said and "nodes (1 rows)" in said and "--replace" in said
    assert _sqlite_dump(other.db_path) == before  # nothing written
    assert main(["migrate-db", "--from", str(central.db_path), "--to", str(other.db_path), "--replace"]) == 0
    assert _sqlite_dump(other.db_path) == _sqlite_dump(central.db_path)


def test_a_cut_dump_is_refused(make_central: Any, tmp_path: Path, capsys: Any) -> None:
    central = make_central()
    _community(central)
    central.stop()
    dump = tmp_path / "central.jsonl.gz"
    assert main(["migrate-db", "--from", str(central.db_path), "--to", str(dump)]) == 0
    lines = gzip.decompress(dump.read_bytes()).splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(b"".join(lines[: len(lines) // 2])))
    assert main(["migrate-db", "--from", str(cut), "--to", str(tmp_path / "new.sqlite3")]) == 1
    assert "not a complete dump" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        (tmp_path / "new.sqlite3").stat()  # nothing made from a cut dump


def _rows_by_tool(command: list[str]) -> list[list[str]]:
    return list(csv.reader(io.StringIO(subprocess.run(command, capture_output=True, text=True, check=True).stdout)))


def _same(a: str, b: str) -> bool:
    """One field as sqlite3 and psql print it: a float to 15 digits by sqlite3, NULL as nothing in both."""
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-13)
    except ValueError:
        return False


def test_a_community_moves_to_postgresql_as_psql_sees_it(
    make_central: Any, postgres_cluster: Any, tmp_path: Path, capsys: Any
) -> None:
    central = make_central()
    made = _community(central)
    central.stop()
    url = postgres_cluster.create_database("moved")
    bundle = central.db_path.parent / "releases" / "kiosk" / "linux-aarch64" / "1.4.0" / "manifest.json"
    bundle.parent.mkdir(parents=True)
    bundle.write_text('{"version": "1.4.0"}')  # release files live beside a SQLite file, under files_dir for PG
    files_dir = tmp_path / "files"
    assert main(["migrate-db", "--from", str(central.db_path), "--to", url, "--files-dir", str(files_dir)]) == 0
    assert (
        files_dir / "releases" / "kiosk" / "linux-aarch64" / "1.4.0" / "manifest.json"
    ).read_text() == bundle.read_text()
    assert "release files: 1 files" in capsys.readouterr().err
    analysed = "SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = 'public'"  # the planner's statistics
    assert {"nodes", "events", "alerts", "changes"} <= {
        r[0] for r in _rows_by_tool(["psql", url, "--csv", "-t", "-c", analysed])
    }
    tables = [t for t in _sqlite_dump(central.db_path) if t != "meta"]
    compared: dict[str, int] = {}
    for name in tables:
        columns = [r[1] for r in sqlite3.connect(central.db_path).execute(f'PRAGMA table_info("{name}")')]
        key = columns[0]
        select = f'SELECT {", ".join(columns)} FROM "{name}" ORDER BY {key}'
        mine = _rows_by_tool(["sqlite3", "-csv", str(central.db_path), select])
        theirs = _rows_by_tool(["psql", url, "--csv", "-t", "-c", select])
        assert len(mine) == len(theirs), f"{name}: {len(mine)} rows in SQLite, {len(theirs)} in PostgreSQL"
        for a, b in zip(mine, theirs, strict=True):
            assert all(_same(x, y) for x, y in zip(a, b, strict=True)), f"{name}: {a} != {b}"
        compared[name] = len(mine)
    assert all(compared[t] for t in ("nodes", "events", "alerts", "alert_log", "rides", "changes", "console_users"))
    _serves_the_community(central, url, made)  # and the central on PostgreSQL serves the community
    # back to SQLite through a dump: the same rows as the first database held
    dump, back = tmp_path / "pg.jsonl.gz", tmp_path / "back.sqlite3"
    assert main(["migrate-db", "--from", url, "--to", str(dump)]) == 0
    assert main(["migrate-db", "--from", str(dump), "--to", str(back)]) == 0
    assert (
        len(_sqlite_dump(back)["events"].splitlines()) == len(_sqlite_dump(central.db_path)["events"].splitlines()) + 1
    )
