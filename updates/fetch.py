"""The updater's calls to the central: ask for a release, download its files (resuming a cut download with an
HTTP Range request), report how the update went. Uses the node's own token and TLS settings, through the one HTTP
client (common/http.py)."""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import urllib3

from common.config import NodeConfig
from common.contract import API_PREFIX
from common.http import HttpClient, HttpFailure
from common.reply import our_error
from updates.manifest import FileEntry, HashMismatch, ReleaseError, check_file

log = logging.getLogger(__name__)

API = API_PREFIX
ATTEMPTS = 6
READ_CHUNK = 64 * 1024
# an attempt whose average rate stays below this after [central] read_timeout_s is cut and resumed: a trickle
# (a throttling proxy, a dying link) must not hold the updater's lock for hours; 6 such attempts end the run
MIN_RATE_BPS = 512
OFFER_FIELDS = ("version", "manifest", "signature", "files_url")


class CentralUnavailable(ReleaseError):
    """The central could not be asked (network, TLS, 5xx, token refused); nothing was changed."""


class ReportRefused(ReleaseError):
    """Our central refused an update report as invalid (422 in its typed body): sending it again cannot help."""


class DownloadStalled(CentralUnavailable):
    """A download made no progress worth having (too slow, or a proxy's page instead of the file); what
    arrived is kept and resumed by the next run."""


class CentralClient:
    """HTTP to the central for one node."""

    def __init__(self, config: NodeConfig) -> None:
        self.base = config.central.url.rstrip("/")
        self.token_file = config.central.token_file
        self.http = HttpClient.for_central(config.central)
        self.grace_s = config.central.read_timeout_s  # a download's first seconds, before its rate counts

    def _headers(self) -> dict[str, str]:
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CentralUnavailable(f"token file {self.token_file}: {exc.strerror} (provision register)") from None
        return {"Authorization": f"Bearer {token}"}

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            answer = self.http.request_json(method, self.base + path, body, headers=self._headers())
        except HttpFailure as exc:
            raise CentralUnavailable(f"central unreachable: {exc.text}") from None
        refusal = our_error(answer) if answer.status == 422 else None
        if refusal is not None and method == "POST":
            raise ReportRefused(f"central refused {path}: {refusal.message}")
        if answer.status != 200:
            text = answer.body[:200].decode("utf-8", "replace")
            raise CentralUnavailable(f"central answered HTTP {answer.status} to {path}: {text}")
        try:
            return answer.json()
        except ValueError:
            raise CentralUnavailable(f"central's answer to {path} is not JSON") from None

    def check(self, channel: str, target: str, version: str, force: bool = False) -> dict[str, Any]:
        """The central's answer: ``{"update": {...} | None, "reason": ...}``."""
        params = {"channel": channel, "target": target, "version": version, "force": "true" if force else "false"}
        answer = self._call("GET", f"{API}/updates/check?{urllib.parse.urlencode(params)}")
        offer = answer.get("update") if isinstance(answer, dict) else "no object"
        if offer is not None and not (
            isinstance(offer, dict) and all(isinstance(offer.get(k), str) for k in OFFER_FIELDS)
        ):
            raise CentralUnavailable(f"the central's answer to the update check is not an offer: {str(answer)[:200]}")
        return answer

    def report(self, outcome: dict[str, Any]) -> None:
        body = {k: outcome.get(k) for k in ("rollout", "version", "state", "reason")}
        body["from_version"] = outcome.get("from_version") or ""
        body["reason"] = (body["reason"] or "")[:2000]
        self._call("POST", f"{API}/updates/report", body)

    def download(
        self, files_url: str, entry: FileEntry, dest: Path, progress: Callable[[str], None] | None = None
    ) -> None:
        """Fetch one file into ``dest`` (resuming ``dest.part`` left by an earlier cut) and check its hash.

        A short answer is resumed with a Range request, up to ATTEMPTS times; a file whose bytes do not match
        the manifest is deleted and refused with HashMismatch (it is never installed).
        """
        if dest.is_file():
            try:
                check_file(dest, entry)
                return
            except HashMismatch:
                dest.unlink()
        part = dest.with_name(dest.name + ".part")
        url = self.base + files_url + entry.name
        for attempt in range(1, ATTEMPTS + 1):
            have = part.stat().st_size if part.exists() else 0
            if have > entry.size:
                part.unlink()
                have = 0
            cut = ""
            if have < entry.size:
                try:
                    self._fetch(url, part, have, entry.size)
                except (HttpFailure, requests.RequestException, urllib3.exceptions.HTTPError, DownloadStalled) as exc:
                    cut = str(exc) if isinstance(exc, DownloadStalled) else _name(exc)
                    log.warning("download of %s cut at attempt %d: %s", entry.name, attempt, cut)
            got = part.stat().st_size if part.exists() else 0
            if got >= entry.size or (got == have and not cut):
                break  # complete, or the server has no byte more: the hash check below decides
            if attempt == ATTEMPTS and cut:
                raise DownloadStalled(
                    f"download of {entry.name} gave up after {ATTEMPTS} attempts ({got:,} of "
                    f"{entry.size:,} bytes kept for the next run): {cut}"
                )
            if progress:
                progress(f"{entry.name}: {got:,} of {entry.size:,} bytes; resuming (attempt {attempt})")
        try:
            check_file(part, entry)
        except HashMismatch:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)

    def _fetch(self, url: str, part: Path, have: int, size: int) -> None:
        """GET from byte ``have`` on (a Range request) and append to ``part``, never past ``size`` bytes (a
        server or proxy that sends more cannot fill the disk). DownloadStalled when the answer is an HTML page
        or comes slower than MIN_RATE_BPS; what arrived before is kept."""
        headers = self._headers()
        if have:
            headers["Range"] = f"bytes={have}-"
        with self.http.stream(url, headers) as answer:
            if answer.status_code == 416:
                return  # nothing after ``have``: the server's file is shorter than the manifest says
            if answer.headers.get("Content-Type", "").lower().startswith("text/html"):
                raise DownloadStalled(
                    f"an HTML page (HTTP {answer.status_code}) instead of the file: a proxy or a captive portal?"
                )
            if answer.status_code == 200 and have:
                have = 0  # the server ignored the range: start again
            elif answer.status_code not in (200, 206):
                raise CentralUnavailable(f"central answered HTTP {answer.status_code} for {url}")
            with open(part, "r+b" if have else "wb") as out:
                out.seek(have)
                out.truncate()
                try:
                    self._copy(answer, out, size - have)
                finally:
                    out.flush()
                    os.fsync(out.fileno())

    def _copy(self, answer: requests.Response, out: Any, room: int) -> None:
        """Write the answer's body to ``out``: at most ``room`` bytes (then one more, so an oversized file
        fails its size check), in small chunks so a cut keeps what arrived, at MIN_RATE_BPS or faster."""
        started, got, grace = time.monotonic(), 0, self.grace_s
        raw = answer.raw
        # read1: what has arrived (one socket read), so a trickle is measured while it trickles
        chunks = iter(lambda: raw.read1(READ_CHUNK), b"") if hasattr(raw, "read1") else answer.iter_content(1024)
        for chunk in chunks:
            chunk = chunk[: room + 1 - got]
            out.write(chunk)
            got += len(chunk)
            if got > room:
                return
            elapsed = time.monotonic() - started
            if elapsed > grace and got < MIN_RATE_BPS * elapsed:
                raise DownloadStalled(f"{got:,} bytes in {elapsed:.0f} s, slower than {MIN_RATE_BPS} bytes/s")


def _name(exc: Exception) -> str:
    """What cut a download, in a word (``ReadTimeout``, ``ConnectionError``, ``ProtocolError``)."""
    return exc.name if isinstance(exc, HttpFailure) else type(exc).__name__
