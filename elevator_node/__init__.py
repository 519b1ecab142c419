"""Elevator retrofit node: trapped-passenger alarm and other lift faults from door/occupancy/motion sensors."""
