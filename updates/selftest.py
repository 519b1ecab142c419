"""A new version's checks before the switch, run by the updater inside that version's venv:

    VENV/bin/python -m updates.selftest --config /etc/changbai/node.toml --from-schema 1 --out MIGRATED.toml

It migrates the node's config to this version's schema and validates it (exit 2 with one line per problem),
then checks that this version can do its job: the role's modules import, the outbox stores and acknowledges an
event on a real SQLite file, a release signature verifies (so this version can install the next one), TLS
certificates are there (exit 1 naming what failed). Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import certifi  # requests' CA bundle

from common.clock import SystemClock
from common.config import CONFIG_SCHEMA_VERSION, ConfigError, parse_config, read_toml
from common.events import make_event
from common.outbox import Outbox
from common.sync import package_version
from common.tomlwrite import dumps
from updates.layout import PROGRAMS
from updates.manifest import generate_key, key_id
from updates.migrations import MigrationError, migrate

ROLE_MODULES = {
    "elevator": ("elevator_node.node", "elevator_node.detector", "elevator_node.__main__"),
    "meter": ("meter_node.node", "meter_node.wellbeing", "meter_node.__main__"),
    "kiosk": ("kiosk.node", "kiosk.ride", "kiosk.__main__"),
}
EXIT_FAILED = 1
EXIT_CONFIG = 2


def check_config(path: Path, from_schema: int, out: Path | None) -> tuple[Any, dict[str, Any]]:
    """Migrate and validate; (NodeConfig, report). Raises ConfigError or MigrationError."""
    document = read_toml(path)
    migrated, done = migrate(document, from_schema)
    changed = migrated != document
    config = parse_config(migrated, path)
    if changed and out is not None:
        header = f"migrated to config schema {CONFIG_SCHEMA_VERSION} by the updater: " + "; ".join(done)
        out.write_text(dumps(migrated, header=header), encoding="utf-8")
        parse_config(read_toml(out), path)  # what is written reads back the same
    return config, {"schema": CONFIG_SCHEMA_VERSION, "migrations": done, "changed": changed}


def run_checks(config: Any) -> dict[str, str]:
    """name -> "ok" or what went wrong."""
    checks: dict[str, str] = {}
    for module in ROLE_MODULES[config.node.role]:
        try:
            importlib.import_module(module)
            checks[f"import {module}"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any import failure is this release's defect, reported
            checks[f"import {module}"] = f"{type(exc).__name__}: {exc}"
    program = Path(sys.prefix) / "bin" / PROGRAMS[config.node.role]
    checks["program"] = "ok" if program.is_file() else f"{program} missing"
    checks["outbox"] = _outbox_round_trip(config)
    try:
        key = generate_key()
        key.public_key().verify(key.sign(b"changbai"), b"changbai")
        checks["release_signatures"] = f"ok (Ed25519, test key {key_id(key.public_key())})"
    except Exception as exc:  # noqa: BLE001 - cryptography missing or broken: this version could never update
        checks["release_signatures"] = f"{type(exc).__name__}: {exc}"
    checks["tls_certificates"] = "ok" if Path(certifi.where()).is_file() else f"CA bundle {certifi.where()} missing"
    return checks


def _outbox_round_trip(config: Any) -> str:
    with tempfile.TemporaryDirectory(prefix="changbai-selftest-") as tmp:
        try:
            outbox = Outbox(Path(tmp) / "outbox.sqlite", config.outbox, SystemClock(), node_id=config.node.id)
            try:
                event = outbox.put(make_event(config.node.id, "selftest", wall_time=0.0, clock_synced=False))
                sent = outbox.batch(10)
                acked = outbox.ack([event.id])
            finally:
                outbox.close()
        except Exception as exc:  # noqa: BLE001 - reported as this release's defect
            return f"{type(exc).__name__}: {exc}"
    return "ok" if [e.id for e in sent] == [event.id] and acked == 1 else f"stored {len(sent)}, acknowledged {acked}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m updates.selftest", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--from-schema", type=int, default=CONFIG_SCHEMA_VERSION)
    parser.add_argument("--out", type=Path, help="write the migrated config here (only when it changed)")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"ok": False, "version": package_version()}
    try:
        config, result["config"] = check_config(args.config, args.from_schema, args.out)
    except (ConfigError, MigrationError) as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        result["problems"] = [f"config does not validate under {result['version']}: {p}" for p in problems]
        print(json.dumps(result, ensure_ascii=False))
        return EXIT_CONFIG
    result["checks"] = run_checks(config)
    failed = [f"{name}: {text}" for name, text in result["checks"].items() if not text.startswith("ok")]
    result["ok"] = not failed
    result["problems"] = failed
    print(json.dumps(result, ensure_ascii=False))
    return 0 if not failed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
