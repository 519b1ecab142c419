"""Shared pytest set-up: fixtures live in tests/fixtures/ as plugins, one module per real part."""

pytest_plugins = [
    "tests.fixtures.gpio",
    "tests.fixtures.serial",
    "tests.fixtures.central",
    "tests.fixtures.releases",
]
