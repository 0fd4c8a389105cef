"""Signing and posting alerts to a project's webhook.

Each POST carries the alert as JSON and three headers:

- ``X-Greenaudit-Alert``: the alert's id. A retry repeats it, so a receiver can drop repeats.
- ``X-Greenaudit-Timestamp``: Unix seconds when this attempt was signed.
- ``X-Greenaudit-Signature``: ``sha256=`` and the hex HMAC-SHA256, keyed with the webhook's
  secret, of ``"{timestamp}.{body}"``. Signing the time with the body lets a receiver refuse an
  old request replayed at it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Greenaudit-Signature"
TIMESTAMP_HEADER = "X-Greenaudit-Timestamp"
ALERT_HEADER = "X-Greenaudit-Alert"
TIMEOUT_S = 5.0  # to connect, and between any two reads or writes
DEADLINE_S = 15.0  # for one whole post
MAX_PORT = 65535


class UnsafeWebhook(ValueError):
    """The URL is not one the service should post to."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``"{timestamp}." + body``).

    Example:
        >>> signature("s3cret-for-docs!", 1700000000, b'{"a":1}')[:15]
        'sha256=7439b1eb'
    """
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_url(url: str, allow_private: bool) -> None:
    """Refuse what is not http(s), and, unless allowed, hosts on private or local networks.

    A webhook makes the service send requests on a key holder's behalf; without this check a
    project key could aim them at the service's own network (server-side request forgery).
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise UnsafeWebhook(f"not a URL: {error}") from None
    try:
        host = parsed.host  # decodes "xn--" labels, which can fail
        # Connecting encodes the host like this; an empty label or one over 63 characters
        # would fail there, at every retry.
        host.encode("idna")
    except UnicodeError as error:
        raise UnsafeWebhook(f"not a valid host name: {error}") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise UnsafeWebhook("the webhook URL must be http:// or https:// with a host")
    if parsed.port is not None and not 1 <= parsed.port <= MAX_PORT:
        raise UnsafeWebhook(f"port {parsed.port} is not a TCP port: give one of 1 to {MAX_PORT}")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, parsed.port or 443, type=socket.SOCK_STREAM)
    except OSError as error:
        raise UnsafeWebhook(f"cannot resolve {host}: {error}") from None
    for info in infos:
        for address in _reached(ipaddress.ip_address(info[4][0])):
            if not address.is_global:
                raise UnsafeWebhook(
                    f"{host} resolves to {address}, a private or local address; the "
                    "service posts there only when GREENAUDIT_WEBHOOK_ALLOW_PRIVATE=true"
                )


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _reached(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The address, and the IPv4 address an IPv6 one leads to where it embeds one.

    ``is_global`` judges an IPv6 address by its own prefix, yet a NAT64, 6to4 or mapped address
    reaches the IPv4 address inside it: ``64:ff9b::a9fe:a9fe`` is 169.254.169.254.

    Example:
        >>> [str(a) for a in _reached(ipaddress.ip_address("64:ff9b::7f00:1"))]
        ['64:ff9b::7f00:1', '127.0.0.1']
    """
    reached: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in NAT64 or int(address) >> 32 == 0:  # NAT64, or IPv4-compatible ::a.b.c.d
            reached.append(low32)
        for embedded in (address.ipv4_mapped, address.sixtofour):
            if embedded is not None:
                reached.append(embedded)
        if address.teredo is not None:
            reached.extend(address.teredo)
    return reached


def post_alert(url: str, secret: str, alert_id: str, payload: dict[str, Any]) -> None:
    """Post one signed alert, within ``DEADLINE_S`` in all.

    Raises :class:`httpx.HTTPError` when it was not accepted (2xx), and :class:`TimeoutError`
    when the whole exchange took longer than ``DEADLINE_S``: a per-read timeout alone lets a
    receiver that trickles its answer hold the delivery pass, and every project's alerts behind
    it, for as long as it likes. The post runs on its own event loop so that it can be cancelled.
    """
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        ALERT_HEADER: alert_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }

    async def post() -> None:
        async with (
            asyncio.timeout(DEADLINE_S),
            httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT_S) as client,
        ):
            response = await client.post(url, content=body, headers=headers)
        response.raise_for_status()

    asyncio.run(post())
