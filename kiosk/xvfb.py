"""A private Xvfb display for snapshots and tests when there is no screen: start on a free display, stop after."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from types import TracebackType


class XvfbError(RuntimeError):
    """Xvfb is missing or did not come up."""


class Xvfb:
    """``with Xvfb(1280, 800) as display:`` -> ':N'; Xvfb picks the free display itself (-displayfd)."""

    def __init__(self, width: int = 1280, height: int = 800, depth: int = 24, timeout_s: float = 10.0) -> None:
        self.size = f"{width}x{height}x{depth}"
        self.timeout_s = timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.display: str | None = None

    def start(self) -> str:
        exe = shutil.which("Xvfb")
        if exe is None:
            raise XvfbError("Xvfb not installed (apt install xvfb)")
        read_fd, write_fd = os.pipe()
        try:
            self.process = subprocess.Popen(
                [exe, "-displayfd", str(write_fd), "-screen", "0", self.size, "-nolisten", "tcp", "-noreset"],
                pass_fds=(write_fd,),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            os.close(write_fd)
            write_fd = -1
            number = self._read_display(read_fd)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        self.display = f":{number}"
        return self.display

    def _read_display(self, fd: int) -> str:
        deadline = time.monotonic() + self.timeout_s
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.process is None or self.process.poll() is not None:
                self.stop()
                raise XvfbError("Xvfb did not report a display in time")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 64)
                if not chunk:
                    self.stop()
                    raise XvfbError("Xvfb exited before reporting a display")
                data += chunk
        return data.decode().strip()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None

    def env(self) -> dict[str, str]:
        """os.environ with DISPLAY pointing at this Xvfb."""
        if self.display is None:
            raise XvfbError("Xvfb not started")
        return {**os.environ, "DISPLAY": self.display}

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
