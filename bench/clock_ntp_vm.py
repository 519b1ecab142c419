"""A real clock step: a Debian 12 guest (its own kernel, bench/vm.py) boots with its clock 9 h behind, as a Pi does
after a 9 h power cut, and runs the installed ``meter-node run`` on a pymodbus meter over a socat serial pair,
``clock_wait_min = 2``. After 5 minutes, past the wait, chronyd reaches an NTP server (chronyd on the host, which
does not touch the host's clock) and steps the guest's clock forward 9 h. Counted: the inactivity alerts each node
stored in its outbox after the step (the resident used 40 L during the cut, none since: nobody is silent 8 h).

``--compare REV`` runs the meter node of another revision beside this checkout's, on the same clock, each with
its own meter (``dcc3a3b``, before meter_node/clock_frame.py, raises a false warning at the step).

``scripts/clock-ntp-vm`` runs it (root, debootstrap, qemu-system-x86, chrony, socat; about 15 minutes; not in CI).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import vm

BEHIND_S = 9 * 3600
NTP_AFTER_S = 300
AFTER_STEP_S = 180
CHRONY_GUEST = "server 10.0.2.2 iburst minpoll -2 maxpoll -2\nmakestep 1 -1\ncmdport 0\npidfile /run/chronyd.pid\n"
CHRONY_HOST = "local stratum 8\nallow all\ncmdport 0\npidfile {pid}\ndriftfile {drift}\n"


# --------------------------------------------------------------------------------------------- in the guest
def _node_config(tag: str, port: str, tz: str) -> Path:
    home = Path("/node") / tag
    (home / "data").mkdir(parents=True, exist_ok=True)
    (home / "token").write_text("vm-token\n")
    (home / "token").chmod(0o600)
    config = home / "meter.toml"
    config.write_text(
        f"""[node]
id = "vm-meter-{tag}"
role = "meter"
site = "changbai-xincun"
timezone = "{tz}"
data_dir = "{home / "data"}"

[central]
url = "http://10.0.2.2:9"
token_file = "{home / "token"}"

[audio]
backend = "none"

[meter]
clock_wait_min = 2

[meter.serial]
port = "{port}"
baudrate = 9600
timeout_s = 0.3
retries = 2

[[meter.meters]]
id = "b12-301"
address = 1
profile = "u32_le_litres"
poll_interval_s = 20
offline_after_s = 600
household = {{ resident = "B12-301" }}
""",
        encoding="utf-8",
    )
    return config


def _inactivity(config: Path) -> list[dict[str, Any]]:
    """The inactivity events in a node's outbox (the central is out of reach: none is sent)."""
    return [e for e in vm.outbox_rows(config).get("alert", []) if e.get("kind") == "inactivity"]


def guest(tags: list[str], tz: str) -> int:
    """In the guest: one meter node per tag (``/opt/cb-TAG``) in timezone ``tz``, NTP after ``NTP_AFTER_S``, then a
    report."""
    from hal.sim.meter import SimulatedMeter, SimulatedMeterBus
    from hal.sim.serial_pair import SerialPair
    from meter_node.profiles import load_profile

    closers, nodes, configs = [], {}, {}
    Path("/node").mkdir(exist_ok=True)
    for tag in tags:
        pair = SerialPair(Path("/tmp") / f"serial-{tag}")
        node_port, meter_port = pair.start()
        closers.append(pair.stop)
        sim = SimulatedMeterBus(meter_port, baudrate=9600, node_path=node_port).start()
        closers.append(sim.stop)
        sim.add_slave(1)
        SimulatedMeter(sim, 1, load_profile("u32_le_litres").register_writes, total_litres=5040.0)
        configs[tag] = _node_config(tag, node_port, tz)
        with open(Path("/node") / f"{tag}.log", "wb") as out:  # the node keeps its own copy of the file
            nodes[tag] = subprocess.Popen(
                [f"/opt/cb-{tag}/bin/meter-node", "run", "--config", str(configs[tag])],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    print(f"CLOCKVM nodes started at {time.strftime('%H:%M:%S')} (the guest's clock): {', '.join(tags)}", flush=True)
    time.sleep(NTP_AFTER_S)
    from common.clock import SystemClock

    clock = SystemClock(recheck_s=0.0)
    before_step = clock.wall()  # by the stopped clock: every event after the step is dated 9 h later
    Path("/etc/chrony").mkdir(parents=True, exist_ok=True)
    Path("/etc/chrony/vm.conf").write_text(CHRONY_GUEST)
    subprocess.run(["chronyd", "-f", "/etc/chrony/vm.conf"], check=True)
    deadline = time.monotonic() + 180
    while not clock.wall_synced() and time.monotonic() < deadline:
        time.sleep(1)
    print(f"CLOCKVM ntp synced={clock.wall_synced()} at {time.strftime('%H:%M:%S')}", flush=True)
    time.sleep(AFTER_STEP_S)
    for proc in nodes.values():
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    for closer in reversed(closers):
        closer()
    for tag in tags:
        log = (Path("/node") / f"{tag}.log").read_text(errors="replace")
        dated = [line for line in log.splitlines() if "dated again" in line or "rules running" in line]
        events = _inactivity(configs[tag])
        after = [e for e in events if float(e.get("wall_time", 0)) > before_step]
        said = [(e.get("state"), e.get("severity"), (e.get("payload") or {}).get("silence_h")) for e in events]
        print(f"CLOCKVM node {tag}: log: {dated}", flush=True)
        print(f"CLOCKVM result {tag}: {len(after)} inactivity event(s) at or after the step: {said}", flush=True)
    # what the rules take for "set by hand": the kernel's answer once NTP is gone and the clock set with date -s
    os.kill(int(Path("/run/chronyd.pid").read_text()), signal.SIGTERM)
    time.sleep(2)
    synced_before = SystemClock(recheck_s=0.0).wall_synced()
    subprocess.run(["date", "-s", "+2 hours"], check=True, capture_output=True)
    print(f"CLOCKVM date -s: synced before {synced_before}, after {SystemClock(recheck_s=0.0).wall_synced()}")
    return 0


# ---------------------------------------------------------------------------------------------- the host
def _stage(work: Path, sources: dict[str, Path]) -> Path:
    command = '/opt/cb-self/bin/python -m bench.clock_ntp_vm --guest "$(arg cbnodes)" --tz "$(arg cbtz)"'
    packages = ("chrony", "iproute2", "socat", "tzdata")
    return vm.stage(work, "clock-ntp-vm", packages, sources, ("clockvm.sh", "CLOCKVM", command), "4G")


def _ntp_server(work: Path) -> subprocess.Popen[bytes]:
    """chronyd on the host as an NTP server only (``-x``: it never sets the host's clock)."""
    conf = work / "chrony-host.conf"
    conf.write_text(CHRONY_HOST.format(pid=work / "chronyd.pid", drift=work / "chrony.drift"))
    return subprocess.Popen(
        ["chronyd", "-d", "-x", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clock-ntp-vm", description=__doc__.splitlines()[0])
    parser.add_argument("--compare", metavar="REV", help="also run the meter node of this git revision")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (root, image, serial log)")
    parser.add_argument("--guest", help=argparse.SUPPRESS)  # in the guest: the node tags, comma-separated
    parser.add_argument("--tz", default="UTC", help=argparse.SUPPRESS)  # in the guest: the nodes' timezone
    args = parser.parse_args(argv)
    if args.guest is not None:
        return guest(args.guest.split(","), args.tz)
    with vm.workspace("clock-ntp-vm", args.compare, args.keep) as (work, sources):
        image = _stage(work, sources)
        server = _ntp_server(work)
        try:
            return _run(work, image, sources)
        finally:
            server.terminate()
            server.wait()


def _run(work: Path, image: Path, sources: dict[str, Path]) -> int:
    """Boot the guest 9 h behind, wait for its report, print it; 0 when this checkout's node raised nothing."""
    behind = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - BEHIND_S))
    # the nodes' timezone: 17:00 there now, so the silence the stopped clock makes (08:00-17:00) is a day's
    off = (17 - time.gmtime().tm_hour + 12) % 24 - 12
    tz = f"Etc/GMT{-off:+d}" if off else "UTC"  # POSIX signs: Etc/GMT+7 is seven hours behind UTC
    log = work / "console.log"
    vm.say("clock-ntp-vm", f"booting with the clock at {behind} UTC, {BEHIND_S // 3600} h behind")
    proc = vm.boot(
        work / "root",
        image,
        log,
        f"init=/clockvm.sh cbnodes={','.join(sources)} cbtz={tz}",
        ["-rtc", f"base={behind}", *vm.NETWORK],
    )
    done = vm.wait_for(log, "CLOCKVM-DONE", proc, NTP_AFTER_S + AFTER_STEP_S + 1800)
    proc.kill()
    proc.wait()
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("CLOCKVM")]
    print("\n".join(lines), flush=True)
    results = [line for line in lines if line.startswith("CLOCKVM result self:")]
    ok = done and bool(results) and " 0 inactivity event(s)" in results[0]
    print("PASS" if ok else "FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
