"""Benchmarks that print figures; never run as unit tests."""
