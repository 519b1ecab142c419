"""The ceiling of the central's stack for ``bench_central_scale``: a bare ASGI app on the same uvicorn (HTTP/1.1
with h11, as ``central serve``) that does only what no ingest can skip, driven by the same simulated nodes.

``python -m bench.bare_ingest PORT WORKERS [COPY_URL]``: ``POST /api/v1/events`` reads the body, parses the JSON,
and answers every event id as accepted; with ``COPY_URL``, it first COPYs the batch's readings into the central's
``readings`` table (the one the central stores them in, its indexes and partitions) and commits, so an answer
means stored. No
token, no checks, no idempotency, no sequence books, no alerts, no change feed: what is left is the HTTP server,
the JSON and the database's write, the part of the central's path that no code of ours can make cheaper.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import anyio
import uvicorn

COLUMNS = (
    "row, id, meter, seq, time, wall_time, node_wall_time, received_at, total_litres, raw_litres, read_wall, flags,"
    " rest"
)
COPY_URL = "BARE_INGEST_COPY_URL"  # the environment's, so that uvicorn's worker processes see it too
_copy_url = os.environ.get(COPY_URL)
_pool: Any = None
_rows = itertools.count(10**15 + os.getpid() * 10**9)  # positions of their own, apart from the central's


def reading_row(ev: dict[str, Any], row: int, node_wall_time: float, now: float) -> tuple:
    """A ``meter_reading`` wire event as a row of the central's ``readings`` table (meter key 0: no meter)."""
    payload = ev["payload"]
    return (
        row, ev["id"], 0, ev["seq"], ev["wall_time"], ev["wall_time"], node_wall_time, now, payload["total_litres"],
        payload.get("raw_litres"), payload.get("read_wall"), 1, None,
    )  # fmt: skip


def copy_rows(conn: Any, rows: Iterable[tuple]) -> None:
    """COPY these rows into the central's ``readings`` table on this connection (committed by the caller)."""
    with conn.cursor().copy(f"COPY readings ({COLUMNS}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _copy(url: str, events: list[dict[str, Any]], node_wall_time: float) -> None:
    global _pool
    if _pool is None:
        import psycopg_pool

        _pool = psycopg_pool.ConnectionPool(url, min_size=1, max_size=4, open=True)
    now = time.time()
    with _pool.connection() as conn:  # committed when the block ends
        copy_rows(conn, [reading_row(ev, next(_rows), node_wall_time, now) for ev in events])


async def _body(receive: Any) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The whole ASGI app: ``GET`` anything answers ``{}`` (the bench's health check), ``POST`` a batch."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = await _body(receive)
    answer = b"{}"
    if scope["method"] == "POST":
        batch = json.loads(body)
        if _copy_url:
            await anyio.to_thread.run_sync(_copy, _copy_url, batch["events"], batch["node_wall_time"])
        answer = json.dumps({"accepted": [ev["id"] for ev in batch["events"]], "rejected": []}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        sys.exit("usage: python -m bench.bare_ingest PORT WORKERS [COPY_URL]")
    if len(argv) == 3:
        os.environ[COPY_URL] = argv[2]
    uvicorn.run(
        "bench.bare_ingest:app",
        port=int(argv[0]),
        workers=int(argv[1]),
        http="h11",
        backlog=2048,
        log_level="error",
        access_log=False,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
