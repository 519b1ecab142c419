"""What the central's storage raises: its own hierarchy, so nothing above it knows the engine's exceptions.

``StorageError`` and its subclasses mean "the database cannot do this now" (answered 503 ``storage_error`` with
Retry-After: nothing is acknowledged, the node keeps its events). ``NotFound`` and ``Conflict`` are answers about
the data (404, 409), not failures.
"""

from __future__ import annotations


class StorageError(Exception):
    """The database failed (disk full, locked, gone, damaged); the message names the engine's error."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or written now (connection refused, locked, read-only, disk full)."""


class StorageCorrupt(StorageError):
    """The database file or schema is damaged or not ours; the operator must look at it."""


class StorageIntegrityError(StorageError):
    """A constraint refused a write: a bug, or a race a caller expects and handles."""


class SchemaTooNew(StorageError):
    """The database was migrated by a newer central than this one; refusing to run on it."""


class NotFound(Exception):
    """No such node, alert or ride."""


class Conflict(Exception):
    """A request that the current state forbids (e.g. resolving a resolved alert); the message says why."""
