"""One Redis ACL user per role of a GRPO job, each with only the commands and keys it needs.

The job's own URL (``services.redis_url``, or the private server's) is the owner's: the driver
keeps it and makes, for its run's streams ``R`` (rollout) and ``S`` (scored):

- ``rollout``: ``XADD`` to ``R``, nothing else. A rollout actor cannot read, score or delete.
- ``reward``: read ``R`` through the consumer group (read, reclaim, acknowledge), append to
  ``R:dead``, look at ``R:stop``, and the commit script's keys: ``S`` and ``S:seen``. Only
  this role can write scored records; it cannot add a rollout.
- ``learner``: read ``S`` through its consumer group, append to ``S:dead``, and read ``R``'s
  depth. It cannot write a scored record.

Every role may also ``PING`` and name its connection (what redis-py sends on connecting and
for health checks). Passwords are random per job and travel to the workers as Ray call
arguments, never through a file.

ACL users live in the server's memory only: a Redis that restarts (from its append-only file)
comes back without them. ``RoleUsers.keep`` makes them again within a second, from a thread of
the driver, while the workers' clients retry their connections (a refused login counts as a
connection error in redis-py and is retried with backoff like an outage).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading

import redis

from aurora_rl.services.job_file import with_login

log = logging.getLogger(__name__)

ROLES = ("rollout", "reward", "learner")
# what redis-py sends on connecting and for health checks (the CLIENT SETINFO it also sends, Redis
# 7.2 on, is left out: redis-py ignores its refusal, and Redis 7.0 does not know the command)
CONNECT = ("+ping", "+client|setname")
GROUP_READ = ("+xgroup|create", "+xreadgroup", "+xpending", "+xack")


def _keys(pattern: str) -> str:
    """A key name as an ACL glob that matches it alone."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", pattern)


def role_rules(role: str, rollout_stream: str, scored_stream: str) -> list[str]:
    """The ACL rules of ``role`` for a job whose streams are ``rollout_stream`` and ``scored_stream``.

    Reading a stream through a consumer group changes the group, so it needs the stream's write
    permission; ``XADD`` is therefore granted only in selectors (Redis 7) naming the one stream
    each role may append to, so that reading a stream never lets a role add to it.
    """
    r, s = _keys(rollout_stream), _keys(scored_stream)
    if role == "rollout":
        return [*CONNECT, "+xadd", f"%W~{r}"]
    if role == "reward":
        # the commit script (rewards/stream_scorer.py): TIME, ZREMRANGEBYSCORE/ZADD/PEXPIRE on the
        # seen set, XADD to the scored stream, XACK on the rollout stream
        return [*CONNECT, *GROUP_READ, "+xclaim", "+xrange", "+exists", "+evalsha", "+eval", "+script|load",
                "+script|exists", "+time", "+zadd", "+zremrangebyscore", "+pexpire",
                f"~{r}", f"%R~{r}:stop", f"~{s}", f"~{s}:seen", f"(+xadd %W~{r}:dead)", f"(+xadd %W~{s})"]
    if role == "learner":
        return [*CONNECT, *GROUP_READ, "+xinfo|groups", "+xlen", "+exists", f"~{s}", f"%R~{r}",
                f"(+xadd %W~{s}:dead)"]
    raise ValueError(f"unknown Redis role {role!r}; roles: {', '.join(ROLES)}")


class RoleUsers:
    """The role users of one job. ``create`` makes them (replacing leftovers of an earlier run of the
    same name) and returns each role's URL; ``keep`` remakes them after a Redis restart; ``delete``
    removes them when the job ends."""

    def __init__(self, owner_url: str, job: str, rollout_stream: str, scored_stream: str):
        self.owner_url = owner_url
        tag = re.sub(r"[^A-Za-z0-9_.-]", "_", job)[:48]
        self.names = {role: f"aurora-{tag}-{role}" for role in ROLES}
        self.passwords = {role: secrets.token_hex(24) for role in ROLES}
        self.rules = {role: role_rules(role, rollout_stream, scored_stream) for role in ROLES}
        # one try per command: the keeper thread comes back within a second anyway
        self.client = redis.Redis.from_url(owner_url, socket_connect_timeout=2.0, socket_timeout=5.0)
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self.remade = 0  # how often the users had to be made again (a Redis restart)

    def create(self) -> dict[str, str]:
        for role in ROLES:
            self._set(role)
        return self.urls()

    def urls(self) -> dict[str, str]:
        # names and passwords need no escaping in a URL: [A-Za-z0-9_.-] and hex digits
        return {role: with_login(self.owner_url, self.names[role], self.passwords[role]) for role in ROLES}

    def _set(self, role: str) -> None:
        try:
            self.client.execute_command("ACL", "SETUSER", self.names[role], "reset", "on",
                                        f">{self.passwords[role]}", *self.rules[role])
        except redis.ResponseError as e:
            if "NOPERM" in str(e) or "no permissions" in str(e):
                raise PermissionError(
                    "services.redis_url: its user may not create ACL users (ACL SETUSER), which the job "
                    "needs to give each role only what it needs; use the server's owner (the default "
                    "user, as cluster/start_redis.sh sets it up)") from e
            raise

    def missing(self) -> list[str]:
        present = {u.decode() if isinstance(u, bytes) else u for u in self.client.execute_command("ACL", "USERS")}
        return [role for role in ROLES if self.names[role] not in present]

    def keep(self, every_s: float = 1.0) -> None:
        """Start the thread that makes missing users again (after a Redis restart)."""

        def loop():
            while not self._stop.wait(every_s):
                try:
                    missing = self.missing()
                    for role in missing:
                        self._set(role)
                    if missing:
                        self.remade += 1
                        log.warning("redis ACL users %s were gone (a Redis restart): made again",
                                    ", ".join(self.names[r] for r in missing))
                except redis.RedisError:
                    pass  # Redis is down: the workers' clients log the outage; try again in a second

        self._keeper = threading.Thread(target=loop, name="redis-acl-keeper", daemon=True)
        self._keeper.start()

    def delete(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=10)
        try:
            self.client.execute_command("ACL", "DELUSER", *self.names.values())
        except redis.RedisError as e:
            log.warning("could not delete the job's Redis ACL users (%s); the next run of the same name "
                        "replaces them", e)
        self.client.close()
