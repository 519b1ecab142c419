"""The ceiling of the central's stack for ``bench_central_scale``: a bare ASGI app on the same uvicorn (HTTP/1.1
with h11, as ``central serve``) that does only what no ingest can skip, driven by the same simulated nodes.

``python -m bench.bare_ingest PORT WORKERS [COPY_URL [group]]``: ``POST /api/v1/events`` reads the body, parses
the JSON, and answers every event id as accepted; with ``COPY_URL``, it first COPYs the batch's readings into the
central's ``readings`` table (the one the central stores them in, its indexes and partitions) and commits, so an
answer means stored; with ``group``, one writer thread per process COPYs every batch waiting for it in one
transaction (group commit: a batch's answer waits for its group's commit). No token, no checks, no idempotency,
no sequence books, no alerts, no change feed: what is left is the HTTP server, the JSON and the durable write
that every upload needs before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import anyio
import uvicorn

COLUMNS = (
    "row, id, meter, seq, time, wall_time, node_wall_time, received_at, total_litres, raw_litres, read_wall, flags,"
    " rest"
)
COPY_URL = "BARE_INGEST_COPY_URL"  # the environment's, so that uvicorn's worker processes see them too
GROUP = "BARE_INGEST_GROUP"
_copy_url = os.environ.get(COPY_URL)
_group = os.environ.get(GROUP) == "1"
_waiting: queue.Queue[tuple[list[dict[str, Any]], float, asyncio.AbstractEventLoop, asyncio.Future[None]]]
_waiting = queue.Queue()  # group commit: the batches waiting for the writer
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


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _group_writer(url: str) -> None:
    """Group commit: take every batch waiting, COPY them all in one transaction, then answer each."""
    import psycopg

    with psycopg.connect(url) as conn:
        while True:
            group = [_waiting.get()]
            while not _waiting.empty():
                group.append(_waiting.get_nowait())
            now = time.time()
            error: BaseException | None = None
            try:
                with conn.transaction():
                    copy_rows(
                        conn, [reading_row(ev, next(_rows), wall, now) for evs, wall, _, _ in group for ev in evs]
                    )
            except psycopg.Error as exc:
                error = exc
            for _, _, loop, future in group:
                loop.call_soon_threadsafe(_settle, future, error)


async def _store(url: str, batch: dict[str, Any]) -> None:
    if not _group:
        await anyio.to_thread.run_sync(_copy, url, batch["events"], batch["node_wall_time"])
        return
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    _waiting.put((batch["events"], batch["node_wall_time"], loop, future))
    await future


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
        if _copy_url and _group:
            threading.Thread(target=_group_writer, args=(_copy_url,), daemon=True).start()
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = await _body(receive)
    answer = b"{}"
    if scope["method"] == "POST":
        batch = json.loads(body)
        if _copy_url:
            await _store(_copy_url, batch)
        answer = json.dumps({"accepted": [ev["id"] for ev in batch["events"]], "rejected": []}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3, 4) or argv[3:] not in ([], ["group"]):
        sys.exit("usage: python -m bench.bare_ingest PORT WORKERS [COPY_URL [group]]")
    if len(argv) >= 3:
        os.environ[COPY_URL] = argv[2]
    os.environ[GROUP] = "1" if argv[3:] == ["group"] else "0"
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
