"""Redis clients that survive a Redis restart: every command retries with exponential backoff,
and says so in the log (each failed try, then the recovery), so an outage is never silent."""

from __future__ import annotations

import logging

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)


class LoggedRetry(Retry):
    """redis-py's ``Retry`` that logs every failed try and the first success after failures."""

    def __init__(self, backoff, retries: int, name: str):
        super().__init__(backoff, retries)
        self.name = name

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        failures = 0

        def logged_fail(error, *count):
            nonlocal failures
            failures += 1
            # redis-py tries once and then retries ``retries`` times, calling this after each failure
            then = "retrying with backoff" if failures <= self._retries else "giving up"
            log.warning("redis client %s: redis unavailable (%s: %s); try %d of %d failed, %s",
                        self.name, type(error).__name__, error, failures, self._retries + 1, then)
            return fail(error, *count)

        result = super().call_with_retry(do, logged_fail, is_retryable, with_failure_count)
        if failures:
            log.warning("redis client %s: redis reachable again after %d retries", self.name, failures)
        return result


def connect_redis(url: str, retries: int = 20, name: str = "client") -> redis.Redis:
    """A client for ``url`` whose commands retry on connection errors (0.05 s doubling to 5 s:
    about 70 s in all with 20 retries, time for a Redis restart that replays a long AOF)."""
    return redis.Redis.from_url(
        url,
        retry=LoggedRetry(ExponentialBackoff(cap=5.0, base=0.05), retries, name),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=10,
        socket_keepalive=True,
    )
