"""Wake-ups for connected devices when their queue grows.

`Notifier` is the interface; `LocalNotifier` serves one process. A message committed by any thread
wakes every WebSocket of the target devices on the event loop. Notifications carry no content:
the socket fetches from the database, which stays the only source of truth.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol


class Notifier(Protocol):
    def publish(self, device_pks: Iterable[int]) -> None: ...

    def subscribe(self, device_pk: int) -> asyncio.Event: ...

    def unsubscribe(self, device_pk: int, event: asyncio.Event) -> None: ...


class LocalNotifier:
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
