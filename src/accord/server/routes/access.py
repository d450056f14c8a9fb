"""Accountable lawful access (docs/lawful-access.md §5): authorities publish approver sets,
agency keys and warrants (authorised by the signatures they carry); a target's devices sync
their warrants and upload sealed records; the agency fetches what a warrant gives it."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Query

from accord.primitives.encoding import canonical_json
from accord.protocols.access.agency import SignedAgencyKey
from accord.protocols.access.approvers import SignedApproverSet
from accord.protocols.access.log_entries import DisclosureExtensionEntry
from accord.protocols.access.records import SealedRecord
from accord.protocols.access.warrant import SignedWarrant
from accord.server.access.objects import MAX_RECORD_OBJECT_BYTES, parse_signed_object
from accord.server.deps import AgencyWarrantId, CurrentDevice, Operator, ServicesDep
from accord.wire.access import (
    MAX_METADATA_PER_PAGE,
    MAX_RECORDS_PER_PAGE,
    AccessEntries,
    AccessSync,
    AgencyChallenge,
    AgencyChallengeRequest,
    AgencyKeyRegistered,
    AgencyWarrant,
    ApproverSetPublished,
    ApproverSets,
    DisclosureExtended,
    ExtendDisclosureRequest,
    MetadataPage,
    PublishApproverSetRequest,
    RecordPage,
    RecordsStored,
    RecordUpload,
    RegisterAgencyKeyRequest,
    SubmitWarrantRequest,
    WarrantSubmitted,
)

Position = Annotated[int, Query(ge=0, le=2**62)]

router = APIRouter()


def _sealed_record(obj: object) -> SealedRecord:
    return SealedRecord.from_bytes(canonical_json(obj))


# --- authorities (public: authorised by the signatures they carry) -------------------------


@router.post("/v1/access/approver-sets", status_code=201)
async def publish_approver_set(
    req: PublishApproverSetRequest, services: ServicesDep, _op: Operator
) -> ApproverSetPublished:
    signed = parse_signed_object(
        req.signed_approver_set, SignedApproverSet.from_obj, "approver set"
    )
    return await to_thread.run_sync(services.access.authorities.publish_approver_set, signed)


@router.get("/v1/access/approver-sets")
async def approver_sets(services: ServicesDep, since: Position = 0) -> ApproverSets:
    return await to_thread.run_sync(services.access.authorities.approver_sets, since)


@router.post("/v1/access/agency-keys", status_code=201)
async def register_agency_key(
    req: RegisterAgencyKeyRequest, services: ServicesDep
) -> AgencyKeyRegistered:
    signed = parse_signed_object(req.signed_agency_key, SignedAgencyKey.from_obj, "agency key")
    return await to_thread.run_sync(services.access.authorities.register_agency_key, signed)


@router.post("/v1/access/warrants", status_code=201)
async def submit_warrant(req: SubmitWarrantRequest, services: ServicesDep) -> WarrantSubmitted:
    signed = parse_signed_object(req.signed_warrant, SignedWarrant.from_obj, "warrant")
    return await to_thread.run_sync(services.access.authorities.submit_warrant, signed)


@router.post("/v1/access/extensions", status_code=201)
async def extend_disclosure(
    req: ExtendDisclosureRequest, services: ServicesDep
) -> DisclosureExtended:
    extension = parse_signed_object(req.extension, DisclosureExtensionEntry.from_obj, "extension")
    return await to_thread.run_sync(services.access.authorities.extend_disclosure, extension)


@router.get("/v1/access/entries")
async def access_entries(services: ServicesDep, start: Position = 0) -> AccessEntries:
    return await to_thread.run_sync(services.access.ledger.access_entries, start)


# --- the target's devices ----------------------------------------------------------------


@router.get("/v1/access/sync")
async def sync(
    dev: CurrentDevice,
    services: ServicesDep,
    since: Position = 0,
    sets_after: Annotated[int, Query(ge=0, le=2**31)] = 0,
    disclosures_from: Position = 0,
) -> AccessSync:
    return await to_thread.run_sync(
        partial(
            services.access.device_sync.sync,
            dev,
            since=since,
            sets_after=sets_after,
            disclosures_from=disclosures_from,
        )
    )


@router.post("/v1/access/records", status_code=201)
async def upload_records(
    req: RecordUpload,
    dev: CurrentDevice,  # a warrant's duties go on while its target is suspended
    services: ServicesDep,
) -> RecordsStored:
    records = [
        parse_signed_object(r, _sealed_record, "record", max_bytes=MAX_RECORD_OBJECT_BYTES)
        for r in req.records
    ]
    return await to_thread.run_sync(services.access.agency.store_records, dev, records)


# --- the agency --------------------------------------------------------------------------


@router.post("/v1/access/agency/challenge")
async def agency_challenge(req: AgencyChallengeRequest, services: ServicesDep) -> AgencyChallenge:
    return await to_thread.run_sync(services.access.agency.challenge, bytes.fromhex(req.warrant_id))


@router.get("/v1/access/warrants/{warrant_id}")
async def agency_warrant(wid: AgencyWarrantId, services: ServicesDep) -> AgencyWarrant:
    return await to_thread.run_sync(services.access.agency.warrant, wid)


@router.get("/v1/access/warrants/{warrant_id}/records")
async def agency_records(
    wid: AgencyWarrantId,
    services: ServicesDep,
    after: Position = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_RECORDS_PER_PAGE)] = MAX_RECORDS_PER_PAGE,
) -> RecordPage:
    return await to_thread.run_sync(
        partial(services.access.agency.records, wid, after=after, limit=limit)
    )


@router.get("/v1/access/warrants/{warrant_id}/metadata")
async def agency_metadata(
    wid: AgencyWarrantId,
    services: ServicesDep,
    after: Position = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_METADATA_PER_PAGE)] = MAX_METADATA_PER_PAGE,
) -> MetadataPage:
    return await to_thread.run_sync(
        partial(services.access.agency.metadata, wid, after=after, limit=limit)
    )
