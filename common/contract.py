"""What the nodes and the central must agree on besides the event schema: where the API lives, what a node id and
a site id look like, the header that marks an upload carrying an alert, and how many alerts a node may ask about
at once (docs/api.md)."""

from __future__ import annotations

API_PREFIX = "/api/v1"
NODE_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,63}$"
SITE_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"
# on POST /events: "alert" when the batch carries an alert, which the central admits on slots of their own
PRIORITY_HEADER = "X-Changbai-Priority"
# GET /acknowledgements: alert ids one request may ask about (more: 422)
MAX_ASKED = 100
