"""A hostile network made by a real kernel: a Debian 12 guest (its own kernel, bench/vm.py) runs the installed
``meter-node run`` on a pymodbus meter over a socat serial pair, and sends to the real central on the host through
qemu's user network. ``tc netem`` on the guest's interface (both ways: its ingress through an ifb device) first
delays, drops, duplicates, reorders and corrupts packets (the node is killed with SIGKILL halfway and started
again), then drops them all while a meter stops answering (a ``meter_offline`` alert is raised in the blackout),
then flaps between the two, then is removed.

Counted at the central once the network is clean again: every event the node made is stored once (no sequence
number missing, none and no event id twice), none was dead-lettered, the node's outbox is empty, and the alerts
raised in the blackout were sent within ``ALERT_LATE_S`` of the network's return (by the node's clock: the upload
that carried them, whose ``node_wall_time`` the central keeps; a guest under qemu keeps its own time). The node runs on its
defaults but for five meters polled every 5 s with a reading recorded every 5-10 s each (traffic), a 60 s offline
limit and a 30 s heartbeat (to see its sync totals soon).

``scripts/netem-vm`` runs it (root, debootstrap, qemu-system-x86, socat; about 15 minutes; not in CI).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import vm

NODE_ID = "vm-meter-netem"
HOME = Path("/node")  # the node's folder in the guest: config, token, data, log
NODE_PROGRAM = "/opt/cb-self/bin/meter-node"  # the installed program (vm.install_venv)
CENTRAL_HOST = "10.0.2.2"  # the host, from the guest
LOSSY = "delay 300ms 200ms loss 20% duplicate 5% reorder 25% 50% corrupt 1%"
FLAP_ON = "delay 200ms 100ms loss 30%"
METERS = range(1, 6)  # flats on the node's RS-485 bus; the first stops answering in the blackout
PHASES_S = {"clean": 30, "lossy": 180, "blackout": 120, "flapping": 120}
FLAP_S = 10
METER_OFF_S = 90  # in the blackout: past offline_after_s, so meter_offline is raised and cleared while cut off
DRAIN_LIMIT_S = 420  # backoff_max_s (300 s) and a batch or two
ALERT_LATE_S = 60.0  # an alert waits at most 30 s between tries (ALERT_BACKOFF_MAX_S), plus the flight


# --------------------------------------------------------------------------------------------- in the guest
def _node_config(port: int, serial: str) -> Path:
    home = HOME
    (home / "data").mkdir(parents=True, exist_ok=True)
    config = home / "meter.toml"
    meters = "".join(
        f'[[meter.meters]]\nid = "b12-{300 + a}"\naddress = {a}\nprofile = "u32_le_litres"\npoll_interval_s = 5\n'
        f'offline_after_s = 60\nhousehold = {{ resident = "B12-{300 + a}" }}\n\n'
        for a in METERS
    )
    config.write_text(
        f"""[node]
id = "{NODE_ID}"
role = "meter"
site = "changbai-xincun"
data_dir = "{home / "data"}"

[central]
url = "http://{CENTRAL_HOST}:{port}"
token_file = "{home / "token"}"
heartbeat_interval_s = 30

[audio]
backend = "none"

[meter]
reading_min_interval_s = 5
reading_sample_s = 10

[meter.serial]
port = "{serial}"
baudrate = 9600
timeout_s = 0.3
retries = 2

{meters}""",
        encoding="utf-8",
    )
    return config


class Netem:
    """netem on the guest's interface, both ways: egress on the interface, ingress redirected through ifb0."""

    def __init__(self) -> None:
        self.dev = next(p.name for p in Path("/sys/class/net").iterdir() if p.name not in ("lo", "ifb0"))
        vm.sh("modprobe ifb numifbs=1 && modprobe sch_netem && modprobe act_mirred && modprobe cls_u32")
        vm.sh("ip link set ifb0 up")
        vm.sh(f"tc qdisc add dev {self.dev} ingress")
        vm.sh(
            f"tc filter add dev {self.dev} parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev ifb0"
        )
        self.counted = {"packets": 0, "dropped": 0}  # by the netem rules so far, both ways

    def set(self, rule: str) -> None:
        """Replace the rules, both ways, with ``rule`` (netem's own words); the last rules' counters are kept."""
        self._count()
        for dev in (self.dev, "ifb0"):
            vm.sh(f"tc qdisc replace dev {dev} root netem {rule}")

    def clear(self) -> dict[str, int]:
        """Remove the rules; what they did (packets that went through them, and those they dropped)."""
        self._count()
        for dev in (self.dev, "ifb0"):
            vm.sh(f"tc qdisc del dev {dev} root 2>/dev/null || true")
        return self.counted

    def _count(self) -> None:
        for dev in (self.dev, "ifb0"):
            shown = vm.sh(f"tc -s qdisc show dev {dev}")
            for sent, dropped in re.findall(r"qdisc netem .*?Sent \d+ bytes (\d+) pkt \(dropped (\d+)", shown, re.S):
                self.counted["packets"] += int(sent) + int(dropped)
                self.counted["dropped"] += int(dropped)


def _outbox_left(config: Path) -> dict[str, int]:
    """Events still queued in the node's outbox, by priority."""
    return {prio: len(rows) for prio, rows in vm.outbox_rows(config).items()}


@contextlib.contextmanager
def _meter() -> Iterator[Any]:
    """A pymodbus meter on a socat pair; yields its bus and the node's end of the pair."""
    from hal.sim.meter import SimulatedMeter, SimulatedMeterBus
    from hal.sim.serial_pair import SerialPair
    from meter_node.profiles import load_profile

    with SerialPair(Path("/tmp/serial")) as (node_port, meter_port):
        sim = SimulatedMeterBus(meter_port, baudrate=9600, node_path=node_port).start()
        try:
            for address in METERS:
                sim.add_slave(address)
                SimulatedMeter(sim, address, load_profile("u32_le_litres").register_writes, total_litres=5040.0)
            yield sim, node_port
        finally:
            sim.stop()


def guest(port: int) -> int:
    """In the guest: the node, the network's phases, then a report (``NETEM`` lines)."""
    with _meter() as (sim, serial):
        config = _node_config(port, serial)

        def start() -> subprocess.Popen[bytes]:
            with open(HOME / "node.log", "ab") as out:
                return subprocess.Popen([NODE_PROGRAM, "run", "--config", str(config)], stdout=out, stderr=out)

        node = start()
        net = Netem()
        print(f"NETEM node started; interface {net.dev}", flush=True)
        time.sleep(PHASES_S["clean"])
        net.set(LOSSY)
        print(f"NETEM lossy: {LOSSY}", flush=True)
        time.sleep(PHASES_S["lossy"] / 2)
        node.kill()  # kill -9 while uploads are in flight: what the central stored unacknowledged comes again
        node.wait()
        node = start()
        print("NETEM node killed (SIGKILL) and started again", flush=True)
        time.sleep(PHASES_S["lossy"] / 2)
        net.set("loss 100%")
        sim.set_present(1, False)
        print("NETEM blackout: loss 100%; the meter stops answering", flush=True)
        time.sleep(METER_OFF_S)
        sim.set_present(1, True)
        time.sleep(PHASES_S["blackout"] - METER_OFF_S)
        print(f"NETEM flapping every {FLAP_S} s: loss 100% / {FLAP_ON}", flush=True)
        for flip in range(PHASES_S["flapping"] // FLAP_S):
            net.set("loss 100%" if flip % 2 == 0 else FLAP_ON)
            time.sleep(FLAP_S)
        print(f"NETEM netem counted {json.dumps(net.clear())}", flush=True)
        back = time.monotonic()
        print(f"NETEM network-back {time.time():.1f}", flush=True)
        quiet = 0  # the outbox seen with at most one reading (the next poll's) three times in a row
        while time.monotonic() < back + DRAIN_LIMIT_S and quiet < 3:
            quiet = quiet + 1 if sum(_outbox_left(config).values()) <= 1 else 0
            time.sleep(2)
        print(f"NETEM drained {time.monotonic() - back:.0f} s after the network came back: {quiet == 3}", flush=True)
        time.sleep(40)  # a heartbeat after the drain carries the node's sync totals
        for address in METERS:  # no more readings: what is queued goes out, then the node stops
            sim.set_present(address, False)
        time.sleep(15)
        node.terminate()
        node.wait(timeout=60)
    print(f"NETEM outbox-left {json.dumps(_outbox_left(config))}", flush=True)
    log = (HOME / "node.log").read_text(errors="replace").splitlines()
    print(f"NETEM node log: {len(log)} lines; errors: {[x for x in log if 'Traceback' in x or 'ERROR' in x][:5]}")
    return 0


# ---------------------------------------------------------------------------------------------- the host
def _stage(work: Path, token: str) -> Path:
    def node_folder(root: Path) -> None:
        (root / "node").mkdir()
        (root / "node" / "token").write_text(token + "\n")
        (root / "node" / "token").chmod(0o600)

    command = '/opt/cb-self/bin/python -m bench.netem_vm --guest "$(arg cbport)"'
    guest = ("netemvm.sh", "NETEM", command)
    packages = ("iproute2", "socat", "kmod")
    return vm.stage(work, "netem-vm", packages, {"self": vm.PROJECT}, guest, "4G", prepare=node_folder)


def judge(node: dict[str, Any], events: list[dict[str, Any]], back_wall: float, left: dict[str, int]) -> list[str]:
    """What failed (empty: passed), from the central's node row and stored events and the node's outbox."""
    failed = []
    ids = [e["id"] for e in events]
    seqs = [e["seq"] for e in events if e.get("seq") is not None]
    made = node["max_seq"] - node["seq_unused"]
    if node["seq_missing"]:
        failed.append(f"{node['seq_missing']} event(s) lost (sequence numbers that never arrived)")
    if len(set(ids)) != len(ids) or len(set(seqs)) != len(seqs):
        failed.append(f"stored twice: {len(ids) - len(set(ids))} id(s), {len(seqs) - len(set(seqs))} seq(s)")
    if len(set(seqs)) != made:
        failed.append(f"{len(set(seqs))} sequence numbers stored, the node made {made}")
    health = node.get("health") or {}
    sync = health.get("sync") or {}
    if sync.get("dead_lettered", 0):
        failed.append(f"{sync['dead_lettered']} event(s) dead-lettered")
    if health.get("dead_letters", 0):  # the outbox's own count: the totals above start again with the process
        failed.append(f"{health['dead_letters']} dead letter(s) in the node's outbox")
    if any(left.values()):
        failed.append(f"left in the node's outbox: {left}")
    offline = [e for e in events if e["kind"] == "meter_offline"]
    if {e["state"] for e in offline} != {"raised", "cleared"}:
        failed.append(f"meter_offline raised and cleared in the blackout: stored {[e['state'] for e in offline]}")
    late = [e["node_wall_time"] - back_wall for e in offline]
    if late and max(late) > ALERT_LATE_S:
        failed.append(f"an alert sent {max(late):.0f} s after the network came back (limit {ALERT_LATE_S:.0f} s)")
    return failed


def main(argv: list[str] | None = None) -> int:
    def check(work: Path, token: str, server: Any) -> int:
        from bench.harness import OPERATOR_KEY  # the host's (the guest has no central)

        return _run(work, _stage(work, token), server.url, server.port, OPERATOR_KEY)

    return vm.with_central("netem-vm", __doc__.splitlines()[0], argv, (NODE_ID, "meter"), guest, check)


def _run(work: Path, image: Path, url: str, port: int, operator: str) -> int:
    log = work / "console.log"
    vm.say("netem-vm", f"booting; the node sends to the central on the host's port {port}")
    proc = vm.boot(work / "root", image, log, f"init=/netemvm.sh cbport={port}", vm.NETWORK)
    done = vm.wait_for(log, "NETEM-DONE", proc, sum(PHASES_S.values()) + DRAIN_LIMIT_S + 1800)
    proc.kill()
    proc.wait()
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("NETEM")]
    return report(url, operator, lines, done)


def report(url: str, operator: str, lines: list[str], done: bool) -> int:
    """Print the guest's ``NETEM`` lines and the central's account of the node; 0 when nothing failed."""
    import requests

    print("\n".join(lines), flush=True)
    back = [float(line.split()[-1]) for line in lines if line.startswith("NETEM network-back")]
    left = [json.loads(line.split(" ", 2)[2]) for line in lines if line.startswith("NETEM outbox-left")]
    counted = [json.loads(line.split(" ", 3)[3]) for line in lines if line.startswith("NETEM netem counted")]
    if not (done and back and left and counted):
        print("FAIL: the guest did not finish its check (see above)", flush=True)
        return 1
    if not counted[0]["dropped"]:
        print("FAIL: netem dropped no packet: the rules did not touch the node's traffic", flush=True)
        return 1
    auth = {"Authorization": f"Bearer {operator}"}
    row = requests.get(f"{url}/api/v1/nodes/{NODE_ID}", headers=auth, timeout=30).json()
    events = vm.stored_events(url, operator, NODE_ID)
    sync = (row.get("health") or {}).get("sync") or {}
    late = [round(e["node_wall_time"] - back[0], 1) for e in events if e["kind"] == "meter_offline"]
    print(
        f"central: {len(events)} events stored, the node made {row['max_seq'] - row['seq_unused']} (max seq "
        f"{row['max_seq']}, {row['seq_unused']} unused, {row['seq_missing']} missing); meter_offline sent at "
        f"{late} s from the network's return; the node's last heartbeat's sync totals: {sync}",
        flush=True,
    )
    return vm.verdict(judge(row, events, back[0], left[0]))


if __name__ == "__main__":
    sys.exit(main())
