"""The central's side of updates: a real bundle published with `central release add`, nodes asking for it in
stages (pilot first), files served with HTTP Range, and a rollout that halts itself when a stage fails."""

from __future__ import annotations

import hashlib
import json

import requests

from central import rollout as rules
from central.__main__ import main as central_main
from updates.build import local_target

VERSION = "0.1.0+t1"
TARGET = local_target()


def _publish(central, release_kit, capsys=None) -> None:
    bundle = release_kit.bundle(VERSION)
    args = ["release", "add", str(bundle), "--db", str(central.db_path), "--public-key", str(release_kit.public_key)]
    assert central_main(args) == 0


def _check(central, token, channel="stable", version="0.1.0", force=False) -> dict:
    params = {"target": TARGET, "version": version, "channel": channel, "force": str(force).lower()}
    answer = requests.get(
        f"{central.url}/api/v1/updates/check", params=params, headers=central.node_headers(token), timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _report(central, token, rollout, state, reason="") -> None:
    body = {"rollout": rollout, "version": VERSION, "state": state, "reason": reason, "from_version": "0.1.0"}
    answer = requests.post(
        f"{central.url}/api/v1/updates/report", json=body, headers=central.node_headers(token), timeout=10
    )
    assert answer.status_code == 200, answer.text


def _start(central, **plan) -> dict:
    body = {"role": "elevator", "version": VERSION, **plan}
    answer = requests.post(f"{central.url}/api/v1/rollouts", json=body, headers=central.operator_headers, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_stages_put_pilots_first_then_growing_shares_of_the_stable_nodes():
    nodes = {f"n{i:03d}": "stable" for i in range(200)} | {"p1": "pilot", "p2": "pilot"}
    plan = rules.Plan((5.0, 50.0, 100.0), 0.1, 0)
    found = rules.stages(7, plan, nodes)
    assert found[0] == ["p1", "p2"]
    assert [len(s) for s in found] == [2, 10, 90, 100]
    assert len({n for s in found for n in s}) == 202
    assert rules.stages(7, plan, nodes) == found  # a node keeps its place
    assert rules.stages(8, plan, nodes)[1] != found[1]  # another rollout starts elsewhere


def test_a_stage_halts_above_the_failure_limit_and_advances_after_its_soak():
    plan = rules.Plan((10.0, 100.0), max_failure_rate=0.2, soak_s=600)
    members = [f"n{i}" for i in range(10)]
    two_bad = {"n0": "rolled_back", "n1": "failed"}
    assert rules.judge(plan, 1, members, two_bad, 0).action == "wait"
    three_bad = two_bad | {"n2": "rolled_back"}
    verdict = rules.judge(plan, 1, members, three_bad, 0)
    assert verdict.action == "halt" and "3 of 10" in verdict.reason
    good = {n: "committed" for n in members[:8]}
    assert rules.judge(plan, 1, members, good, 599).action == "wait"
    assert rules.judge(plan, 1, members, good, 600).action == "advance"
    assert rules.judge(plan, 2, members, good, 600).action == "complete"
    assert rules.judge(plan, 0, [], {}, 0).action == "advance"  # no pilot nodes: nothing to wait for


def test_a_node_gets_its_release_in_its_stage_and_fetches_files_with_range(central, release_kit):
    _publish(central, release_kit)
    pilot = central.register("cbxc-pilot-lift", "elevator")
    stable = [central.register(f"cbxc-b{i}-lift", "elevator") for i in range(20)]
    meter = central.register("cbxc-b1-meters", "meter")
    assert _check(central, pilot, "pilot")["update"] is None  # no rollout yet
    started = _start(central, shares=[10, 100], max_failure_rate=0.2, soak_s=0)
    assert [s["name"] for s in started["stages"]] == ["pilot", "10%", "100%"]

    offer = _check(central, pilot, "pilot")["update"]
    assert offer and offer["version"] == VERSION and offer["rollout"] == started["id"]
    assert "not in rollout" in _check(central, stable[0])["reason"]
    assert _check(central, meter)["update"] is None  # another role

    manifest = json.loads(offer["manifest"])
    entry = next(f for f in manifest["files"] if f["name"].startswith("changbai_nodes-"))
    url = f"{central.url}{offer['files_url']}{entry['name']}"
    whole = requests.get(url, headers=central.node_headers(pilot), timeout=10)
    assert whole.status_code == 200 and hashlib.sha256(whole.content).hexdigest() == entry["sha256"]
    headers = central.node_headers(pilot) | {"Range": "bytes=1000-"}
    rest = requests.get(url, headers=headers, timeout=10)
    assert rest.status_code == 206 and rest.content == whole.content[1000:]
    assert requests.get(url, timeout=10).status_code == 401
    assert (
        requests.get(
            url.replace(entry["name"], "..%2Fmanifest.json"), headers=central.node_headers(pilot), timeout=10
        ).status_code
        == 404
    )

    _report(central, pilot, started["id"], "committed")
    view = central.get(f"/rollouts/{started['id']}")
    assert view["stage"] == 1 and view["stages"][0]["succeeded"] == 1
    offered = [t for t in stable if _check(central, t)["update"]]
    assert len(offered) == 2  # ceil(10 % of 20)


def test_a_failing_first_stage_halts_the_rollout_and_nobody_else_gets_it(central, release_kit):
    _publish(central, release_kit)
    tokens = {f"cbxc-b{i}-lift": central.register(f"cbxc-b{i}-lift", "elevator") for i in range(10)}
    started = _start(central, shares=[20, 100], max_failure_rate=0.4, soak_s=0)
    first = [n for n, t in tokens.items() if _check(central, t)["update"]]
    assert len(first) == 2  # no pilots: stage 0 passes at once, stage 1 is 20 % of 10
    for node in first:
        _report(central, tokens[node], started["id"], "rolled_back", "no healthy heartbeat within 150 s")
    view = central.get(f"/rollouts/{started['id']}")
    assert view["state"] == "halted" and "1 of 2 nodes failed (50% > limit 40%)" in view["reason"]
    assert all(_check(central, t)["update"] is None for n, t in tokens.items() if n not in first)
    assert "halted" in [e["action"] for e in view["timeline"]]
    nodes = {n["node_id"]: n for n in central.get("/updates/nodes")["nodes"]}
    assert nodes[first[0]]["update_state"] == "rolled_back"

    answer = requests.post(
        f"{central.url}/api/v1/rollouts/{started['id']}/resume", headers=central.operator_headers, timeout=10
    )
    assert answer.status_code == 200 and answer.json()["state"] == "halted"  # judged afresh: still failing
    answer = requests.post(
        f"{central.url}/api/v1/rollouts/{started['id']}/abort", headers=central.operator_headers, timeout=10
    )
    assert answer.json()["state"] == "aborted"
    token = next(iter(tokens.values()))
    assert _check(central, token, force=True)["update"] is None


def test_only_operators_start_rollouts_and_only_published_releases(central, release_kit):
    token = central.register("cbxc-b1-lift", "elevator")
    body = {"role": "elevator", "version": VERSION}
    refused = requests.post(
        f"{central.url}/api/v1/rollouts", json=body, headers=central.node_headers(token), timeout=10
    )
    assert refused.status_code == 403
    missing = requests.post(f"{central.url}/api/v1/rollouts", json=body, headers=central.operator_headers, timeout=10)
    assert missing.status_code == 404 and "central release add" in missing.json()["message"]
    page = requests.get(f"{central.url}/operator/updates", timeout=10)
    assert page.status_code == 200 and "Software updates" in page.text


def test_a_tampered_bundle_is_not_published(central, release_kit, tmp_path, capsys):
    data = bytearray(release_kit.bundle(VERSION).read_bytes())
    data[-20000] ^= 1  # inside the last file
    bad = tmp_path / "bad.bundle"
    bad.write_bytes(bytes(data))
    args = ["release", "add", str(bad), "--db", str(central.db_path), "--public-key", str(release_kit.public_key)]
    assert central_main(args) == 1
    assert "sha256" in capsys.readouterr().err
    assert central.get("/releases")["releases"] == []


def test_a_range_the_file_cannot_satisfy_gets_the_typed_refusal(central, release_kit):
    """ERROR-CONTRACT.md: every non-2xx of our central is the typed body, the file route's Range answers too
    (Starlette's FileResponse answers 416 and 400 in plain text by itself)."""
    _publish(central, release_kit)
    pilot = central.register("cbxc-pilot-lift", "elevator")
    central.register("cbxc-b1-lift", "elevator")  # a rollout with no node left to reach completes at once
    _start(central, shares=[100], max_failure_rate=0.2, soak_s=0)
    offer = _check(central, pilot, "pilot")["update"]
    entry = json.loads(offer["manifest"])["files"][0]
    url = f"{central.url}{offer['files_url']}{entry['name']}"
    cases = {f"bytes={entry['size']}-": (416, "range_not_satisfiable"), "pages=0-10": (400, "bad_request")}
    for header, (status, code) in cases.items():
        answer = requests.get(url, headers=central.node_headers(pilot) | {"Range": header}, timeout=10)
        assert answer.status_code == status, (header, answer.text)
        assert answer.headers["content-type"] == "application/json", (header, answer.headers)
        body = answer.json()
        assert body["schema"] == "changbai-error/1" and body["error"] == code, body
        assert int(answer.headers["content-length"]) == len(answer.content)
    beyond = requests.get(url, headers=central.node_headers(pilot) | {"Range": f"bytes={entry['size']}-"}, timeout=10)
    assert beyond.headers["content-range"] == f"bytes */{entry['size']}"  # RFC 9110: the size, for a resume
    documented = requests.get(f"{central.url}/openapi.json", timeout=10).json()["paths"]
    file_path = next(p for p in documented if p.endswith("/files/{name}"))
    assert {"400", "416"} <= set(documented[file_path]["get"]["responses"])


def test_a_published_releases_files_are_on_disk_before_its_row(central, release_kit, fsynced):
    """The row is durable at its commit; files written without fsync would be empty after a power cut (LazyFS,
    changbai-bench --only power_cut), so nodes would fetch empty files of a release that cannot be added again."""
    _publish(central, release_kit)
    folder = next(central.db_path.parent.rglob(VERSION))
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) > 5 and (folder / "manifest.json") in files
    assert [p for p in files if not fsynced.covers(p)] == []
    assert all(fsynced.covers(p) for p in (folder, folder / "files", folder.parent))
