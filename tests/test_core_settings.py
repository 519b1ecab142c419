"""Every pure core takes its frozen config section itself as its settings (no second class with its own
defaults), and reads only settings the section has: renaming a config field breaks this test (and the type
check), never silently keeps an old default."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import textwrap
import typing

import pytest

from common.config import ROLE_SECTIONS

# (module, core class): the pure cores that decide (the lift rules, the ride machine, the wellbeing rules)
PURE_CORES = [
    ("elevator_node.detector", "ElevatorDetector"),
    ("kiosk.ride", "RideMachine"),
    ("meter_node.wellbeing", "WellbeingMonitor"),
]


def _section_classes() -> set[type]:
    """Every dataclass reachable from the role sections: the classes a TOML file is read into."""
    found: set[type] = set()

    def walk(cls: type) -> None:
        if cls in found:
            return
        found.add(cls)
        for hint in typing.get_type_hints(cls).values():
            for arg in (hint, *typing.get_args(hint)):
                for inner in (arg, *typing.get_args(arg)):
                    if dataclasses.is_dataclass(inner) and isinstance(inner, type):
                        walk(inner)

    for target in ROLE_SECTIONS.values():
        module, _, name = target.partition(":")
        walk(getattr(importlib.import_module(module), name))
    return found


SECTIONS = _section_classes()


def _settings_parameter(core: type) -> tuple[str, type]:
    """The constructor parameter whose type is a config section, and that class."""
    hints = typing.get_type_hints(vars(core)["__init__"])
    for name, hint in hints.items():
        for candidate in (hint, *typing.get_args(hint)):
            if candidate in SECTIONS:
                return name, candidate
    raise AssertionError(f"{core.__name__}.__init__ takes no config section: its settings are a copy ({hints})")


def _settings_attribute(core: type, parameter: str) -> str:
    """The attribute ``__init__`` keeps the parameter in (``self.settings = settings or ...``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(vars(core)["__init__"])))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            uses = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
            if isinstance(target, ast.Attribute) and parameter in uses:
                return target.attr
    raise AssertionError(f"{core.__name__}.__init__ does not keep {parameter!r} on self")


def _reads(core: type, attribute: str, parameter: str) -> dict[str, int]:
    """Every attribute read off the settings in the core's class: ``self.<attribute>.x``, the parameter, and
    local aliases (``st = self.<attribute>``, ``s, st = self._s, self.<attribute>``); name -> first line."""
    source = inspect.getsource(core)
    tree = ast.parse(textwrap.dedent(source))

    def is_settings(node: ast.expr) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == attribute
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        )

    reads: dict[str, int] = {}
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        aliases = {parameter} if function.name == "__init__" else set()
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
                if isinstance(target, ast.Name) and is_settings(value):
                    aliases.add(target.id)
                if isinstance(target, ast.Name) and isinstance(value, ast.Name) and value.id in aliases:
                    aliases.add(target.id)
                if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                    for name, item in zip(target.elts, value.elts, strict=False):
                        if isinstance(name, ast.Name) and is_settings(item):
                            aliases.add(name.id)
        for node in ast.walk(function):
            if not isinstance(node, ast.Attribute):
                continue
            holder = node.value
            if is_settings(holder) or (isinstance(holder, ast.Name) and holder.id in aliases):
                reads.setdefault(node.attr, node.lineno)
    return reads


@pytest.mark.parametrize(("module", "name"), PURE_CORES)
def test_a_pure_core_takes_its_config_section_itself(module: str, name: str) -> None:
    core = getattr(importlib.import_module(module), name)
    parameter, section = _settings_parameter(core)
    attribute = _settings_attribute(core, parameter)
    reads = _reads(core, attribute, parameter)
    assert reads, f"{name} reads nothing off self.{attribute}: the test cannot see its settings"
    known = {f.name for f in dataclasses.fields(section)} | {
        n for n, v in vars(section).items() if isinstance(v, property) or inspect.isfunction(v)
    }
    missing = {attr: line for attr, line in reads.items() if attr not in known}
    assert not missing, f"{name} reads settings that {section.__name__} does not have: {missing}"


def test_the_finder_sees_a_renamed_setting() -> None:
    """The check above must fail for a core reading a name its section lacks."""

    @dataclasses.dataclass(frozen=True)
    class Section:
        entrapment_s: float = 90.0

    class Core:
        def __init__(self, settings: Section) -> None:
            self.settings = settings

        def rule(self) -> float:
            st = self.settings
            return st.entrapment_seconds + self.settings.entrapment_s  # type: ignore[attr-defined]  # the rename

    reads = _reads(Core, _settings_attribute(Core, "settings"), "settings")
    assert set(reads) == {"entrapment_seconds", "entrapment_s"}
