"""Config migrations that travel with a release: each turns a node config (the parsed TOML) of schema N into
schema N + 1. The NEW version's code migrates, in its own venv, before the switch; a config that does not
validate afterwards stops the switch with the reason (updates/selftest.py).

Add one with a function and a line in MIGRATIONS, and bump common.config.CONFIG_SCHEMA_VERSION:

    def _v1_to_v2(doc):
        doc.setdefault("central", {})["heartbeat_interval_s"] = doc.get("central", {}).pop("heartbeat_s", 300)
        return doc

    MIGRATIONS[1] = Migration("central.heartbeat_s renamed central.heartbeat_interval_s", _v1_to_v2)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.config import CONFIG_SCHEMA_VERSION

Document = dict[str, Any]


@dataclass(frozen=True)
class Migration:
    """From schema N to N + 1: what it changes, in words, and the function that does it."""

    what: str
    apply: Callable[[Document], Document]


MIGRATIONS: dict[int, Migration] = {}


class MigrationError(Exception):
    """No way from the node's schema to this version's (too old, or newer than this code)."""


def migrate(document: Document, from_schema: int, to_schema: int | None = None) -> tuple[Document, list[str]]:
    """(migrated copy of ``document``, what each applied migration did)."""
    target = CONFIG_SCHEMA_VERSION if to_schema is None else to_schema
    if from_schema > target:
        raise MigrationError(f"the config is schema {from_schema}, newer than this version's {target}")
    doc, done = copy.deepcopy(document), []
    for schema in range(from_schema, target):
        step = MIGRATIONS.get(schema)
        if step is None:
            raise MigrationError(f"no migration from config schema {schema} to {schema + 1}")
        doc = step.apply(doc)
        done.append(f"schema {schema} -> {schema + 1}: {step.what}")
    return doc, done
