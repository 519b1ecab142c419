"""The node's durable store-and-forward queue of events on SQLite (WAL), in parts:

- ``outbox.py``: ``Outbox``, the thread-safe queue: priorities (alerts, state, readings), group commit of
  readings, batches in drain order, ack by id, dead letters;
- ``store.py``: the durable side and its answer to a failing disk (damage recovered; a full or read-only disk
  rides on the reserve and a bounded memory queue, written out once the disk allows);
- ``db.py`` (every SQL statement), ``seq.py`` (numbers that only grow), ``lock.py`` (one process per outbox),
  ``recovery.py`` (a damaged file moved aside and salvaged), ``reserve.py`` (the disk reserve),
  ``memory.py`` (the memory queue), ``bound.py`` (the ``max_mb`` bound), ``wire.py`` (the stored JSON),
  ``errors.py`` (damage or disk fault).

Durability and what a crash or a full disk can cost: docs/sync.md.
"""

from common.outbox.db import PAGE_SIZE, list_dead_letters, peek_queued, peek_state, requeue_dead_letters
from common.outbox.errors import OutboxError
from common.outbox.memory import PRIORITIES
from common.outbox.outbox import Outbox
from common.outbox.wire import event_json

__all__ = [
    "PAGE_SIZE",
    "PRIORITIES",
    "Outbox",
    "OutboxError",
    "event_json",
    "list_dead_letters",
    "peek_queued",
    "peek_state",
    "requeue_dead_letters",
]
