"""Software updates for the fleet: signed release bundles, and the node's updater (install beside, switch, roll back)."""
