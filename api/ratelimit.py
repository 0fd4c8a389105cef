"""Rate limiting, with the `limits` library: per project key, and failed sign-ins per address.

A moving window: at most the limit in any span of its length, so no double burst at a fixed
window's edge; a hit costs a few microseconds. Counters live in memory per worker unless
``GREENAUDIT_RATE_LIMIT_STORAGE`` points at a shared store such as Redis; both limiters keep
theirs there, apart by namespace.
"""

from __future__ import annotations

import math
import time
import uuid

from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from greenaudit.settings import Settings

from .errors import TooManyRequests

OFF = "off"


class RateLimitConfigurationError(ValueError):
    """A rate or storage setting cannot be used; says which."""


def _limits(variable: str, rate: str) -> list[RateLimitItem]:
    try:
        return [] if rate.strip().lower() in (OFF, "") else parse_many(rate)
    except ValueError:
        raise RateLimitConfigurationError(
            f"{variable}={rate!r} is not a rate: write it like '1000/second', "
            "'20000/minute' or '100/second;5000/hour', or 'off'"
        ) from None


def _moving_window(storage_uri: str) -> MovingWindowRateLimiter:
    try:
        storage = storage_from_string(storage_uri)
    except (ConfigurationError, ValueError) as error:
        raise RateLimitConfigurationError(
            f"GREENAUDIT_RATE_LIMIT_STORAGE={storage_uri!r} cannot be used: {error}"
        ) from None
    return MovingWindowRateLimiter(storage)


def _retry_s(strategy: MovingWindowRateLimiter, limit: RateLimitItem, *key: str) -> int:
    reset_at = strategy.get_window_stats(limit, *key).reset_time
    return max(1, math.ceil(reset_at - time.time()))


class KeyRateLimiter:
    """Admits or refuses one request of a key against every configured limit."""

    def __init__(self, rate: str, storage_uri: str) -> None:
        self.limits = _limits("GREENAUDIT_RATE_LIMIT", rate)
        self.strategy = _moving_window(storage_uri)

    def admit(self, key_id: uuid.UUID) -> None:
        """Count one request of ``key_id``; raise :class:`TooManyRequests` when over a limit."""
        for limit in self.limits:
            if not self.strategy.hit(limit, "key", key_id.hex):
                retry_s = _retry_s(self.strategy, limit, "key", key_id.hex)
                raise TooManyRequests(
                    f"this key is over its rate limit of {limit}; retry in {retry_s} s",
                    headers={"Retry-After": str(retry_s)},
                )


class FailedAuthThrottle:
    """Failed authentications per client address: past the limit, the address must wait.

    Only failures are counted (an unknown, malformed or revoked key, a wrong admin token, a
    sign-in that does not hold), so an address that authenticates correctly is never slowed
    by its own successes. Once an address is over the limit, every credential it presents is
    refused with 429 before being checked, the right ones too: otherwise the throttle would
    still answer each guess. The wait ends when its oldest failure leaves the window.
    """

    def __init__(self, rate: str, storage_uri: str) -> None:
        self.limits = _limits("GREENAUDIT_AUTH_FAILURE_LIMIT", rate)
        self.strategy = _moving_window(storage_uri)

    def check(self, address: str) -> None:
        """Raise :class:`TooManyRequests` when ``address`` has no failure left in a window."""
        for limit in self.limits:
            if not self.strategy.test(limit, "auth-failure", address):
                retry_s = _retry_s(self.strategy, limit, "auth-failure", address)
                raise TooManyRequests(
                    f"too many failed authentications from this address (the limit is {limit}, "
                    f"GREENAUDIT_AUTH_FAILURE_LIMIT); retry in {retry_s} s",
                    headers={"Retry-After": str(retry_s)},
                )

    def failed(self, address: str) -> None:
        """Count one failed authentication of ``address``."""
        for limit in self.limits:
            self.strategy.hit(limit, "auth-failure", address)


def check_rate_settings(settings: Settings) -> None:
    """Raise :class:`RateLimitConfigurationError` when a rate-limit setting cannot be used."""
    KeyRateLimiter(settings.rate_limit, settings.rate_limit_storage)
    FailedAuthThrottle(settings.auth_failure_limit, settings.rate_limit_storage)
