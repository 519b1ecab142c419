"""The kiosk's screen on KMS/DRM, as on a Raspberry Pi without a desktop: a Debian 12 guest (its own kernel,
bench/vm.py) with qemu's standard VGA (the kernel's bochs DRM driver, Mesa's software renderer through GBM and EGL)
runs the installed ``kiosk run`` with the environment of its systemd unit (``SDL_VIDEODRIVER=kmsdrm``, no X, no
Wayland) and the pip-installed Kivy wheel. The host takes the guest's screen through qemu's monitor (QMP
``screendump``) and compares it with the same screen rendered here under Xvfb (``kiosk --snapshot``).

Passed when the kiosk told a stand-in for systemd's notify socket READY=1 (its screen is up), kept its screen's
watchdog pings coming, and the guest's screen matches the idle (or offline) screen: at least ``MATCH_SHARE`` of the
pixels within ``TOLERANCE`` of the reference's. The tests render the kiosk under Xvfb only.

``scripts/kiosk-kms-vm`` runs it (root, debootstrap, qemu-system-x86; about 15 minutes; not in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import vm

WIDTH, HEIGHT = 1280, 800  # the bochs display's preferred mode (full screen: the kiosk takes the display's size)
WATCHDOG_S = 30  # as the unit's WatchdogSec: the kiosk pings every 15 s
MATCH_SHARE = 0.95
TOLERANCE = 48  # per channel: the two renderers' antialiasing differs
SHIFT_PX = 12  # kiosk.theme's burn-in shift on the idle screen (1 unit each way: 8 px at 1280x800)
SHOW_S = 600  # the guest keeps the kiosk on screen at most this long after READY=1 (the host looks meanwhile)
PACKAGES: tuple[str, ...] = ("fonts-noto-cjk", "libgl1", "libegl1", "libgles2", "libgl1-mesa-dri", "libegl-mesa0")
PACKAGES += ("libgbm1", "libmtdev1", "kmod", "iproute2")
CONFIG = """[node]
id = "vm-kiosk-kms"
role = "kiosk"
site = "changbai-xincun"
data_dir = "{home}/data"

[central]
url = "http://127.0.0.1:9"
token_file = "{home}/token"

[audio]
backend = "none"

[gpio]
pin_factory = "mock"

[kiosk]
pickup_point = "长白新村北门"
hotline = "021-6543 2100"
screen = {{ width = {width}, height = {height} }}
"""


def write_config(home: Path) -> Path:
    """The kiosk's config in ``home`` (no central: the screen is what is checked)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "kiosk.toml"
    path.write_text(CONFIG.format(home=home, width=WIDTH, height=HEIGHT), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- in the guest
def guest() -> int:
    """In the guest: the DRM driver, then the kiosk as its unit runs it, with a stand-in for systemd's notify
    socket (READY=1 when the screen is up, WATCHDOG=1 from the screen's own loop); ``KMS`` lines on the console."""
    subprocess.run(["modprobe", "bochs"], check=False)
    card = Path("/dev/dri/card0")
    for _ in range(100):
        if card.exists():
            break
        time.sleep(0.2)
    print(f"KMS drm: {card} {'present' if card.exists() else 'missing'}", flush=True)
    home = Path("/node")
    config = write_config(home)
    log = home / "kiosk.log"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind("/run/kms-notify")
    env = {**os.environ, "SDL_VIDEODRIVER": "kmsdrm", "KIVY_HOME": str(home / "data" / "kivy"), "PYTHONUNBUFFERED": "1"}
    env |= {"NOTIFY_SOCKET": "/run/kms-notify", "WATCHDOG_USEC": str(WATCHDOG_S * 1_000_000)}
    started = time.monotonic()
    with open(log, "wb") as out:
        kiosk = subprocess.Popen(
            ["/opt/cb-self/bin/kiosk", "--config", str(config), "run"], stdout=out, stderr=out, env=env
        )
    ready = _await(notify, "READY=1", started + 900)
    if ready is None or kiosk.poll() is not None:
        tail = log.read_text(errors="replace").splitlines()[-10:]
        print(f"KMS kiosk not ready (exit {kiosk.poll()}); its last lines: {tail}", flush=True)
        kiosk.kill()
        return 1
    print(f"KMS drawing: READY=1 {ready - started:.0f} s after the start (emulated CPU)", flush=True)
    pings = 0
    while (ping := _await(notify, "WATCHDOG=1", ready + SHOW_S)) is not None:
        pings += 1
        print(f"KMS ping {pings} at {ping - ready:.0f} s", flush=True)
    alive = kiosk.poll() is None
    kiosk.terminate()
    kiosk.wait(timeout=30)
    print(
        f"KMS kiosk on screen {SHOW_S} s: running {alive}, {pings} watchdog pings; exit {kiosk.returncode}", flush=True
    )
    problems = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line or "Traceback" in line]
    print(f"KMS kiosk log errors: {problems[:5]}", flush=True)
    return 0


def _await(sock: socket.socket, message: str, deadline: float) -> float | None:
    """When ``message`` came on the notify socket (monotonic time), None if not by ``deadline``."""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096).decode(errors="replace").strip() == message:
                return time.monotonic()
        except TimeoutError:
            return None
    return None


# ---------------------------------------------------------------------------------------------- the host
def _stage(work: Path) -> Path:
    guest = ("kmsvm.sh", "KMS", "/opt/cb-self/bin/python -m bench.kiosk_kms_vm --guest")
    return vm.stage(work, "kiosk-kms-vm", PACKAGES, {"self": vm.PROJECT}, guest, "5G", extra="kiosk")


def screendump(sock: Path, out: Path) -> None:
    """The guest's screen to ``out`` (PPM) through QMP."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(sock))
        reader = s.makefile("r")
        reader.readline()  # the greeting
        for command in (
            {"execute": "qmp_capabilities"},
            {"execute": "screendump", "arguments": {"filename": str(out)}},
        ):
            s.sendall(json.dumps(command).encode() + b"\n")
            reply = json.loads(reader.readline())
            while "event" in reply:
                reply = json.loads(reader.readline())
            if "error" in reply:
                raise RuntimeError(f"QMP {command['execute']}: {reply['error']}")


def match_share(shot: Path, reference: Path) -> float:
    """The share of ``shot``'s pixels within ``TOLERANCE`` of ``reference``'s, at the best offset of up to
    ``SHIFT_PX`` each way (the idle screen moves a little against burn-in); 0 when the sizes differ."""
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(reference).convert("RGB"), dtype=np.int16)
    if a.shape != b.shape:
        return 0.0

    def share(x: Any, y: Any, dx: int, dy: int) -> float:
        height, width = x.shape[:2]
        ours = x[max(0, dy) : height + min(0, dy), max(0, dx) : width + min(0, dx)]
        theirs = y[max(0, -dy) : height + min(0, -dy), max(0, -dx) : width + min(0, -dx)]
        return float((np.abs(ours - theirs).max(axis=2) <= TOLERANCE).sum()) / (height * width)

    # every other pixel first (a quarter of the work, even offsets), then the best offset's neighbours in full
    half = SHIFT_PX // 2
    coarse = [
        (share(a[::2, ::2], b[::2, ::2], dx, dy), dx, dy)
        for dy in range(-half, half + 1)
        for dx in range(-half, half + 1)
    ]
    _, dx, dy = max(coarse)
    return max(share(a, b, 2 * dx + i, 2 * dy + j) for i in (-1, 0, 1) for j in (-1, 0, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kiosk-kms-vm", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the work folder (root, image, screenshots)")
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.guest:
        return guest()
    with vm.workspace("kiosk-kms-vm", None, args.keep) as (work, _):
        reference = work / "reference"
        config = write_config(work / "host")
        made = subprocess.run(
            [sys.executable, "-m", "kiosk", "--snapshot", str(reference), "--config", str(config)],
            capture_output=True,
            text=True,
        )
        if made.returncode:
            print(f"FAIL: the reference snapshot under Xvfb: {made.stderr.strip()[-500:]}", flush=True)
            return 1
        image = _stage(work)
        return _run(work, image, reference)


def _run(work: Path, image: Path, reference: Path) -> int:
    from PIL import Image

    log, sock = work / "console.log", work / "qmp.sock"
    vm.say("kiosk-kms-vm", "booting with qemu's standard VGA")
    extra = ["-vga", "std", "-qmp", f"unix:{sock},server=on,wait=off", *vm.NETWORK]
    proc = vm.boot(work / "root", image, log, "init=/kmsvm.sh", extra)
    shares: dict[str, float] = {}
    try:
        drawing = vm.wait_for(log, "KMS drawing", proc, 1500)
        seen = time.monotonic()
        while drawing and proc.poll() is None and max(shares.values(), default=0.0) < MATCH_SHARE:
            time.sleep(10)  # the screen as the guest shows it now (READY=1 may come before the first frame)
            screendump(sock, work / "kms.ppm")
            Image.open(work / "kms.ppm").save(work / "kms.png")
            shares = {s: match_share(work / "kms.png", reference / f"{s}.png") for s in ("idle", "offline")}
            waited = time.monotonic() - seen
            vm.say("kiosk-kms-vm", f"{waited:.0f} s after READY=1: like Xvfb's {shares}")
        if proc.poll() is not None:
            vm.say("kiosk-kms-vm", "the guest stopped before its screen matched")
        waited = time.monotonic() - seen
    finally:
        proc.kill()
        proc.wait()
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("KMS")]
    print("\n".join(lines), flush=True)
    pings = sum(line.startswith("KMS ping") for line in lines)
    best = max(shares.values(), default=0.0)
    print(f"screen: {work / 'kms.png'}; pixels like the Xvfb rendering: {shares}", flush=True)
    print(f"{pings} watchdog pings in {waited:.0f} s from READY=1 to the screen's match", flush=True)
    ok = drawing and best >= MATCH_SHARE and pings >= waited // WATCHDOG_S
    print("PASS" if ok else "FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
