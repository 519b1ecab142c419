"""The simulated community: central, lift, meter and kiosk on simulated hardware with a fast clock."""
