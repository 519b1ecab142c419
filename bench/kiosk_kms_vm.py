"""The kiosk's screen on KMS/DRM, as on a Raspberry Pi without a desktop: a Debian 12 guest (its own kernel,
bench/vm.py) with qemu's standard VGA (the kernel's bochs DRM driver, Mesa's software renderer through GBM and EGL)
runs the installed ``kiosk run`` with the environment of its systemd unit (``SDL_VIDEODRIVER=kmsdrm``, no X, no
Wayland) and the pip-installed Kivy wheel. The host takes the guest's screen through qemu's monitor (QMP
``screendump``) and compares it with the same screen rendered here under Xvfb (``kiosk --snapshot``).

Passed when the kiosk drew on KMS and the guest's screen matches the idle (or offline) screen: at least
``MATCH_SHARE`` of the pixels within ``TOLERANCE`` of the reference's. The tests render the kiosk under Xvfb only.

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

from bench import vm

WIDTH, HEIGHT = 1024, 768  # the bochs display's preferred mode
MATCH_SHARE = 0.95
TOLERANCE = 48  # per channel: the two renderers' antialiasing differs
SHOW_S = 90  # the guest keeps the kiosk on screen this long after its main loop starts
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
    """In the guest: the DRM driver, then the kiosk as its unit runs it; ``KMS`` lines on the console."""
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
    env = {**os.environ, "SDL_VIDEODRIVER": "kmsdrm", "KIVY_HOME": str(home / "data" / "kivy"), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        kiosk = subprocess.Popen(
            ["/opt/cb-self/bin/kiosk", "--config", str(config), "run"], stdout=out, stderr=out, env=env
        )
    deadline = time.monotonic() + 600
    text = ""
    while time.monotonic() < deadline and kiosk.poll() is None and "main loop" not in text:
        time.sleep(2)
        text = log.read_text(errors="replace")
    for line in text.splitlines():
        if any(word in line for word in ("[Window", "[GL", "[Text", "Error", "error", "Traceback")):
            print(f"KMS log: {line.strip()[:300]}", flush=True)
    if kiosk.poll() is not None:
        print(f"KMS kiosk exited {kiosk.returncode}; last lines: {text.splitlines()[-8:]}", flush=True)
        return 1
    print("KMS drawing", flush=True)
    time.sleep(SHOW_S)
    alive = kiosk.poll() is None
    kiosk.terminate()
    kiosk.wait(timeout=30)
    print(f"KMS kiosk ran {SHOW_S} s on screen: {alive}; exit {kiosk.returncode}", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- the host
def _stage(work: Path) -> Path:
    root = work / "root"
    vm.say("kiosk-kms-vm", "debootstrap bookworm with Mesa and the CJK fonts (a few minutes)")
    vm.debootstrap(root, PACKAGES, work / "debootstrap.log")
    vm.say("kiosk-kms-vm", f"venv /opt/cb-self from {vm.PROJECT} (with Kivy)")
    vm.install_venv(root, "self", vm.PROJECT, extra="kiosk")
    vm.write_init(root, "kmsvm.sh", "KMS", "/opt/cb-self/bin/python -m bench.kiosk_kms_vm --guest")
    image = work / "base.img"
    vm.make_image(root, image, "5G")
    return image


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
    """The share of ``shot``'s pixels within ``TOLERANCE`` of ``reference``'s (0 when the sizes differ)."""
    from PIL import Image, ImageChops

    a = Image.open(shot).convert("RGB")
    b = Image.open(reference).convert("RGB")
    if a.size != b.size:
        return 0.0
    diff = ImageChops.difference(a, b).tobytes()  # RGB triples
    close = sum(max(diff[i : i + 3]) <= TOLERANCE for i in range(0, len(diff), 3))
    return close / (a.size[0] * a.size[1])


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
    try:
        drawing = vm.wait_for(log, "KMS drawing", proc, 1500)
        shares: dict[str, float] = {}
        if drawing:
            time.sleep(20)  # its first frames
            shot = work / "kms.ppm"
            screendump(sock, shot)
            Image.open(shot).save(work / "kms.png")
            shares = {s: match_share(work / "kms.png", reference / f"{s}.png") for s in ("idle", "offline")}
        done = vm.wait_for(log, "KMS-DONE", proc, 300)
    finally:
        proc.kill()
        proc.wait()
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("KMS")]
    print("\n".join(lines), flush=True)
    ran = any(line.startswith("KMS kiosk ran") and ": True;" in line for line in lines)
    best = max(shares.values(), default=0.0)
    print(f"screen: {work / 'kms.png'}; pixels like the Xvfb rendering: {shares}", flush=True)
    ok = drawing and done and ran and best >= MATCH_SHARE
    print("PASS" if ok else "FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
