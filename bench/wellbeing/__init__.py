"""Evaluation harness for the meter node's wellbeing rules: simulated households, injected incidents, metrics.

``python -m bench.wellbeing [--quick]`` prints the result table (docs/wellbeing.md); ``bench/bench_wellbeing.py``
runs the same for the bench runner.
"""
