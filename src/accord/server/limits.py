"""Overload protection: per-account send rates and per-device queue limits.

A sender over its rate, or sending to a device whose queue is full, gets 429 with Retry-After
(`rate_limited`, `queue_full`) instead of a failure later on: nothing is accepted that could not
be delivered, and nothing accepted is ever dropped.

The rate is a token bucket per account (`rate_per_s` sustained, `burst` at once). With one
process it lives in memory; with several (`--redis`), in Redis, updated atomically by one
script, so the limit holds across processes. Both take the time from the limiter's clock (the
Redis script is handed it).

Reviewer logins are limited separately (`LoginThrottle`, `PasswordWorkPool`): failures per name
and per client address lock the name or address out for a growing time, and Argon2id runs in a
small fixed pool, so a flood of logins is refused rather than held in memory.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import anyio
from anyio import to_thread

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import LoginBusy, LoginThrottled, RateLimited

DEFAULT_SEND_RATE_PER_S = 20.0
DEFAULT_SEND_BURST = 200
DEFAULT_MAX_QUEUE = 10_000
MAX_TRACKED_ACCOUNTS = 100_000
# New reports an account may file: a burst, then one every 30 s (duplicates are not new).
DEFAULT_REPORT_RATE_PER_S = 1 / 30
DEFAULT_REPORT_BURST = 20

T = TypeVar("T")

# KEYS[1] bucket; ARGV: rate per s, burst, now (ms). Returns ms to wait (0 = allowed).
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 't', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class SendLimiter:
    def __init__(
        self,
        *,
        rate_per_s: float = DEFAULT_SEND_RATE_PER_S,
        burst: int = DEFAULT_SEND_BURST,
        redis_url: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        key_prefix: str = "accord:send-rate:",
        refusal: str = "sending too fast; wait and retry",
    ) -> None:
        self.rate_per_s = rate_per_s
        self.key_prefix = key_prefix
        self.refusal = refusal
        self.clock = clock
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._redis = None
        if redis_url:
            import redis.asyncio

            self._redis = redis.asyncio.Redis.from_url(
                redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
            )
            self._script = self._redis.register_script(_BUCKET_LUA)

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    async def check(self, account: str) -> None:
        """Take one token for `account` or raise RateLimited with the wait in whole seconds."""
        if not self.enabled:
            return
        if self._redis is not None:
            import redis

            try:
                wait_ms = int(
                    await self._script(
                        keys=[f"{self.key_prefix}{account}"],
                        args=[self.rate_per_s, self.burst, now_ms(self.clock)],
                    )
                )
            except redis.RedisError:
                wait_ms = self._take_local(account)  # Redis down: limit per process
        else:
            wait_ms = self._take_local(account)
        if wait_ms > 0:
            raise RateLimited(self.refusal, retry_after_s=max(1, math.ceil(wait_ms / 1000)))

    def _take_local(self, account: str) -> int:
        now = self.clock.monotonic()
        with self._lock:
            tokens, ts = self._buckets.pop(account, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - ts) * self.rate_per_s)
            wait_ms = 0
            if tokens >= 1:
                tokens -= 1
            else:
                wait_ms = math.ceil((1 - tokens) * 1000 / self.rate_per_s)
            self._buckets[account] = (tokens, now)
            while len(self._buckets) > MAX_TRACKED_ACCOUNTS:
                self._buckets.popitem(last=False)
        return wait_ms

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


# --- reviewer logins (docs/console.md, "Limits") -----------------------------------------------

LOGIN_FREE_FAILURES_PER_NAME = 5
LOGIN_FREE_FAILURES_PER_ADDRESS = 20
LOGIN_LOCKOUT_BASE_S = 30.0
LOGIN_LOCKOUT_MAX_S = 3600.0
LOGIN_FAILURE_MEMORY_S = 24 * 3600.0
MAX_TRACKED_LOGIN_KEYS = 100_000
PASSWORD_WORKERS = 2
PASSWORD_QUEUE = 6


class LoginThrottle:
    """Failed logins counted per reviewer name and per client address, in memory.

    A key's first `free` failures cost nothing; each failure after that locks the key for
    `LOGIN_LOCKOUT_BASE_S`, doubled per further failure up to `LOGIN_LOCKOUT_MAX_S`. A key
    with no failure for `LOGIN_FAILURE_MEMORY_S` starts again; a successful login clears the
    name (not the address). Time is the clock's monotonic reading.
    """

    def __init__(
        self,
        *,
        free_per_name: int = LOGIN_FREE_FAILURES_PER_NAME,
        free_per_address: int = LOGIN_FREE_FAILURES_PER_ADDRESS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.free_per_name = free_per_name
        self.free_per_address = free_per_address
        self.clock = clock
        # key -> (failures, last failure, locked until)
        self._keys: OrderedDict[str, tuple[int, float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _keys_of(name: str, address: str) -> list[tuple[str, str]]:
        return [(f"name:{name}", "name"), (f"addr:{address}", "address")]

    def _free(self, kind: str) -> int:
        return self.free_per_name if kind == "name" else self.free_per_address

    def check(self, name: str, address: str) -> None:
        """Raise LoginThrottled (with the wait) if the name or the address is locked out."""
        now = self.clock.monotonic()
        wait = 0.0
        with self._lock:
            for key, _kind in self._keys_of(name, address):
                state = self._keys.get(key)
                if state is not None:
                    wait = max(wait, state[2] - now)
        if wait > 0:
            raise LoginThrottled(retry_after_s=max(1, math.ceil(wait)))

    def record_failure(self, name: str, address: str) -> None:
        now = self.clock.monotonic()
        with self._lock:
            for key, kind in self._keys_of(name, address):
                failures, last, until = self._keys.pop(key, (0, now, 0.0))
                if now - last > LOGIN_FAILURE_MEMORY_S:
                    failures = 0
                failures += 1
                over = failures - self._free(kind)
                if over > 0:
                    lockout = min(LOGIN_LOCKOUT_MAX_S, LOGIN_LOCKOUT_BASE_S * 2 ** (over - 1))
                    until = max(until, now + lockout)
                self._keys[key] = (failures, now, until)
            while len(self._keys) > MAX_TRACKED_LOGIN_KEYS:
                self._keys.popitem(last=False)

    def record_success(self, name: str) -> None:
        with self._lock:
            self._keys.pop(f"name:{name}", None)


class PasswordWorkPool:
    """At most `workers` Argon2id evaluations at once and `queue` waiting; beyond that a login
    is refused (LoginBusy) instead of holding another 64 MiB."""

    def __init__(self, *, workers: int = PASSWORD_WORKERS, queue: int = PASSWORD_QUEUE) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self._admitted = 0
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(workers)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        with self._lock:
            if self._admitted >= self.capacity:
                raise LoginBusy()
            self._admitted += 1
        try:
            return await to_thread.run_sync(fn, *args, limiter=self._limiter)
        finally:
            with self._lock:
                self._admitted -= 1


def report_limiter(*, clock: Clock = SYSTEM_CLOCK, redis_url: str | None = None) -> SendLimiter:
    """The per-account limit on new reports (a token bucket, shared through Redis if given)."""
    return SendLimiter(
        rate_per_s=DEFAULT_REPORT_RATE_PER_S,
        burst=DEFAULT_REPORT_BURST,
        redis_url=redis_url,
        clock=clock,
        key_prefix="accord:report-rate:",
        refusal="filing reports too fast; wait and retry",
    )
