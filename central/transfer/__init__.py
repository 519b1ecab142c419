"""Moving a central's data between databases and a portable dump: ``central migrate-db`` (docs/central.md).

``engines`` reads and writes the tables of SQLite and PostgreSQL databases, ``dump`` the gzipped JSON-lines
dump, ``copy`` plans the move, prints its progress and checks what arrived.
"""
