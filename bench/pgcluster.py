"""A throwaway PostgreSQL cluster for the tests and the benchmarks: initdb in a temporary directory, served on a
Unix socket only, removed at ``stop()``.

Debian's ``postgresql`` package puts its programs in /usr/lib/postgresql/VERSION/bin. initdb refuses to run as
root, so as root the cluster belongs to the ``postgres`` user (runuser). ``ThrowawayCluster.start()`` raises
``ClusterUnavailable`` saying why when it cannot run (no binaries, no postgres user); callers skip on that.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg


class ClusterUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why."""


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise ClusterUnavailable("no PostgreSQL server here (Debian: apt-get install postgresql)")
    return Path(found[-1]).parent


class ThrowawayCluster:
    """One cluster; ``url(dbname)`` for psycopg, ``create_database()`` for a fresh database."""

    def __init__(self, *, settings: dict[str, str] | None = None, port: int = 5432, parent: Path | None = None) -> None:
        self.settings = {"fsync": "off", "full_page_writes": "off", "max_connections": "400", **(settings or {})}
        self.port = port
        self.parent = parent  # the folder the cluster's own is made in (a small disk); the system's temp otherwise
        self.dir: Path | None = None
        self._made = 0

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)

    def start(self) -> ThrowawayCluster:
        bin_dir = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="changbai-pg-", dir=self.parent))
        if os.geteuid() == 0:
            try:
                shutil.chown(self.dir, "postgres", "postgres")
            except LookupError:
                raise ClusterUnavailable("running as root and there is no postgres user to run the cluster") from None
        data = self.dir / "data"
        made = self._run(
            str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        if made.returncode != 0:
            raise ClusterUnavailable(f"initdb failed: {made.stderr.strip()[-500:]}")
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str, *flags: str) -> None:
        """``pg_ctl start`` or ``restart`` with the cluster's options (its log to a file: a pipe would be held open
        by the server and the call would never return)."""
        assert self.dir is not None, "the cluster is not started"
        options = f"-k {self.dir} -p {self.port} -c listen_addresses=''"
        options += "".join(f" -c {k}={v}" for k, v in self.settings.items())
        log = self.dir / "log"
        done = self._run(
            str(_bin_dir() / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options, "-l", str(log), *flags, "-w", action
        )  # fmt: skip
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise ClusterUnavailable(f"pg_ctl {action} failed: {done.stderr.strip()[-300:]} {tail}")

    def halt(self) -> None:
        """The server stopped (a fast shutdown: every client's connection ended), its data kept: ``resume()``."""
        assert self.dir is not None, "the cluster is not started"
        self._run(str(_bin_dir() / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """A fast restart (every client's connection is ended), as an upgrade or a config change does."""
        self._pg_ctl("restart", "-m", "fast")

    def pid(self) -> int:
        """The postmaster's process id (its children are the cluster's other processes)."""
        assert self.dir is not None, "the cluster is not started"
        return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.dir}&port={self.port}"

    def create_database(self, prefix: str = "central") -> str:
        """A new empty database; returns its URL."""
        self._made += 1
        name = f"{prefix}_{os.getpid()}_{self._made}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.dir is None:
            return
        self._run(str(_bin_dir() / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
