"""Load for ``bench_central_scale``: many simulated nodes uploading at once, and an operator page refreshing,
against a central in another process, over loopback HTTP/1.1 with kept-alive connections.

Each simulated node behaves as ``common.sync`` does where it matters here: it keeps a batch until the central
acknowledges it, sends the same batch again after a 503 (waiting the Retry-After) or a timeout (15 s, the
node's read timeout) or a dropped connection, and numbers its events without gaps. Asyncio with raw HTTP/1.1
keeps the load generator cheap (a thousand nodes in one process), so the central gets the cores.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

READ_TIMEOUT_S = 15.0
DRAIN_S = 60.0  # after a run, how long a node goes on sending the batch it holds
PAGE_EVERY_S = 5.0  # the operator page's refresh period


def event_id(node: int, seq: int) -> str:
    """A UUID text unique per (node, seq): cheap to make, and a resend carries the same ids."""
    return f"{node:08x}-0000-4000-8000-{seq:012x}"


def reading_event(node_id: str, node: int, seq: int, wall: float) -> str:
    """A meter node's reading (``meter_reading``, as meter_node sends them) as wire JSON: what most of a district's
    traffic is, and what the central stores in its narrow ``readings`` table."""
    return (
        f'{{"id":"{event_id(node, seq)}","node_id":"{node_id}","kind":"meter_reading","severity":"info",'
        f'"state":"observed","priority":"reading","wall_time":{wall:.3f},"clock_synced":true,"payload":{{'
        f'"meter_id":"m{node}","resident":"r{node}","total_litres":{seq * 0.75:.2f},"raw_litres":{seq * 0.75:.2f},'
        f'"read_wall":{wall:.3f}}},"alert_id":null,"recipients":[],"seq":{seq}}}'
    )


@dataclass
class LoadResult:
    """What one run measured: acknowledged events, every answer's time, refusals, errors, the page's times."""

    seconds: float = 0.0  # the timed run; the nodes' last batches are answered after it (``drain_s``)
    drain_s: float = 0.0  # from the run's end until every node's held batch was answered: not in the rate
    acked: int = 0
    latencies: list[float] = field(default_factory=list)  # every answered POST (200 and 503), seconds
    ok_latencies: list[float] = field(default_factory=list)  # the 200s only
    refused: int = 0  # 503 overloaded
    timeouts: int = 0
    drained: int = 0  # events acknowledged after the run's end (the batch each node still held), not timed
    unacknowledged: int = 0  # nodes still holding a batch DRAIN_S after the end
    errors: dict[str, int] = field(default_factory=dict)
    refreshes: list[float] = field(default_factory=list)  # seconds per operator refresh

    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    def add(self, other: LoadResult) -> None:
        """Count ``other`` (a later run of the same kind) in with this one."""
        for name in ("seconds", "drain_s", "acked", "refused", "timeouts", "drained", "unacknowledged"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("latencies", "ok_latencies", "refreshes"):
            getattr(self, name).extend(getattr(other, name))
        for error, count in other.errors.items():
            self.errors[error] = self.errors.get(error, 0) + count

    @staticmethod
    def pct(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Connection:
    """One kept-alive HTTP/1.1 connection; reopened when the central closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: str, body: bytes = b"") -> tuple[int, dict, bytes]:
        """One request; on a kept-alive connection the central closed meanwhile (its idle timeout), once more on
        a new one, as a browser or requests does."""
        reused = self._writer is not None
        try:
            return await self._request(method, path, headers, body)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            return await self._request(method, path, headers, body)

    async def _request(self, method: str, path: str, headers: str, body: bytes) -> tuple[int, dict, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self._reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
        self._writer.write(head.encode() + body)
        try:
            raw = await self._reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            found = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            answer = await self._reader.readexactly(int(found.get("content-length", "0")))
        except BaseException:
            self.close()
            raise
        if found.get("connection", "").lower() == "close":
            self.close()
        return int(lines[0].split()[1]), found, answer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass
class SimNode:
    index: int
    node_id: str
    token: str
    next_seq: int  # the first seq not yet acknowledged


async def _node_loop(port: int, node: SimNode, batch: int, until: float, result: LoadResult) -> None:
    """Upload until ``until``; a batch still unacknowledged then is sent on (up to DRAIN_S more, as the node
    would) so that the central's books can be checked exactly; those late acknowledgements are not timed."""
    conn = Connection(port)
    headers = f"Authorization: Bearer {node.token}\r\nContent-Type: application/json\r\n"
    pending: bytes | None = None
    stop = until + DRAIN_S
    try:
        while (now := time.monotonic()) < until or (pending is not None and now < stop):
            timed = now < until
            end = until if timed else stop
            if pending is None:
                wall = time.time()
                events = ",".join(
                    reading_event(node.node_id, node.index, node.next_seq + i, wall) for i in range(batch)
                )
                pending = f'{{"node_wall_time":{wall:.3f},"events":[{events}]}}'.encode()
            try:
                status, found, answer = await asyncio.wait_for(
                    conn.request("POST", "/api/v1/events", headers, pending), READ_TIMEOUT_S
                )
            except TimeoutError:
                result.timeouts += 1
                continue  # the same batch again, as a node does
            except (OSError, asyncio.IncompleteReadError) as exc:
                result.error(type(exc).__name__)
                await asyncio.sleep(max(0.0, min(1.0, end - time.monotonic())))
                continue
            took = time.monotonic() - now
            if timed:
                result.latencies.append(took)
            if status == 200:
                taken = len(json.loads(answer)["accepted"])
                if taken != batch:
                    result.error(f"200 with {taken} of {batch} accepted")
                if timed:
                    result.ok_latencies.append(took)
                    result.acked += taken
                else:
                    result.drained += taken
                node.next_seq += batch
                pending = None
            elif status == 503:
                result.refused += timed
                wait = float(found.get("retry-after", "5"))
                await asyncio.sleep(max(0.0, min(wait, end - time.monotonic())))
            else:
                result.error(f"HTTP {status}")
                await asyncio.sleep(max(0.0, min(1.0, end - time.monotonic())))
        if pending is not None:
            result.unacknowledged += 1
    finally:
        conn.close()


PAGE_READS = ("/api/v1/summary", "/api/v1/alerts?state=active&limit=50", "/api/v1/nodes?limit=50")


class OperatorPage:
    """The console's refresh: summary, the first page of active alerts and of nodes, and the change feed since
    its cursor, one after the other; each refresh's time is recorded."""

    def __init__(self, port: int, key: str, result: LoadResult) -> None:
        self.conn = Connection(port)
        self.headers = f"Authorization: Bearer {key}\r\n"
        self.cursor = 0
        self.result = result

    async def refresh(self) -> None:
        start = time.monotonic()
        statuses = []
        for path in (*PAGE_READS, f"/api/v1/changes?after={self.cursor}&limit=500"):
            status, _, answer = await self.conn.request("GET", path, self.headers)
            statuses.append(status)
            if path.startswith("/api/v1/changes") and status == 200:
                self.cursor = json.loads(answer)["next_after"]
        if set(statuses) == {200}:
            self.result.refreshes.append(time.monotonic() - start)
        else:
            self.result.error(f"page read answered {statuses}")

    async def keep_open(self, until: float, every_s: float = PAGE_EVERY_S) -> None:
        """Refresh every ``every_s`` until ``until``, the first half a period in (or half the run): a run starts
        with its thousand nodes connecting at once, which an operator does not meet twice in ten seconds. With the
        page open in two slices of 10 s, refreshes at 0 and 5 s put half of them in those starts: the first run
        so measured medians of 152-216 ms at batch 200, against 53-102 ms when one refresh in four met a start."""
        try:
            await asyncio.sleep(max(0.0, min(every_s, until - time.monotonic()) / 2))
            while time.monotonic() < until:
                start = time.monotonic()
                await self.refresh()
                await asyncio.sleep(max(0.0, min(every_s - (time.monotonic() - start), until - time.monotonic())))
        finally:
            self.conn.close()


async def _page_process(port: int, key: str, seconds: float, result: LoadResult) -> None:
    """The operator page in a process of its own, as a person's browser is: a page in this event loop would
    time the thousand nodes' scheduling as much as the central (its refreshes came out 30-200 ms slower)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.central_load", "--page", str(port), key, str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await child.communicate()
    page = json.loads(out or b"{}")
    if child.returncode != 0 or "refreshes" not in page:
        result.error(f"operator page process exited {child.returncode}")
        return
    result.refreshes += page["refreshes"]
    for error, count in page["errors"].items():
        result.errors[error] = result.errors.get(error, 0) + count


async def _run(
    port: int, nodes: list[SimNode], batch: int, seconds: float, page_key: str | None, at_end: Callable[[], object]
) -> LoadResult:
    result = LoadResult(seconds=seconds)
    loop = asyncio.get_running_loop()
    until = time.monotonic() + seconds
    loop.call_later(seconds, at_end)
    tasks = [_node_loop(port, node, batch, until, result) for node in nodes]
    if page_key:
        tasks.append(_page_process(port, page_key, seconds, result))
    await asyncio.gather(*tasks)
    result.drain_s = max(0.0, time.monotonic() - until)
    return result


def drive(
    port: int,
    nodes: list[SimNode],
    batch: int,
    seconds: float,
    page_key: str | None = None,
    at_end: Callable[[], object] = lambda: None,
) -> LoadResult:
    """``nodes`` upload batches of ``batch`` for ``seconds`` (their ``next_seq`` moves on), with the operator
    page open when ``page_key`` is given; ``at_end`` is called when the timed run ends. The rate counts the events
    acknowledged within ``seconds`` over ``seconds``: the batches the nodes still hold then are sent on and
    answered after it, untimed (``drained``, ``drain_s``). Until 2026-12-06 the rate's time included that drain:
    16.6 s after a run of 15 s at 1,000 nodes and batches of 200, so the rate came out at less than half."""
    return asyncio.run(_run(port, nodes, batch, seconds, page_key, at_end))


def refresh_alone(port: int, key: str, times: int) -> list[float]:
    """The operator refresh with nothing else going on, ``times`` times back to back (the first one warms up)."""
    result = LoadResult()

    async def refreshes() -> None:
        page = OperatorPage(port, key, result)
        try:
            for _ in range(times):
                await page.refresh()
        finally:
            page.conn.close()

    asyncio.run(refreshes())
    return result.refreshes


def median_ms(values: list[float]) -> float:
    return round(1000 * statistics.median(values), 1) if values else float("nan")


def _page_main(port: int, key: str, seconds: float) -> None:
    """``python -m bench.central_load --page PORT KEY SECONDS``: keep the page open, print its refreshes as JSON."""
    result = LoadResult()
    asyncio.run(OperatorPage(port, key, result).keep_open(time.monotonic() + seconds))
    print(json.dumps({"refreshes": result.refreshes, "errors": result.errors}))


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "--page":
        sys.exit("usage: python -m bench.central_load --page PORT OPERATOR_KEY SECONDS")
    _page_main(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
