"""The updater's calls to the central: ask for a release, download its files (resuming a cut download with an
HTTP Range request), report how the update went. Uses the node's own token and TLS settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from common.config import NodeConfig
from updates.manifest import FileEntry, HashMismatch, ReleaseError, check_file

log = logging.getLogger(__name__)

API = "/api/v1"
ATTEMPTS = 6
READ_CHUNK = 64 * 1024


class CentralUnavailable(ReleaseError):
    """The central could not be asked (network, TLS, 5xx, token refused); nothing was changed."""


class CentralClient:
    """HTTP to the central for one node."""

    def __init__(self, config: NodeConfig, session: requests.Session | None = None) -> None:
        self.base = config.central.url.rstrip("/")
        self.token_file = config.central.token_file
        self.timeout = (config.central.connect_timeout_s, config.central.read_timeout_s)
        self.session = session or requests.Session()
        self.session.trust_env = False  # no proxy or .netrc replacing our Authorization header
        self.session.verify = str(config.central.ca_bundle) if config.central.ca_bundle else True

    def _headers(self) -> dict[str, str]:
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CentralUnavailable(f"token file {self.token_file}: {exc.strerror} (provision register)") from None
        return {"Authorization": f"Bearer {token}"}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.session.request(
                method, self.base + path, headers=self._headers(), timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise CentralUnavailable(f"central unreachable: {type(exc).__name__}: {str(exc)[:200]}") from None
        if answer.status_code != 200:
            raise CentralUnavailable(f"central answered HTTP {answer.status_code} to {path}: {answer.text[:200]}")
        try:
            return answer.json()
        except ValueError:
            raise CentralUnavailable(f"central's answer to {path} is not JSON") from None

    def check(self, channel: str, target: str, version: str, force: bool = False) -> dict[str, Any]:
        """The central's answer: ``{"update": {...} | None, "reason": ...}``."""
        params = {"channel": channel, "target": target, "version": version, "force": "true" if force else "false"}
        return self._call("GET", f"{API}/updates/check", params=params)

    def report(self, outcome: dict[str, Any]) -> None:
        body = {k: outcome.get(k) for k in ("rollout", "version", "state", "reason")}
        body["from_version"] = outcome.get("from_version") or ""
        body["reason"] = (body["reason"] or "")[:2000]
        self._call("POST", f"{API}/updates/report", json=body)

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
            cut = False
            if have < entry.size:
                try:
                    self._fetch(url, part, have)
                except requests.RequestException as exc:
                    cut = True
                    log.warning("download of %s cut at attempt %d: %s", entry.name, attempt, type(exc).__name__)
            got = part.stat().st_size if part.exists() else 0
            if got == entry.size or (got == have and not cut):
                break  # complete, or the server has no byte more: the hash check below decides
            if progress:
                progress(f"{entry.name}: {got:,} of {entry.size:,} bytes; resuming (attempt {attempt})")
        try:
            check_file(part, entry)
        except HashMismatch:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)

    def _fetch(self, url: str, part: Path, have: int) -> None:
        """GET from byte ``have`` on (a Range request) and append to ``part``."""
        headers = self._headers()
        if have:
            headers["Range"] = f"bytes={have}-"
        with self.session.get(url, headers=headers, timeout=self.timeout, stream=True) as answer:
            if answer.status_code == 416:
                return  # nothing after ``have``: the server's file is shorter than the manifest says
            if answer.status_code == 200 and have:
                have = 0  # the server ignored the range: start again
            elif answer.status_code not in (200, 206):
                raise CentralUnavailable(f"central answered HTTP {answer.status_code} for {url}")
            with open(part, "r+b" if have else "wb") as out:
                out.seek(have)
                out.truncate()
                for chunk in answer.iter_content(READ_CHUNK):  # small: a cut keeps what arrived
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
