"""Overload protection: per-account send rates and per-device queue limits.

A sender over its rate, or sending to a device whose queue is full, gets 429 with Retry-After
(`rate_limited`, `queue_full`) instead of a failure later on: nothing is accepted that could not
be delivered, and nothing accepted is ever dropped.

The rate is a token bucket per account (`rate_per_s` sustained, `burst` at once). With one
process it lives in memory; with several (`--redis`), in Redis, updated atomically by one
script, so the limit holds across processes. Both take the time from the limiter's clock (the
Redis script is handed it).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import RateLimited

DEFAULT_SEND_RATE_PER_S = 20.0
DEFAULT_SEND_BURST = 200
DEFAULT_MAX_QUEUE = 10_000
MAX_TRACKED_ACCOUNTS = 100_000

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
    ) -> None:
        self.rate_per_s = rate_per_s
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
                        keys=[f"accord:send-rate:{account}"],
                        args=[self.rate_per_s, self.burst, now_ms(self.clock)],
                    )
                )
            except redis.RedisError:
                wait_ms = self._take_local(account)  # Redis down: limit per process
        else:
            wait_ms = self._take_local(account)
        if wait_ms > 0:
            raise RateLimited(
                "sending too fast; wait and retry", retry_after_s=max(1, math.ceil(wait_ms / 1000))
            )

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
