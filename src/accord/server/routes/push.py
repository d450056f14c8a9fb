"""`/v1/ws`: a device's queue pushed over a WebSocket as it grows, acknowledged on the same
socket."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic_core import to_json

from accord.errors import AccordError
from accord.server.assembly import Services
from accord.server.deps import ServicesDep, bearer_token
from accord.server.messaging import AuthedDevice
from accord.wire.messaging import Envelope

WS_BATCH = 100
# Unacknowledged envelopes per socket before pushing pauses; with WS_BATCH it stays within the
# service's fetch limit (500).
WS_MAX_IN_FLIGHT = 400
WS_MAX_ACK_IDS = 1000
WS_UNAUTHENTICATED = 4401

router = APIRouter()


@router.websocket("/v1/ws")
async def websocket(ws: WebSocket, services: ServicesDep) -> None:
    try:
        dev = await services.messaging.authenticate(bearer_token(ws.headers.get("authorization")))
    except AccordError:
        await ws.close(code=WS_UNAUTHENTICATED)
        return
    await ws.accept()
    await serve_socket(ws, dev, services)


async def serve_socket(ws: WebSocket, dev: AuthedDevice, services: Services) -> None:
    """Push the device's queue as it grows; take acknowledgements on the same socket.

    Frames from the server: {"type": "envelopes", "envelopes": [...]}. Frames from the device:
    {"type": "ack", "ids": [...]}. Nothing is deleted until acknowledged, so a dropped socket
    loses nothing: the next connection (or an HTTP fetch) sees the same rows again.
    """
    messaging, notifier, metrics = services.messaging, services.notifier, services.metrics
    wake = notifier.subscribe(dev.device_pk)
    metrics.websockets.inc()

    # Envelopes pushed on this socket and not yet acknowledged. Each round reads the queue from
    # its start and pushes what is not in flight: on PostgreSQL a row with a lower id can commit
    # after one with a higher id was pushed, so a cursor by id would skip it until the next
    # connection.
    inflight: set[int] = set()

    async def read_acks() -> None:
        while True:
            frame = await ws.receive_json()
            if isinstance(frame, dict) and frame.get("type") == "ack":
                ids = [i for i in frame.get("ids", []) if isinstance(i, int)][:WS_MAX_ACK_IDS]
                if ids:
                    with contextlib.suppress(AccordError):
                        await messaging.ack(dev, ids)
                    inflight.difference_update(ids)
                    wake.set()  # room in flight again

    reader = asyncio.create_task(read_acks())
    try:
        while not reader.done():
            wake.clear()
            fresh: list[Envelope] = []
            more = False
            if len(inflight) < WS_MAX_IN_FLIGHT:
                batch = await messaging.fetch_unsent(dev, inflight, limit=WS_BATCH)
                fresh, more = batch.envelopes, batch.more
            if fresh:
                inflight.update(e.id for e in fresh)
                frame = to_json({"type": "envelopes", "envelopes": fresh})
                await ws.send_text(frame.decode("utf-8"))
                if more:
                    continue
            waiter = asyncio.create_task(wake.wait())
            await asyncio.wait(
                {waiter, reader},
                timeout=notifier.poll_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        reader.cancel()
        notifier.unsubscribe(dev.device_pk, wake)
        metrics.websockets.dec()
        with contextlib.suppress(BaseException):
            await reader
