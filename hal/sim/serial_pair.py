"""A virtual serial cable: two linked pseudo-terminals made by socat, one end for the node, one for the meters.

Bytes written on one end come out of the other, like the two ends of an RS-485 line (without its timing).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import typing
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

SOCAT_PACKAGE = "socat"  # the Debian package that provides /usr/bin/socat


class SerialPairError(RuntimeError):
    """The virtual serial pair could not be made (socat missing or failing)."""


class SerialPair:
    """A socat pty pair: ``with SerialPair() as (node_path, meter_path): ...``.

    Both paths are symlinks to /dev/pts/N devices in a private temporary directory; they exist from
    ``start()`` until ``stop()``. Either side may be opened, closed and opened again while the pair runs.
    """

    def __init__(self, directory: Path | None = None, start_timeout_s: float = 5.0) -> None:
        self._own_dir = directory is None
        self._dir = Path(tempfile.mkdtemp(prefix="changbai-serial-")) if directory is None else directory
        self.node_path = str(self._dir / "node")
        self.meter_path = str(self._dir / "meter")
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: typing.IO[bytes] | None = None

    def start(self) -> tuple[str, str]:
        """Start socat and wait until both ends exist; returns (node_path, meter_path)."""
        if self._proc is not None:
            return self.node_path, self.meter_path
        exe = shutil.which("socat")
        if exe is None:
            raise SerialPairError(
                f"socat not found on PATH: the virtual serial pair needs it (apt-get install {SOCAT_PACKAGE})"
            )
        self._dir.mkdir(parents=True, exist_ok=True)
        for path in (self.node_path, self.meter_path):
            if os.path.lexists(path):
                os.unlink(path)
        # ignoreeof keeps each pty usable when its user closes and reopens it (a node restart, a re-probe)
        side = "pty,raw,echo=0,ignoreeof,link={}"
        # socat's messages go to a file: a pipe nobody reads could fill up and stall socat mid-test
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as socat; closed in stop()
        self._proc = subprocess.Popen(
            [exe, side.format(self.node_path), side.format(self.meter_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + self._start_timeout_s
        while not (os.path.exists(self.node_path) and os.path.exists(self.meter_path)):
            if self._proc.poll() is not None:
                err = self._socat_messages()
                self.stop()
                raise SerialPairError(f"socat exited at start: {err or 'no message'}")
            if time.monotonic() > deadline:
                self.stop()
                raise SerialPairError(f"socat did not create {self.node_path} and {self.meter_path} in time")
            time.sleep(0.005)
        log.debug("serial pair up: node %s <-> meter %s", self.node_path, self.meter_path)
        return self.node_path, self.meter_path

    def stop(self) -> None:
        """Stop socat and remove the links; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                log.warning("socat (pid %d) ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait(timeout=3)
        if self._log is not None:
            self._log.close()
            self._log = None
        for path in (self.node_path, self.meter_path):
            if os.path.lexists(path):
                os.unlink(path)
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _socat_messages(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> tuple[str, str]:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
