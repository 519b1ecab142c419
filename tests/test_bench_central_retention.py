"""Disk use under retention (issue 15): the mechanism the 30-day bench measures, at a small size on SQLite. Once
every window has passed, the file stops growing except for what is kept for good."""

from __future__ import annotations

from bench.bench_central_retention import READINGS_PER_DAY, RETENTION, _kept_for_good, _sqlite_bytes, simulate
from central.storage import open_store


def test_sqlite_disk_use_stops_growing_once_every_window_has_passed(tmp_path):
    path = tmp_path / "central.sqlite3"
    store = open_store(path, retention=RETENTION)
    try:
        meters, days = 4, 18
        sizes = simulate(store, lambda: _sqlite_bytes(path), meters, days, "SQLite")
        kept = _kept_for_good(store)
    finally:
        store.close()
    assert kept["readings"] == meters * READINGS_PER_DAY * RETENTION.readings_days  # a week of raw readings
    # one daily point per meter and local day, for good (the simulated days straddle local midnight: one more)
    assert meters * days <= kept["water_days"] <= meters * (days + 1)
    settled = RETENTION.state_days + 1
    assert sizes[settled - 1] >= 0.9 * max(sizes), sizes  # it grew to its size while the windows filled
    assert sizes[-1] <= sizes[settled - 1] * 1.02, sizes  # then freed pages were reused: flat
