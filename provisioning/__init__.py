"""The field technician's provision command and systemd unit templates."""
