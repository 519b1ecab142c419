"""The layers import only downwards (docs/architecture.md): read from every product module's source with ``ast``,
imports inside functions included, and followed transitively where a layer must not reach another at all."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "hal",
    "common",
    "elevator_node",
    "meter_node",
    "kiosk",
    "provisioning",
    "central",
    "community",
    "bench",
    "updates",
)
NODES = ("elevator_node", "meter_node", "kiosk")
# what each layer may import from the project (itself always)
ALLOWED: dict[str, set[str]] = {
    "hal": set(),
    "common": {"hal"},
    "elevator_node": {"common", "hal"},
    "meter_node": {"common", "hal"},
    "kiosk": {"common", "hal"},
    "central": {"common", "updates"},  # updates: the release bundle format it verifies and serves
    "provisioning": {"common", "hal", *NODES, "updates"},  # updates: provision update and status
    "updates": {"common"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


@cache
def imports_of(module: str) -> frozenset[str]:
    """The project modules ``module`` imports anywhere in its source (``from x import y`` counts ``x.y`` when
    that is a module, else ``x``)."""
    path = _modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in _modules():
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in PACKAGES and name != module:
                found.add(name)
    return frozenset(found)


def reach(module: str) -> set[str]:
    """Every project module ``module`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in imports_of(todo.pop()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_the_finder_sees_imports_everywhere() -> None:
    assert "common.events" in imports_of("common.alerts")
    assert "hal.gpio" in imports_of("hal.sim.lift")
    assert "common.outbox.wire" in imports_of("common.outbox.outbox")  # relative or absolute, the same
    assert "hal" not in {_layer(m) for m in reach("central.app")}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_what_it_may(layer: str) -> None:
    wrong = sorted(
        f"{module} imports {name}"
        for module in _modules()
        if _layer(module) == layer
        for name in imports_of(module)
        if _layer(name) != layer and _layer(name) not in ALLOWED[layer]
    )
    assert not wrong, "\n".join(wrong)


def test_the_central_reaches_no_hardware_and_no_node_reaches_the_central() -> None:
    wrong = [
        f"{module} reaches {name}"
        for module in _modules()
        for name in reach(module)
        if (_layer(module) == "central" and _layer(name) in ("hal", *NODES))
        or (_layer(module) in NODES and _layer(name) == "central")
    ]
    assert not wrong, "\n".join(sorted(wrong))
