"""Shared by every role, no hardware: config, events, outbox, sync, alerts, the service loop."""
