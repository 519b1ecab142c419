"""People, not a shared key: per-person accounts with roles scoped to sites, sessions, and the audit log.

``passwords`` the memory-hard password hash (scrypt); ``roles`` what each role may see and do; ``store`` the
tables (users, sessions, audit log, flats and their contacts); ``auth`` who is calling (a session cookie or a
machine client's key) as an ``Actor``. See docs/central.md#accounts-and-roles.
"""
