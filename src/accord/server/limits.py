"""Overload protection: per-account send rates and per-device queue limits; limits on new
accounts, link requests, reports and reviewer logins.

A sender over its rate, or sending to a device whose queue is full, gets 429 with Retry-After
(`rate_limited`, `queue_full`) instead of a failure later on: nothing is accepted that could not
be delivered, and nothing accepted is ever dropped.

A rate is a token bucket per key (`rate_per_s` sustained, `burst` at once). Where a bucket lives
is a `Counters`: in memory (`MemoryCounters`, one process), in the database (`SqlCounters`: the
count holds across processes and restarts), or, with `--redis`, in Redis, updated atomically by
one script. Sends are counted in memory or Redis (they are many); account creation and link
requests per client address, reports per account and failed reviewer logins are counted in the
database, or reports in Redis when the server has it. All take the time from the limiter's clock
(the Redis script is handed it).

Reviewer logins are limited separately (`LoginThrottle`, `PasswordWorkPool`): failures per name
and per client address lock the name or address out for a growing time, and Argon2id runs in a
small fixed pool, so a flood of logins is refused rather than held in memory.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, TypeAlias, TypeVar

import anyio
from anyio import to_thread
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import LoginBusy, LoginThrottled, RateLimited
from accord.storage.db import Database
from accord.storage.schema import limit_counters

DEFAULT_SEND_RATE_PER_S = 20.0
DEFAULT_SEND_BURST = 200
DEFAULT_MAX_QUEUE = 10_000
MAX_TRACKED_ACCOUNTS = 100_000
# New reports an account may file: a burst, then one every 30 s (duplicates are not new).
DEFAULT_REPORT_RATE_PER_S = 1 / 30
DEFAULT_REPORT_BURST = 20

# Accounts created and device links requested per client address: a burst, then one a minute.
DEFAULT_ACCOUNT_RATE_PER_S = 1 / 60
DEFAULT_ACCOUNT_BURST = 10
MAX_COUNTER_KEY_CHARS = 200
COUNTER_INSERT_ATTEMPTS = 3

T = TypeVar("T")

# What a counter holds: three numbers, read by the limit that owns the key (a bucket: tokens and
# when they were counted; a login key: failures, the last failure, locked until).
CounterState: TypeAlias = tuple[float, float, float]
CounterStep: TypeAlias = Callable[[CounterState | None, float], tuple[CounterState, T]]


class Counters(Protocol):
    """Where limits keep their counts. `update` runs `step(state, now_s)` atomically for one key
    (state None: never counted, or forgotten after its `ttl_s`) and keeps what it returns."""

    def update(self, key: str, step: CounterStep[T], *, ttl_s: float) -> T: ...

    async def update_async(self, key: str, step: CounterStep[T], *, ttl_s: float) -> T: ...

    def read(self, key: str) -> CounterState | None: ...

    def forget(self, key: str) -> None: ...


class MemoryCounters:
    """Counts in this process only (tests, and sends without Redis); the oldest keys beyond
    `max_keys` are dropped."""

    def __init__(
        self, *, clock: Clock = SYSTEM_CLOCK, max_keys: int = MAX_TRACKED_ACCOUNTS
    ) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._keys: OrderedDict[str, tuple[CounterState, float]] = OrderedDict()
        self._lock = threading.Lock()

    def update(self, key: str, step: CounterStep[T], *, ttl_s: float) -> T:
        now = self.clock.time()
        with self._lock:
            held = self._keys.pop(key, None)
            state = held[0] if held is not None and held[1] > now else None
            new, result = step(state, now)
            self._keys[key] = (new, now + ttl_s)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        return result

    async def update_async(self, key: str, step: CounterStep[T], *, ttl_s: float) -> T:
        return self.update(key, step, ttl_s=ttl_s)

    def read(self, key: str) -> CounterState | None:
        with self._lock:
            held = self._keys.get(key)
        return held[0] if held is not None and held[1] > self.clock.time() else None

    def forget(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)


class SqlCounters:
    """Counts in the `limit_counters` table, so every process on the database shares them and
    a restart forgets nothing. Each update is one transaction holding the key's row (SELECT ...
    FOR UPDATE on PostgreSQL; SQLite write transactions are serialised)."""

    def __init__(self, db: Database, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.clock = clock

    def _job(self, key: str, step: CounterStep[T], ttl_s: float) -> Callable[[Connection], T]:
        key = _stored_key(key)

        def _tx(conn: Connection) -> T:
            now = self.clock.time()
            row = conn.execute(
                select(limit_counters).where(limit_counters.c.key == key).with_for_update()
            ).first()
            state = None
            if row is not None and row.expires_at > now * 1000:
                state = (float(row.a), float(row.b), float(row.c))
            new, result = step(state, now)
            values = {
                "a": new[0],
                "b": new[1],
                "c": new[2],
                "expires_at": int((now + ttl_s) * 1000),
            }
            if row is None:
                conn.execute(insert(limit_counters).values(key=key, **values))
            else:
                conn.execute(
                    update(limit_counters).where(limit_counters.c.key == key).values(**values)
                )
            return result

        return _tx

    def update(self, key: str, step: CounterStep[T], *, ttl_s: float) -> T:
        job = self._job(key, step, ttl_s)
        for attempt in range(COUNTER_INSERT_ATTEMPTS):
            try:
                return self.db.transact(job)
            except IntegrityError:  # another process counted the key first: read its row
                if attempt == COUNTER_INSERT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def update_async(self, key: str, step: CounterStep[T], *, ttl_s: float) -> T:
        job = self._job(key, step, ttl_s)
        for attempt in range(COUNTER_INSERT_ATTEMPTS):
            try:
                return await self.db.transact_async(job)
            except IntegrityError:
                if attempt == COUNTER_INSERT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def read(self, key: str) -> CounterState | None:
        key = _stored_key(key)
        with self.db.read() as conn:
            row = conn.execute(select(limit_counters).where(limit_counters.c.key == key)).first()
        if row is None or row.expires_at <= now_ms(self.clock):
            return None
        return (float(row.a), float(row.b), float(row.c))

    def forget(self, key: str) -> None:
        key = _stored_key(key)
        self.db.transact(
            lambda conn: conn.execute(delete(limit_counters).where(limit_counters.c.key == key))
        )

    def purge_expired(self) -> int:
        """Drop keys past their time to live (housekeeping); returns how many."""
        cutoff = now_ms(self.clock)

        def _tx(conn: Connection) -> int:
            return int(
                conn.execute(
                    delete(limit_counters).where(limit_counters.c.expires_at < cutoff)
                ).rowcount
            )

        return self.db.transact(_tx)


def _stored_key(key: str) -> str:
    """A key as the table holds it: a name or address too long for the column by its digest."""
    if len(key) <= MAX_COUNTER_KEY_CHARS:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _bucket_step(rate_per_s: float, burst: int) -> CounterStep[int]:
    """Take one token from a bucket (state: tokens, when counted); the result is the wait in ms
    (0: allowed). The same arithmetic as `_BUCKET_LUA`."""

    def step(state: CounterState | None, now: float) -> tuple[CounterState, int]:
        tokens, ts = (state[0], state[1]) if state is not None else (float(burst), now)
        tokens = min(float(burst), tokens + max(0.0, now - ts) * rate_per_s)
        wait_ms = 0
        if tokens >= 1:
            tokens -= 1
        else:
            wait_ms = math.ceil((1 - tokens) * 1000 / rate_per_s)
        return (tokens, now, 0.0), wait_ms

    return step


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
        code: str | None = None,
        counters: Counters | None = None,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.key_prefix = key_prefix
        self.refusal = refusal
        self.code = code
        self.clock = clock
        self.burst = burst
        self.counters: Counters = counters or MemoryCounters(clock=clock)
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
        """Take one token for `account` (any key: an account, a client address) or raise
        RateLimited with the wait in whole seconds."""
        if not self.enabled:
            return
        key = f"{self.key_prefix}{account}"
        if self._redis is not None:
            import redis

            try:
                wait_ms = int(
                    await self._script(
                        keys=[key], args=[self.rate_per_s, self.burst, now_ms(self.clock)]
                    )
                )
            except redis.RedisError:
                wait_ms = await self._take(key)  # Redis down: limit through the fallback
        else:
            wait_ms = await self._take(key)
        if wait_ms > 0:
            raise RateLimited(
                self.refusal, retry_after_s=max(1, math.ceil(wait_ms / 1000)), code=self.code
            )

    async def _take(self, key: str) -> int:
        ttl_s = self.burst / self.rate_per_s + 1.0  # a full bucket is as good as none
        return await self.counters.update_async(
            key, _bucket_step(self.rate_per_s, self.burst), ttl_s=ttl_s
        )

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
    """Failed logins counted per reviewer name and per client address, in `counters` (the
    database in a server, so every process sees them and a restart forgets none).

    A key's first `free` failures cost nothing; each failure after that locks the key for
    `LOGIN_LOCKOUT_BASE_S`, doubled per further failure up to `LOGIN_LOCKOUT_MAX_S`. A key
    with no failure for `LOGIN_FAILURE_MEMORY_S` starts again; a successful login clears the
    name (not the address). Time is the clock's wall reading.
    """

    def __init__(
        self,
        *,
        free_per_name: int = LOGIN_FREE_FAILURES_PER_NAME,
        free_per_address: int = LOGIN_FREE_FAILURES_PER_ADDRESS,
        clock: Clock = SYSTEM_CLOCK,
        counters: Counters | None = None,
    ) -> None:
        self.free_per_name = free_per_name
        self.free_per_address = free_per_address
        self.clock = clock
        # key -> (failures, last failure, locked until)
        self.counters: Counters = counters or MemoryCounters(
            clock=clock, max_keys=MAX_TRACKED_LOGIN_KEYS
        )

    @staticmethod
    def _keys_of(name: str, address: str) -> list[tuple[str, int]]:
        return [(f"login-name:{name}", 0), (f"login-addr:{address}", 1)]

    def check(self, name: str, address: str) -> None:
        """Raise LoginThrottled (with the wait) if the name or the address is locked out."""

        now = self.clock.time()
        wait = max(
            (state[2] - now if (state := self.counters.read(key)) is not None else 0.0)
            for key, _kind in self._keys_of(name, address)
        )
        if wait > 0:
            raise LoginThrottled(retry_after_s=max(1, math.ceil(wait)))

    def record_failure(self, name: str, address: str) -> None:
        for key, kind in self._keys_of(name, address):
            free = (self.free_per_name, self.free_per_address)[kind]

            def fail(
                state: CounterState | None, now: float, free: int = free
            ) -> tuple[CounterState, None]:
                failures, _last, until = state or (0.0, now, 0.0)
                failures += 1
                over = int(failures) - free
                if over > 0:
                    lockout = min(LOGIN_LOCKOUT_MAX_S, LOGIN_LOCKOUT_BASE_S * 2 ** (over - 1))
                    until = max(until, now + lockout)
                return (failures, now, until), None

            self.counters.update(key, fail, ttl_s=LOGIN_FAILURE_MEMORY_S)

    def record_success(self, name: str) -> None:
        self.counters.forget(self._keys_of(name, "")[0][0])


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


def report_limiter(
    *,
    clock: Clock = SYSTEM_CLOCK,
    redis_url: str | None = None,
    counters: Counters | None = None,
) -> SendLimiter:
    """The per-account limit on new reports (a token bucket in Redis if given, else in
    `counters`: the database in a server)."""
    return SendLimiter(
        rate_per_s=DEFAULT_REPORT_RATE_PER_S,
        burst=DEFAULT_REPORT_BURST,
        redis_url=redis_url,
        clock=clock,
        key_prefix="accord:report-rate:",
        refusal="filing reports too fast; wait and retry",
        counters=counters,
    )


def registration_limiter(
    *,
    rate_per_s: float = DEFAULT_ACCOUNT_RATE_PER_S,
    burst: int = DEFAULT_ACCOUNT_BURST,
    clock: Clock = SYSTEM_CLOCK,
    counters: Counters | None = None,
) -> SendLimiter:
    """The per-address limit on new accounts and device link requests, one bucket for both
    (`registration_throttled`), kept in `counters` (the database in a server)."""
    return SendLimiter(
        rate_per_s=rate_per_s,
        burst=burst,
        clock=clock,
        key_prefix="registration:",
        refusal="too many new accounts or device links from this address; wait and retry",
        code="registration_throttled",
        counters=counters,
    )
