"""Simulated hardware for the demo and CI: a Modbus RTU water meter on a virtual serial pair, lift sensors."""
