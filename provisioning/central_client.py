"""Talking to the central for provision: the one HTTP client (common/http.py) with the node's TLS settings, and
failures turned into clear, token-free errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.config import NodeConfig
from common.contract import API_PREFIX
from common.http import HttpClient, HttpFailure, HttpReply
from provisioning.errors import EXIT_BAD_INPUT, EXIT_CENTRAL, EXIT_PERMISSION, ProvisionError

API = API_PREFIX


def api_url(config: NodeConfig, path: str) -> str:
    return config.central.url.rstrip("/") + API + path


def call(
    config: NodeConfig,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> HttpReply:
    """One request to the central with the node's TLS settings; network and TLS failures raise exit 3."""
    central = config.central
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connect_s, read_s = central.connect_timeout_s, central.read_timeout_s
    if timeout_s is not None:
        connect_s, read_s = min(timeout_s, connect_s), timeout_s
    http = HttpClient(
        ca_bundle=central.ca_bundle,
        connect_timeout_s=connect_s,
        read_timeout_s=read_s,
        total_timeout_s=max(read_s, central.request_limit_s),
        max_reply_bytes=int(central.max_reply_kb * 1024),
    )
    try:
        # never follows a redirect: a 307/308 would post the claim key or the token to wherever it points
        response = http.request_json(method, api_url(config, path), body, headers=headers)
    except HttpFailure as exc:
        raise _failure(config, exc) from None
    except OSError as exc:  # e.g. the CA bundle file cannot be read
        raise ProvisionError(EXIT_BAD_INPUT, f"cannot talk to the central: {exc}") from None
    finally:
        http.close()
    if 300 <= response.status < 400:
        target = response.headers.get("Location", "(no Location)")
        raise ProvisionError(
            EXIT_CENTRAL,
            f"central at {central.url} answered HTTP {response.status} redirecting to {target[:200]}; "
            "not followed (the claim key and the token are only ever sent to central.url)",
            ["set central.url to the central's own address (https://..., without /api/v1)"],
        )
    return response


def _failure(config: NodeConfig, exc: HttpFailure) -> ProvisionError:
    url = config.central.url
    if exc.kind == "tls":
        return ProvisionError(
            EXIT_CENTRAL,
            f"TLS failure talking to {url}: {_reason(exc.reason)}",
            [
                "is the node's clock right? (a Pi without network time believes it is 1970: certificates look "
                "not yet valid)",
                "does the central use a private CA? set central.ca_bundle in the config",
            ],
        )
    if exc.name == "ConnectTimeout":
        return ProvisionError(EXIT_CENTRAL, f"central unreachable: no answer from {url} (connect timeout)")
    if exc.kind == "timeout":
        return ProvisionError(EXIT_CENTRAL, f"central at {url} did not answer in time")
    if exc.kind == "connection":
        return ProvisionError(
            EXIT_CENTRAL,
            f"central unreachable at {url}: {_reason(exc.reason)}",
            ["check the network (ping the central, DNS, firewall) and central.url in the config"],
        )
    if exc.kind == "invalid_url":
        return ProvisionError(EXIT_BAD_INPUT, f"central.url is not usable: {exc.reason}")
    return ProvisionError(EXIT_BAD_INPUT, f"cannot talk to the central: {exc.text}")


def _reason(text: str) -> str:
    # the few words that say what happened ("Connection refused", "certificate verify failed"); no secrets
    for marker in ("Connection refused", "Name or service not known", "certificate verify failed", "timed out"):
        if marker in text:
            return marker
    return text.split(": ", 1)[-1][:200] or "unknown"


def answer(response: HttpReply) -> dict[str, Any]:
    """The JSON object of an answer; a non-JSON answer is a central error (exit 3)."""
    try:
        data = response.json()
    except ValueError:
        raise ProvisionError(
            EXIT_CENTRAL, f"central answered HTTP {response.status} without JSON (is central.url right?)"
        ) from None
    if not isinstance(data, dict):
        raise ProvisionError(EXIT_CENTRAL, f"central answered HTTP {response.status} with unexpected JSON")
    return data


def error_text(response: HttpReply) -> str:
    """The central's own error message (``{"error", "message", "fields"}``), for one line of output."""
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status}"
    if isinstance(data, dict):
        message = data.get("message") or data.get("detail") or data.get("error")
        fields = data.get("fields")
        text = str(message) if message else f"HTTP {response.status}"
        if isinstance(fields, list) and fields:
            text += f" (fields: {', '.join(str(f) for f in fields)})"
        return f"HTTP {response.status}: {text}"
    return f"HTTP {response.status}"


def read_token(config: NodeConfig) -> str:
    """The node's token from central.token_file; missing or unreadable is a clear error."""
    path = Path(config.central.token_file)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ProvisionError(
            EXIT_BAD_INPUT, f"no token at {path}: register first (provision register --claim-key-file FILE)"
        ) from None
    except PermissionError:
        raise ProvisionError(EXIT_PERMISSION, f"cannot read the token at {path} (run as root?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisionError(EXIT_BAD_INPUT, f"cannot read the token at {path}: {exc}") from None
    if not token:
        raise ProvisionError(EXIT_BAD_INPUT, f"the token file {path} is empty: register again")
    return token


def refused(response: HttpReply) -> bool:
    return response.status in (401, 403)


def central_error(response: HttpReply, what: str) -> ProvisionError:
    """A ProvisionError for an unexpected answer to ``what``."""
    if refused(response):
        return ProvisionError(EXIT_PERMISSION, f"{what}: refused by the central ({error_text(response)})")
    if 400 <= response.status < 500:
        return ProvisionError(EXIT_BAD_INPUT, f"{what}: {error_text(response)}")
    return ProvisionError(EXIT_CENTRAL, f"{what}: central error {error_text(response)}")
