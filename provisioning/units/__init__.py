"""systemd unit templates, one per role; filled in by ``provision install``."""
