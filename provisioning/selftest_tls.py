"""`provision selftest`: the central's certificate chain checked as strictly as Python 3.13 checks it
(``VERIFY_X509_STRICT``), on any Python. A site CA made without a key usage extension works on Debian 12 and is
refused by every node once they move to Debian 13; this says so at installation, not after the upgrade."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import certifi

from common.config import NodeConfig
from provisioning.checks import FAIL, PASS, Check

NAME = "TLS as Python 3.13 checks it"
NOT_VERIFIED = "not verified: "


def check_tls_strict(config: NodeConfig, timeout_s: float) -> Check | None:
    """FAIL when the central's chain passes the usual check but not the strict one; None when there is nothing to
    say here (plain HTTP, or the central unreachable or refused either way: the central's own check reports it)."""
    url = urlsplit(config.central.url)
    if url.scheme != "https" or not url.hostname:
        return None
    bundle = config.central.ca_bundle
    strict = _handshake(url.hostname, url.port or 443, bundle, timeout_s, strict=True)
    if strict is None:
        return Check(NAME, PASS, f"{url.hostname}: the chain passes the strict check")
    if strict.startswith(NOT_VERIFIED) or _handshake(url.hostname, url.port or 443, bundle, timeout_s, False):
        return None  # not a certificate the strict check refused, or one the usual check refuses too
    return Check(
        NAME,
        FAIL,
        f"{strict}: nodes on Python 3.13 (Debian 13) will refuse this central; remake the site CA and the "
        "central's certificate (docs/central.md, 'A site's own CA must be a proper one')",
    )


def _handshake(host: str, port: int, bundle: Path | None, timeout_s: float, strict: bool) -> str | None:
    """None when a TLS handshake with the central verifies against what the node uses (its bundle, else
    certifi's store, as requests does), else why not (``NOT_VERIFIED`` first when the chain was not judged)."""
    context = ssl.create_default_context(cafile=str(bundle) if bundle else certifi.where())
    if strict:
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    else:  # Python 3.13's default context is strict already: the check of Python 3.11
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message or exc)
    except OSError as exc:  # ssl.SSLError included: no verdict on the certificates
        return f"{NOT_VERIFIED}{type(exc).__name__}: {exc}"
