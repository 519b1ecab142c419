"""Reference central endpoint (FastAPI + SQLite): the v1 contract and a dev/pilot server."""
