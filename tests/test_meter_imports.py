"""What a meter node process loads: gpiozero only when a home has a button or door contact (memory on a Pi)."""

from __future__ import annotations

import subprocess
import sys


def test_a_meter_node_without_home_devices_does_not_load_gpiozero() -> None:
    code = "import sys, meter_node.__main__, meter_node.node; print('gpiozero' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"  # tests/test_meter_node.py runs the buttons and the door contact
