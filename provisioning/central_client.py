"""Talking to the central for provision: one request helper whose failures are clear, token-free errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from common.config import NodeConfig
from common.contract import API_PREFIX
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
) -> requests.Response:
    """One request to the central with the node's TLS settings; network and TLS failures raise exit 3."""
    url = api_url(config, path)
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    verify: bool | str = str(config.central.ca_bundle) if config.central.ca_bundle else True
    timeout = (
        (min(timeout_s, config.central.connect_timeout_s), timeout_s)
        if timeout_s is not None
        else (config.central.connect_timeout_s, config.central.read_timeout_s)
    )
    try:
        # never follow a redirect: a 307/308 would post the claim key or the token to wherever it points
        response = requests.request(
            method, url, headers=headers, json=body, timeout=timeout, verify=verify, allow_redirects=False
        )
    except requests.exceptions.SSLError as exc:
        raise ProvisionError(
            EXIT_CENTRAL,
            f"TLS failure talking to {config.central.url}: {_reason(exc)}",
            [
                "is the node's clock right? (a Pi without network time believes it is 1970: certificates look "
                "not yet valid)",
                "does the central use a private CA? set central.ca_bundle in the config",
            ],
        ) from None
    except requests.exceptions.ConnectTimeout:
        raise ProvisionError(
            EXIT_CENTRAL, f"central unreachable: no answer from {config.central.url} (connect timeout)"
        ) from None
    except requests.exceptions.ReadTimeout:
        raise ProvisionError(EXIT_CENTRAL, f"central at {config.central.url} did not answer in time") from None
    except requests.exceptions.ConnectionError as exc:
        raise ProvisionError(
            EXIT_CENTRAL,
            f"central unreachable at {config.central.url}: {_reason(exc)}",
            ["check the network (ping the central, DNS, firewall) and central.url in the config"],
        ) from None
    except requests.exceptions.InvalidURL as exc:
        raise ProvisionError(EXIT_BAD_INPUT, f"central.url is not usable: {exc}") from None
    except OSError as exc:  # e.g. the CA bundle file cannot be read
        raise ProvisionError(EXIT_BAD_INPUT, f"cannot talk to the central: {exc}") from None
    if 300 <= response.status_code < 400:
        target = response.headers.get("Location", "(no Location)")
        raise ProvisionError(
            EXIT_CENTRAL,
            f"central at {config.central.url} answered HTTP {response.status_code} redirecting to {target[:200]}; "
            "not followed (the claim key and the token are only ever sent to central.url)",
            ["set central.url to the central's own address (https://..., without /api/v1)"],
        )
    return response


def _reason(exc: BaseException) -> str:
    # the innermost cause says what happened ("Connection refused", "certificate verify failed"); no secrets
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "certificate verify failed", "timed out"):
        if marker in text:
            return marker
    return text.split(": ", 1)[-1][:200] or type(exc).__name__


def answer(response: requests.Response) -> dict[str, Any]:
    """The JSON object of an answer; a non-JSON answer is a central error (exit 3)."""
    try:
        data = response.json()
    except (json.JSONDecodeError, requests.exceptions.JSONDecodeError):
        raise ProvisionError(
            EXIT_CENTRAL, f"central answered HTTP {response.status_code} without JSON (is central.url right?)"
        ) from None
    if not isinstance(data, dict):
        raise ProvisionError(EXIT_CENTRAL, f"central answered HTTP {response.status_code} with unexpected JSON")
    return data


def error_text(response: requests.Response) -> str:
    """The central's own error message (``{"error", "message", "fields"}``), for one line of output."""
    try:
        data = response.json()
    except (json.JSONDecodeError, requests.exceptions.JSONDecodeError):
        return f"HTTP {response.status_code}"
    if isinstance(data, dict):
        message = data.get("message") or data.get("detail") or data.get("error")
        fields = data.get("fields")
        text = str(message) if message else f"HTTP {response.status_code}"
        if isinstance(fields, list) and fields:
            text += f" (fields: {', '.join(str(f) for f in fields)})"
        return f"HTTP {response.status_code}: {text}"
    return f"HTTP {response.status_code}"


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


def refused(response: requests.Response) -> bool:
    return response.status_code in (401, 403)


def central_error(response: requests.Response, what: str) -> ProvisionError:
    """A ProvisionError for an unexpected answer to ``what``."""
    if refused(response):
        return ProvisionError(EXIT_PERMISSION, f"{what}: refused by the central ({error_text(response)})")
    if 400 <= response.status_code < 500:
        return ProvisionError(EXIT_BAD_INPUT, f"{what}: {error_text(response)}")
    return ProvisionError(EXIT_CENTRAL, f"{what}: central error {error_text(response)}")
