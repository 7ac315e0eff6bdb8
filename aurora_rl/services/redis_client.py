"""Redis clients that survive a Redis restart: every command retries with exponential backoff."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def connect_redis(url: str, retries: int = 8) -> redis.Redis:
    """A client for ``url`` whose commands retry on connection errors (0.05 s doubling to 5 s)."""
    return redis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=5.0, base=0.05), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=10,
        socket_keepalive=True,
    )
