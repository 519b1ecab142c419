"""A hostile network between the node's updater and the real central (a loopback proxy that answers as a
broken or malicious middlebox would): a proxy's HTML error page instead of the update check or a file, a
trickle, an endless file, a file of the wrong size, a manifest changed on the way. The node never installs
what it did not verify, never lets a download fill its disk, keeps what it had already fetched, and says why."""

from __future__ import annotations

import shutil
import time

import pytest

from bench.update_rig import FileFaultProxy
from tests.update_helpers import V1, V2, outcome, reset, rollout, set_config
from updates.layout import READY, Layout


@pytest.fixture
def hostile(update_rig, request):
    """The rig's node talking to the central through a FileFaultProxy(fault=request.param)."""
    central, node, _ = update_rig
    layout = reset(node)
    for leftover in (layout.version_dir(V2), layout.downloads):
        if leftover.exists():
            shutil.rmtree(leftover)
    rollout(central, V2)
    proxy = FileFaultProxy(central.port, fault=request.param, count=100)
    set_config(node, central.url, proxy.url)
    yield node, layout, proxy
    proxy.close()
    reset(node)


def untouched(layout: Layout) -> None:
    """The node still runs v1 and nothing of v2 is installed."""
    assert (layout.current(), layout.committed()) == (V1, V1)
    assert not (layout.version_dir(V2) / READY).exists()


@pytest.mark.parametrize("hostile", ["html"], indirect=True)
def test_a_proxys_error_page_instead_of_a_file_is_never_installed_and_keeps_the_download(hostile):
    node, layout, proxy = hostile
    result = node.updater("now")
    assert result.returncode == 3, result.stdout + result.stderr  # the network's fault: try again later
    assert "an HTML page (HTTP 200) instead of the file" in result.stderr
    assert proxy.served.count("html") == 6  # six attempts, then the run gives up
    untouched(layout)
    assert not [p for p in layout.downloads.rglob("*") if p.is_file() and p.stat().st_size]  # no page kept as a file


@pytest.mark.parametrize("hostile", ["drip"], indirect=True)
def test_a_trickle_is_cut_and_what_arrived_is_kept_for_the_next_run(hostile):
    node, layout, proxy = hostile
    set_config(node, "heartbeat_interval_s = 10", "heartbeat_interval_s = 10\nread_timeout_s = 1")
    started = time.monotonic()
    result = node.updater("now")
    took = time.monotonic() - started
    assert result.returncode == 3, result.stdout + result.stderr
    assert "slower than 512 bytes/s" in result.stderr and "kept for the next run" in result.stderr
    assert took < 60, f"a trickle held the updater for {took:.0f} s"
    untouched(layout)
    parts = list(layout.downloads.rglob("*.part"))
    assert parts and parts[0].stat().st_size > 0  # resumed with a Range request next time


@pytest.mark.parametrize("hostile", ["huge", "garbage"], indirect=True)
def test_a_file_of_the_wrong_size_is_refused_and_never_fills_the_disk(hostile):
    node, layout, proxy = hostile
    result = node.updater("now")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"refused {V2}" in outcome(result)
    fault = proxy.served[0]
    assert ("padded" if fault == "huge" else "truncated") in outcome(result) or "sha256" in outcome(result)
    untouched(layout)
    assert not layout.downloads.exists() or not any(layout.downloads.rglob("*"))  # nothing left behind
    assert proxy.sent < 64 * 1024 * 1024  # of the 300 MB offered, the node took about one file's size


@pytest.mark.parametrize("hostile", ["tamper"], indirect=True)
def test_a_manifest_changed_on_the_way_fails_its_signature(hostile):
    node, layout, proxy = hostile
    result = node.updater("now")
    assert proxy.served == ["tamper"]
    assert result.returncode == 1 and f"refused {V2}" in outcome(result) and "signature" in outcome(result)
    untouched(layout)


@pytest.mark.parametrize("hostile", ["portal"], indirect=True)
def test_a_captive_portals_page_instead_of_the_update_check_changes_nothing(hostile):
    node, layout, proxy = hostile
    result = node.updater("now")
    assert result.returncode == 3 and "is not JSON" in result.stderr, result.stdout + result.stderr
    assert proxy.served == ["portal"]
    untouched(layout)
