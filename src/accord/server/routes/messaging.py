"""Accounts, device authentication and linking, one-time keys, groups, message queues and
attachment blobs (docs/protocol/messaging.md)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect

from accord.errors import InvalidInput
from accord.server.deps import ActiveDevice, ClientAddress, CurrentDevice, ServicesDep
from accord.server.messaging import MAX_FETCH_LIMIT
from accord.wire.messaging import (
    AccountCreated,
    AckRequest,
    AckResult,
    ApproveLinkRequest,
    BlobCreated,
    Challenge,
    ChallengeRequest,
    ClaimedKeys,
    ClaimKeysRequest,
    CreateAccountRequest,
    DeviceList,
    DeviceRecord,
    Envelope,
    EnvelopeBatch,
    KeyCount,
    LinkCreated,
    LinkRequest,
    PendingLink,
    PublishKeysRequest,
    RevokeDeviceRequest,
    SendAccepted,
    SendRequest,
    SignedGroupState,
    Token,
    TokenRequest,
)
from accord.wire.transparency import AccountProof, HistoryPage

DeliveryId = Annotated[int, Path(ge=1, le=2**62)]

router = APIRouter()
BLOB_CHUNK_BYTES = 1 << 20
# The message queue (send, fetch, acknowledge): every message passes here, so `ROUTERS` matches
# it first (each route tried before a match costs a few microseconds).
queue_router = APIRouter()


@router.post("/v1/accounts", status_code=201)
async def create_account(
    req: CreateAccountRequest, services: ServicesDep, address: ClientAddress
) -> AccountCreated:
    record = await services.messaging.create_account(req, address=address)
    return AccountCreated(account=record.keys.account, device_id=record.keys.device_id)


@router.get("/v1/accounts/{account}/devices")
async def account_devices(account: str, _dev: CurrentDevice, services: ServicesDep) -> DeviceList:
    return await services.messaging.device_list(account)


AccountPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", max_length=64)]
VersionQuery = Annotated[int, Query(ge=0, le=2**31)]


@router.get("/v1/accounts/{account}/transparency", response_model=None)
async def account_transparency(
    account: AccountPath,
    _dev: CurrentDevice,
    services: ServicesDep,
    since: VersionQuery = 0,
    size: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> AccountProof | HistoryPage:
    """Key transparency (docs/protocol/transparency.md §8, K9): the checkpoint, its map head,
    the search for the account (a non-inclusion proof if it does not exist) and its changes
    after version `since`; with `size`, only more changes, proven at that earlier size."""
    if size is not None:
        return await to_thread.run_sync(services.log.account_history, account, since, size)
    return await to_thread.run_sync(services.log.account_proof, account, since)


@router.post("/v1/devices/{device_id}/revoke", status_code=204)
async def revoke_device(
    device_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{4,32}$")],
    req: RevokeDeviceRequest,
    dev: CurrentDevice,  # a suspended account still cuts off a lost device (docs/console.md)
    services: ServicesDep,
) -> Response:
    """Remove a device of the caller's account (logged first; docs/protocol/transparency.md)."""
    await services.messaging.revoke_device(dev, device_id, req)
    return Response(status_code=204)


@router.post("/v1/auth/challenge")
async def auth_challenge(req: ChallengeRequest, services: ServicesDep) -> Challenge:
    return await services.messaging.issue_challenge(req.account, req.device_id)


@router.post("/v1/auth/token")
async def auth_token(req: TokenRequest, services: ServicesDep) -> Token:
    return await services.messaging.issue_token(
        req.account, req.device_id, req.challenge, req.signature
    )


@router.post("/v1/link-requests", status_code=201)
async def create_link(
    req: LinkRequest, services: ServicesDep, address: ClientAddress
) -> LinkCreated:
    return await services.messaging.create_link(req, address=address)


@router.get("/v1/link-requests/{request_id}")
async def get_link(request_id: str, dev: ActiveDevice, services: ServicesDep) -> PendingLink:
    """Only for approving it, which a suspended account may not do."""
    return await services.messaging.get_link(dev, request_id)


@router.post("/v1/link-requests/{request_id}/approve")
async def approve_link(
    request_id: str, req: ApproveLinkRequest, dev: ActiveDevice, services: ServicesDep
) -> DeviceRecord:
    return await services.messaging.approve_link(dev, request_id, req)


@router.post("/v1/keys")
async def publish_keys(
    req: PublishKeysRequest,
    dev: CurrentDevice,  # a suspended account still receives, so it still tops up its keys
    services: ServicesDep,
) -> KeyCount:
    return await services.messaging.publish_keys(dev, req)


@router.get("/v1/keys/count")
async def key_count(dev: CurrentDevice, services: ServicesDep) -> KeyCount:
    return await services.messaging.key_count(dev)


@router.post("/v1/keys/claim")
async def claim_keys(
    req: ClaimKeysRequest, dev: ActiveDevice, services: ServicesDep
) -> ClaimedKeys:
    return await services.messaging.claim_keys(dev, req)


@router.put("/v1/groups/{name}")
async def put_group(
    name: str, req: SignedGroupState, dev: ActiveDevice, services: ServicesDep
) -> SignedGroupState:
    if req.state.group != name:
        raise InvalidInput("group name in path and body differ")
    return await services.messaging.put_group(dev, req)


@router.get("/v1/groups/{name}")
async def get_group(name: str, dev: CurrentDevice, services: ServicesDep) -> SignedGroupState:
    return await services.messaging.get_group(dev, name)


@queue_router.post("/v1/messages", status_code=201)
async def send(req: SendRequest, dev: ActiveDevice, services: ServicesDep) -> SendAccepted:
    return await services.messaging.send(dev, req)


@queue_router.get("/v1/messages")
async def fetch(
    dev: CurrentDevice,
    services: ServicesDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_FETCH_LIMIT)] = 100,
) -> EnvelopeBatch:
    return await services.messaging.fetch(dev, after=after, limit=limit)


@queue_router.get("/v1/messages/{delivery_id}")
async def get_message(
    delivery_id: DeliveryId, dev: CurrentDevice, services: ServicesDep
) -> Envelope:
    return await services.messaging.get_envelope(dev, delivery_id)


@queue_router.post("/v1/messages/ack")
async def ack(req: AckRequest, dev: CurrentDevice, services: ServicesDep) -> AckResult:
    return await services.messaging.ack(dev, req.ids)


@queue_router.delete("/v1/messages/{delivery_id}", status_code=204)
async def delete_message(
    delivery_id: DeliveryId, dev: CurrentDevice, services: ServicesDep
) -> Response:
    await services.messaging.ack(dev, [delivery_id])
    return Response(status_code=204)


@router.put("/v1/blobs", status_code=201)
async def upload_blob(
    request: Request,
    dev: ActiveDevice,
    services: ServicesDep,
    content_length: Annotated[int | None, Header()] = None,
    x_accord_blob_sha256: Annotated[str | None, Header()] = None,
) -> BlobCreated:
    """Stream an encrypted blob; size and SHA-256 must be declared up front."""
    try:
        return await services.blobs.upload(
            dev, request.stream(), declared_size=content_length, sha256_b64=x_accord_blob_sha256
        )
    except ClientDisconnect:
        raise InvalidInput("upload truncated", code="blob_size_mismatch") from None


@router.get("/v1/blobs/{blob_id}")
async def download_blob(
    blob_id: str, _dev: CurrentDevice, services: ServicesDep
) -> StreamingResponse:
    """The blob's bytes, from a file opened before answering: a collection that removes the
    blob while it is being sent does not cut the download off."""
    f = await to_thread.run_sync(services.blobs.open, blob_id)
    size = os.fstat(f.fileno()).st_size

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await to_thread.run_sync(f.read, BLOB_CHUNK_BYTES):
                yield chunk
        finally:
            f.close()

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={"Content-Length": str(size)},
    )
