"""Wake-ups for connected devices when their queue grows.

`Notifier` is the interface; `LocalNotifier` serves one process. A message committed by any thread
wakes every WebSocket of the target devices on the event loop. Notifications carry no content:
the socket fetches from the database, which stays the only source of truth.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

log = logging.getLogger("accord.server.notify")

# With several processes, how often a socket re-reads its queue when no wake-up came (a Redis
# outage loses wake-ups; this bounds how late a message is pushed then).
DEFAULT_SOCKET_POLL_S = 5.0


class Notifier(Protocol):
    # How often a socket looks at its queue even without a wake-up (None: never).
    poll_interval_s: float | None

    def publish(self, device_pks: Iterable[int]) -> None: ...

    def subscribe(self, device_pk: int) -> asyncio.Event: ...

    def unsubscribe(self, device_pk: int, event: asyncio.Event) -> None: ...


class LocalNotifier:
    poll_interval_s: float | None = None  # one process sees every commit: no polling needed

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = (
            defaultdict(set)
        )

    def subscribe(self, device_pk: int) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._subscribers[device_pk].add((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, device_pk: int, event: asyncio.Event) -> None:
        with self._lock:
            subs = self._subscribers.get(device_pk)
            if subs is None:
                return
            for item in [s for s in subs if s[1] is event]:
                subs.discard(item)
            if not subs:
                del self._subscribers[device_pk]

    def publish(self, device_pks: Iterable[int]) -> None:
        with self._lock:
            targets = [s for pk in device_pks for s in self._subscribers.get(pk, ())]
        for loop, event in targets:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop already closed: the socket is gone
                pass


WAKE_CHANNEL = "accord:wake"
MAX_PKS_PER_MESSAGE = 4096


class RedisNotifier:
    """Wake-ups across server processes through Redis pub/sub.

    `publish` sends the device ids to one channel; every process (this one included) listens in a
    background thread and wakes its own sockets through a `LocalNotifier`. Redis carries only
    internal device row ids, no content and no account names. If Redis is unreachable, publishing
    is skipped (logged once per outage) and sockets still see new rows at their next poll
    (`poll_interval_s`, used by the WebSocket loop when several processes serve), so a Redis
    outage delays pushes but loses nothing.
    """

    poll_interval_s: float | None = DEFAULT_SOCKET_POLL_S

    def __init__(self, url: str, *, poll_interval_s: float = DEFAULT_SOCKET_POLL_S) -> None:
        import redis

        self.poll_interval_s = poll_interval_s

        self._redis = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
        )
        self._local = LocalNotifier()
        self._stopped = threading.Event()
        self._outage = False
        self._thread = threading.Thread(target=self._listen, name="redis-wake", daemon=True)
        self._thread.start()

    def subscribe(self, device_pk: int) -> asyncio.Event:
        return self._local.subscribe(device_pk)

    def unsubscribe(self, device_pk: int, event: asyncio.Event) -> None:
        self._local.unsubscribe(device_pk, event)

    def publish(self, device_pks: Iterable[int]) -> None:
        pks = list(device_pks)
        self._local.publish(pks)  # this process's sockets need no round trip
        import redis

        for start in range(0, len(pks), MAX_PKS_PER_MESSAGE):
            chunk = pks[start : start + MAX_PKS_PER_MESSAGE]
            try:
                self._redis.publish(WAKE_CHANNEL, ",".join(map(str, chunk)))
                self._outage = False
            except redis.RedisError:
                if not self._outage:
                    log.warning("redis unreachable: cross-process pushes wait for the next poll")
                self._outage = True
                return

    def _listen(self) -> None:
        import redis

        while not self._stopped.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(WAKE_CHANNEL)
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    self._local.publish(_parse_pks(message.get("data")))
            except redis.RedisError:
                self._stopped.wait(1.0)  # reconnect after a pause

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=3)
        self._redis.close()


def _parse_pks(data: object) -> list[int]:
    if not isinstance(data, bytes) or len(data) > MAX_PKS_PER_MESSAGE * 21:
        return []
    out = []
    for part in data.split(b","):
        if part.isdigit() and len(part) <= 19:
            out.append(int(part))
    return out
