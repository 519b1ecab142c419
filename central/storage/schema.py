"""The core component's migrations (nodes, events, alerts, rides), for both engines, in order.

A migration once landed never changes; a change of schema is a new ``Migration`` at the end. See
``central.storage.migrations`` for how they are applied and recorded.
"""

from __future__ import annotations

from central.storage import schema_v1
from central.storage.migrations import Component, Migration

CORE = Component(
    "core",
    (
        Migration(
            1,
            "the first schema (SQLite only; PostgreSQL starts at version 2)",
            sqlite=schema_v1.SQLITE,
            postgresql="",
        ),
    ),
)
