"""Per-key rate limiting, with the `limits` library.

A moving window per project key (by key id): at most the limit in any span of its length, so
no double burst at a fixed window's edge; a hit costs a few microseconds. Counters live in
memory per worker unless ``GREENAUDIT_RATE_LIMIT_STORAGE`` points at a shared store such as
Redis.
"""

from __future__ import annotations

import math
import time
import uuid

from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .errors import TooManyRequests

OFF = "off"


class RateLimitConfigurationError(ValueError):
    """GREENAUDIT_RATE_LIMIT or GREENAUDIT_RATE_LIMIT_STORAGE cannot be used; says which."""


class KeyRateLimiter:
    """Admits or refuses one request of a key against every configured limit."""

    def __init__(self, rate: str, storage_uri: str) -> None:
        try:
            self.limits: list[RateLimitItem] = (
                [] if rate.strip().lower() in (OFF, "") else parse_many(rate)
            )
        except ValueError:
            raise RateLimitConfigurationError(
                f"GREENAUDIT_RATE_LIMIT={rate!r} is not a rate: write it like '1000/second', "
                "'20000/minute' or '100/second;5000/hour', or 'off'"
            ) from None
        try:
            storage = storage_from_string(storage_uri)
        except (ConfigurationError, ValueError) as error:
            raise RateLimitConfigurationError(
                f"GREENAUDIT_RATE_LIMIT_STORAGE={storage_uri!r} cannot be used: {error}"
            ) from None
        self.strategy = MovingWindowRateLimiter(storage)

    def admit(self, key_id: uuid.UUID) -> None:
        """Count one request of ``key_id``; raise :class:`TooManyRequests` when over a limit."""
        for limit in self.limits:
            if not self.strategy.hit(limit, "key", key_id.hex):
                reset_at = self.strategy.get_window_stats(limit, "key", key_id.hex).reset_time
                retry_s = max(1, math.ceil(reset_at - time.time()))
                raise TooManyRequests(
                    f"this key is over its rate limit of {limit}; retry in {retry_s} s",
                    headers={"Retry-After": str(retry_s)},
                )
