"""Street kiosk: one press hails a taxi to the kiosk's pickup point."""
