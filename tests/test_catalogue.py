"""The event catalogue (common/catalogue.py) is the one place that says what a node sends: every kind product
code emits is in it, the central's wire model has exactly the Event's fields with the catalogue's values,
docs/api.md's table is generated from it and its example is a real event."""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path

import pytest

from central.bodies import WIRE_EVENT, WireEvent
from common import catalogue, catalogue_doc
from common.catalogue import ALERT_FIELDS, CATALOGUE, RECIPIENTS
from common.event_fields import FIELDS
from common.events import WIRE_FIELDS, Detection, Event, make_event
from kiosk.ride_events import CENTRAL_STATUSES
from tests.fixtures.central import wire_event

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "api.md"
PRODUCT = ("common", "elevator_node", "meter_node", "kiosk", "provisioning")
# calls that name an event's kind: Detection(kind, ...), make_event(node_id, kind, ...), a kiosk effect, a note
KIND_CALLS = {"Detection": 0, "Report": 0, "RaiseAlert": 0, "make_event": 1, "note": 0, "meter_detection": 1}


def test_docs_api_md_holds_the_current_catalogue() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    assert catalogue_doc.replace_in(text) == text, "run: python -m common.catalogue_doc --write docs/api.md"


def test_the_central_reads_exactly_the_wire_fields_of_an_event() -> None:
    assert set(WireEvent.model_fields) == set(WIRE_FIELDS)
    made = make_event("cbxc-b7-u2-lift1", "entrapment", wall_time=1.0, clock_synced=True, severity="urgent")
    assert set(made.with_seq(7).to_wire()) == set(WIRE_FIELDS)
    assert WIRE_EVENT.validate_python(made.with_seq(7).to_wire()).model_dump() == made.with_seq(7).to_wire()


def test_every_kind_names_its_fields_in_the_glossary() -> None:
    used = {name for kind in CATALOGUE.values() for name in kind.payload} | set(ALERT_FIELDS)
    assert used <= set(FIELDS), f"fields without a meaning: {sorted(used - set(FIELDS))}"
    assert set(FIELDS) <= used, f"meanings no kind carries: {sorted(set(FIELDS) - used)}"
    for kind in CATALOGUE.values():
        assert set(kind.recipients) <= set(RECIPIENTS) and kind.severities, kind.name
        assert re.match(catalogue.KIND_PATTERN, kind.name), kind.name


def _string_constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def emitted_kinds() -> dict[str, str]:
    """Every kind product code names where it makes an event or a detection: kind -> where."""
    found: dict[str, str] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            constants = _string_constants(tree)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name not in KIND_CALLS:
                    continue
                args = [kw.value for kw in node.keywords if kw.arg == "kind"] or node.args[KIND_CALLS[name] :][:1]
                for arg in args:
                    value = arg.value if isinstance(arg, ast.Constant) else constants.get(getattr(arg, "id", ""))
                    if isinstance(value, str):
                        found.setdefault(value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_kind_product_code_sends_is_in_the_catalogue() -> None:
    kinds = emitted_kinds()
    assert {"meter_offline", "inspection_mode", "wellbeing_fault", "help_requested", "selftest"} <= set(kinds)
    missing = {kind: where for kind, where in kinds.items() if kind not in CATALOGUE}
    assert not missing, f"kinds sent but not in common/catalogue.py: {missing}"
    # the ride machine reports the central's closing statuses as ride_<status>
    closing = {f"ride_{status}" for status in CENTRAL_STATUSES} - {"ride_searching", "ride_requesting"}
    assert closing <= set(CATALOGUE), sorted(closing - set(CATALOGUE))


def test_the_lift_detector_and_the_wellbeing_rules_send_catalogued_kinds() -> None:
    from elevator_node.detector import KINDS as LIFT_KINDS
    from meter_node.wellbeing import KINDS as WELLBEING_KINDS
    from meter_node.wellbeing import PROFILE_KIND

    assert set(LIFT_KINDS) | set(WELLBEING_KINDS) | {PROFILE_KIND} <= set(CATALOGUE)
    assert {CATALOGUE[k].sender for k in LIFT_KINDS} == {"elevator"}


def test_a_mismatch_raises_in_the_tests_and_is_only_logged_on_a_node(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(catalogue.CatalogueError, match=r"payload fields \['door_closed_s'\]"):
        make_event(
            "n-1", "entrapment", wall_time=1.0, clock_synced=True, severity="urgent", payload={"door_closed_s": 1}
        )
    monkeypatch.setattr(catalogue, "STRICT", False)
    with caplog.at_level(logging.WARNING, logger="common.catalogue"):
        event = make_event("n-1", "entrapment", wall_time=1.0, clock_synced=True, severity="info", state="raised")
    assert event.severity == "info"  # never refused
    assert "entrapment: severity 'info'" in caplog.text
    assert catalogue.problems("entrapment", "info", "cleared", {"seconds_trapped": 91.0, "key": ""}) == []
    assert catalogue.problems("a_kind_of_a_newer_node", "info", "observed", {"x": 1}) == []


def test_the_alert_book_sends_to_the_catalogues_recipients(tmp_path: Path) -> None:
    from common.alerts import AlertBook
    from common.clock import ManualClock
    from common.config import OutboxSection
    from common.outbox import Outbox

    clock = ManualClock()
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxSection(), clock, node_id="n-1")
    try:
        book = AlertBook("n-1", clock, outbox)
        raised = book.record(Detection("entrapment", "raised", 0.0, "urgent", {"seconds_trapped": 90.0}))
        help_asked = book.record(Detection("help_requested", "raised", 0.0, "warning", {"source": "button"}))
        told = book.record(Detection("inactivity", "raised", 0.0, "warning", {}), ("family", "social_worker"))
    finally:
        outbox.close()
    assert raised.recipients == ("property_management", "maintenance")
    assert help_asked.recipients == ("property_management",)
    assert told.recipients == ("family", "social_worker")  # a household's own list wins


def _doc_example() -> dict:
    text = API_DOC.read_text(encoding="utf-8")
    section = text[text.index("## POST /events") :]
    block = section[section.index("```json") + len("```json") : section.index("```", section.index("```json") + 7)]
    return json.loads(block)


def test_the_api_docs_example_is_an_event_a_lift_sends() -> None:
    example = _doc_example()["events"][0]
    event = Event.from_wire(example)
    assert WIRE_EVENT.validate_python(example).model_dump() == example
    assert catalogue.problems(event.kind, event.severity, event.state, event.payload) == []
    assert event.recipients == CATALOGUE[event.kind].recipients


def test_the_central_stores_a_mismatch_and_names_it_in_its_log(central, caplog: pytest.LogCaptureFixture) -> None:
    token = central.register("cbxc-b7-u2-lift1", "elevator")
    odd = wire_event("cbxc-b7-u2-lift1", 1, kind="entrapment", severity="urgent", payload={"door_closed_s": 90.0})
    with caplog.at_level(logging.WARNING, logger="central"):
        reply = central.post_events(token, [odd])
    assert reply.json()["accepted"] == [odd["id"]]
    assert "event catalogue: entrapment: payload fields ['door_closed_s']" in caplog.text
