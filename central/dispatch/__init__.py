"""Taxi dispatch: the central hands each kiosk ride to a provider. ``fleet`` (the simulated fleet,
``central/fleet.py``) is the default; ``http`` is any dispatcher that implements the documented contract
(docs/api.md#taxi-dispatch-contract): create, HMAC-signed status callbacks, cancel. A provider that is down,
slow or refuses gives the kiosk ``no_car`` at once (the kiosk then shows its hotline), never a hang.
"""
