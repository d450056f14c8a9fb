"""Export of an escalated abuse case: CyberTipline-shaped XML and canonical JSON.

Pure functions, no I/O: the caller decides where the bytes go.

Shape followed: NCMEC's CyberTipline Reporting API, whose schema is served (to registered
reporters) at https://report.cybertip.org/ispws/xsd and documented at
https://report.cybertip.org/ispws/documentation. The XSD itself needs credentials, so the
element names, their order inside each `xs:sequence` and the `incidentType` enumeration below
were taken from the public Go types that github.com/Boostport/ncmec-go
(`cybertipline/types.go`) generates mechanically from that XSD, field by field in sequence
order, and cross-checked with the public TypeScript client
github.com/Johannes-Andersen/Cybertipline-Tools (an older schema: it agrees on the order of the
elements it has and on the incident types, except that it spells "Sexual Act" where the
generated types have "Sexual Acts"; we follow the generated types). Where the schema has an
element the case cannot fill truthfully (IP addresses, which a case does not carry; the time a
blob was uploaded), it is left out rather than guessed.

The API takes a report in pieces, and so does this module:

1. `export_cybertipline_xml` builds the `<report>` document (`POST /submit`): incident summary,
   one `chatImIncident` per reported message, the reporter (the provider), the reported user,
   the intended recipient (the user who filed the in-app report), and a free-text summary.
2. `export_cybertipline_file_details_xml` builds one `<fileDetails>` document per file
   (`POST /fileinfo`, after the file itself is uploaded). `reportId` and `fileId` are assigned
   by NCMEC; pass them when known, otherwise they are left out.
3. `export_case_json` carries the same information as one canonical JSON object (keys sorted,
   no insignificant whitespace, UTF-8: `accord.primitives.encoding.canonical_json`).

XML 1.0 cannot carry most control characters, lone surrogates, U+FFFE or U+FFFF, and a parser
turns every carriage return into a line feed. Every string therefore goes through
`xml_safe_text` first (those characters become U+FFFD, CR LF and CR become LF), in both exports,
so the two say the same thing; the fields that changed are listed in both. All content goes in
element text, escaped by ElementTree; attribute names and values are fixed by this module.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET  # builds only; nothing here parses XML
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from accord.errors import InvalidInput
from accord.primitives.encoding import canonical_json

# --------------------------------------------------------------------------------------------
# The schema: allowed values and element order (see the module docstring for the source)

INCIDENT_TYPES: tuple[str, ...] = (
    "Child Pornography (possession, manufacture, and distribution)",
    "Child Sex Trafficking",
    "Child Sex Tourism",
    "Child Sexual Molestation",
    "Misleading Domain Name",
    "Misleading Words or Digital Images on the Internet",
    "Online Enticement of Children for Sexual Acts",
    "Unsolicited Obscene Material Sent to a Child",
)

SCHEMA_LOCATION = "https://report.cybertip.org/ispws/xsd"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"

REPORT_ELEMENT_ORDER: tuple[str, ...] = (
    "batchedReport",
    "incidentSummary",
    "internetDetails",
    "lawEnforcement",
    "reporter",
    "personOrUserReported",
    "intendedRecipient",
    "victim",
    "additionalInfo",
)
INCIDENT_SUMMARY_ELEMENT_ORDER: tuple[str, ...] = (
    "incidentType",
    "platform",
    "escalateToHighPriority",
    "reportAnnotations",
    "incidentDateTime",
    "incidentDateTimeDescription",
)
INTERNET_DETAILS_ELEMENT_ORDER: tuple[str, ...] = (  # an xs:choice: exactly one of these
    "webPageIncident",
    "emailIncident",
    "newsgroupIncident",
    "chatImIncident",
    "onlineGamingIncident",
    "cellPhoneIncident",
    "nonInternetIncident",
    "peer2peerIncident",
)
CHAT_IM_INCIDENT_ELEMENT_ORDER: tuple[str, ...] = (
    "chatClient",
    "chatRoomName",
    "content",
    "additionalInfo",
)
REPORTER_ELEMENT_ORDER: tuple[str, ...] = (
    "reportingPerson",
    "contactPerson",
    "companyTemplate",
    "termsOfService",
    "legalURL",
)
PERSON_ELEMENT_ORDER: tuple[str, ...] = (
    "firstName",
    "lastName",
    "phone",
    "email",
    "address",
    "age",
    "dateOfBirth",
)
PERSON_OR_USER_REPORTED_ELEMENT_ORDER: tuple[str, ...] = (
    "personOrUserReportedPerson",
    "vehicleDescription",
    "espIdentifier",
    "espService",
    "compromisedAccount",
    "screenName",
    "displayName",
    "profileUrl",
    "profileBio",
    "ipCaptureEvent",
    "deviceId",
    "thirdPartyUserReported",
    "priorCTReports",
    "groupIdentifier",
    "accountTemporarilyDisabled",
    "accountPermanentlyDisabled",
    "estimatedLocation",
    "allEmailsReported",
    "associatedAccount",
    "additionalInfo",
)
INTENDED_RECIPIENT_ELEMENT_ORDER: tuple[str, ...] = (
    "intendedRecipientPerson",
    "espIdentifier",
    "espService",
    "compromisedAccount",
    "screenName",
    "displayName",
    "profileUrl",
    "profileBio",
    "ipCaptureEvent",
    "deviceId",
    "priorCTReports",
    "groupIdentifier",
    "accountTemporarilyDisabled",
    "accountPermanentlyDisabled",
    "estimatedLocation",
    "allEmailsReported",
    "additionalInfo",
)
DEVICE_ID_ELEMENT_ORDER: tuple[str, ...] = ("idType", "idValue", "eventName", "dateTime")
FILE_DETAILS_ELEMENT_ORDER: tuple[str, ...] = (
    "reportId",
    "fileId",
    "fileName",
    "originalFileName",
    "uploadedToEspTimestamp",
    "locationOfFile",
    "fileViewedByEsp",
    "exifViewedByEsp",
    "publiclyAvailable",
    "fileRelevance",
    "potentialMeme",
    "fileAnnotations",
    "industryClassification",
    "originalFileHash",
    "ipCaptureEvent",
    "deviceId",
    "details",
    "additionalInfo",
)

# The order of the children of every element this module writes with children, by its tag.
ELEMENT_ORDER: dict[str, tuple[str, ...]] = {
    "report": REPORT_ELEMENT_ORDER,
    "incidentSummary": INCIDENT_SUMMARY_ELEMENT_ORDER,
    "internetDetails": INTERNET_DETAILS_ELEMENT_ORDER,
    "chatImIncident": CHAT_IM_INCIDENT_ELEMENT_ORDER,
    "reporter": REPORTER_ELEMENT_ORDER,
    "reportingPerson": PERSON_ELEMENT_ORDER,
    "personOrUserReported": PERSON_OR_USER_REPORTED_ELEMENT_ORDER,
    "intendedRecipient": INTENDED_RECIPIENT_ELEMENT_ORDER,
    "deviceId": DEVICE_ID_ELEMENT_ORDER,
    "fileDetails": FILE_DETAILS_ELEMENT_ORDER,
}

FILE_RELEVANCE_REPORTED = "Reported"
DEVICE_EVENT_OTHER = "Other"  # the schema's eventName values: Login, Registration, ... Other
DEVICE_ID_TYPE = "Accord device ID"
HASH_TYPE_MD5 = "MD5"
HASH_TYPE_SHA256 = "SHA256"
JSON_FORMAT = "accord.case-export.v1"
DEFAULT_PLATFORM = "Accord"

# --------------------------------------------------------------------------------------------
# Text that XML 1.0 can carry

REPLACEMENT_CHARACTER = "\ufffd"
# Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF] (XML 1.0,
# section 2.2); CR is allowed but does not survive parsing, so it is normalised separately.
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe_text(text: str) -> str:
    """`text` as an XML 1.0 parser will give it back: CR LF and CR become LF, characters XML
    cannot carry become U+FFFD."""
    return _NOT_XML_CHAR.sub(REPLACEMENT_CHARACTER, text.replace("\r\n", "\n").replace("\r", "\n"))


# --------------------------------------------------------------------------------------------
# Input

MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_SIZE_BYTES = 2**53 - 1  # the canonical JSON integer range
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_CONVERSATION = re.compile(r"(account|group):.+", re.DOTALL)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _check_timestamp(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIMESTAMP_MS:
        raise InvalidInput(f"{what} must be milliseconds since 1970 up to the year 9999")


def _check_text(value: str, what: str, *, required: bool = True) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text")
    if required and not value:
        raise InvalidInput(f"{what} must not be empty")


def _check_case(
    incident_type: str,
    *,
    texts: Sequence[tuple[str, str]],
    optional_texts: Sequence[tuple[str, str]],
    times: Sequence[tuple[str, int]],
) -> None:
    """The checks every exported case shares: its incident type, text and time fields."""
    if incident_type not in INCIDENT_TYPES:
        raise InvalidInput("incident type is not one the CyberTipline schema allows")
    for what, value in texts:
        _check_text(value, what)
    for what, value in optional_texts:
        _check_text(value, what, required=False)
    for what, ms in times:
        _check_timestamp(ms, what)


@dataclass(frozen=True, slots=True)
class CaseMessage:
    """One reported message, as the report's franking verification established it."""

    message_id: str
    sender_account: str
    sender_device: str
    conversation: str  # "account:NAME" or "group:NAME" (accord.protocols.franking)
    sent_at_ms: int  # the sender's clock, as committed
    accepted_at_ms: int  # the server's clock when it tagged the message
    text: str

    def __post_init__(self) -> None:
        _check_text(self.message_id, "message id")
        _check_text(self.sender_account, "sender account")
        _check_text(self.sender_device, "sender device")
        _check_text(self.text, "message text", required=False)
        if not isinstance(self.conversation, str) or not _CONVERSATION.fullmatch(self.conversation):
            raise InvalidInput('conversation must be "account:NAME" or "group:NAME"')
        _check_timestamp(self.sent_at_ms, "sent time")
        _check_timestamp(self.accepted_at_ms, "accepted time")


@dataclass(frozen=True, slots=True)
class CaseFile:
    """One reported attachment, opened by the server with the committed key."""

    name: str  # the name the sender gave it
    media_type: str
    size: int  # plaintext bytes
    sha256_hex: str  # of the plaintext file
    md5_hex: str  # of the plaintext file (NCMEC returns MD5 for uploads)
    viewed_by_esp: bool  # whether a reviewer viewed the whole file
    message_id: str  # the message it was attached to

    def __post_init__(self) -> None:
        _check_text(self.name, "file name", required=False)
        _check_text(self.media_type, "media type", required=False)
        _check_text(self.message_id, "file message id")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise InvalidInput("file size must be an integer")
        if not 0 <= self.size <= MAX_SIZE_BYTES:
            raise InvalidInput("file size out of range")
        if not isinstance(self.sha256_hex, str) or not _SHA256_HEX.fullmatch(self.sha256_hex):
            raise InvalidInput("file SHA-256 must be 64 lowercase hex digits")
        if not isinstance(self.md5_hex, str) or not _MD5_HEX.fullmatch(self.md5_hex):
            raise InvalidInput("file MD5 must be 32 lowercase hex digits")
        if not isinstance(self.viewed_by_esp, bool):
            raise InvalidInput("viewed_by_esp must be true or false")


@dataclass(frozen=True, slots=True)
class Case:
    """An escalated abuse case: the verified report and the reviewer's decision."""

    report_id: str  # Accord's report id
    incident_type: str  # one of INCIDENT_TYPES
    reported_at_ms: int  # when the recipient filed the in-app report
    escalated_at_ms: int  # when a reviewer escalated it
    esp_name: str  # the provider running this Accord service
    esp_contact_email: str
    reviewer: str
    reported_account: str
    reported_account_created_at_ms: int
    reporter_account: str  # the recipient who filed the report
    reason: str  # the reporting user's own words
    messages: tuple[CaseMessage, ...]
    files: tuple[CaseFile, ...]
    notes: str  # the reviewer's notes
    escalate_to_high_priority: str | None = None  # a reason, only for imminent risk to a child
    platform: str = DEFAULT_PLATFORM  # the application's name

    def __post_init__(self) -> None:
        _check_case(
            self.incident_type,
            texts=(
                ("report id", self.report_id),
                ("provider name", self.esp_name),
                ("provider contact email", self.esp_contact_email),
                ("reviewer", self.reviewer),
                ("reported account", self.reported_account),
                ("reporting account", self.reporter_account),
                ("platform", self.platform),
            ),
            optional_texts=(("reason", self.reason), ("notes", self.notes)),
            times=(
                ("reported time", self.reported_at_ms),
                ("escalation time", self.escalated_at_ms),
                ("account creation time", self.reported_account_created_at_ms),
            ),
        )
        if self.escalate_to_high_priority is not None:
            _check_text(self.escalate_to_high_priority, "high-priority reason")
        if not isinstance(self.messages, tuple) or not isinstance(self.files, tuple):
            raise InvalidInput("messages and files must be tuples")
        if not self.messages:
            raise InvalidInput("a case names at least one message")
        if not all(isinstance(m, CaseMessage) for m in self.messages) or not all(
            isinstance(f, CaseFile) for f in self.files
        ):
            raise InvalidInput("malformed case messages or files")
        ids = [m.message_id for m in self.messages]
        if len(set(ids)) != len(ids):
            raise InvalidInput("message ids in a case must be distinct")
        if any(f.message_id not in ids for f in self.files):
            raise InvalidInput("every file must belong to a message of the case")


# --------------------------------------------------------------------------------------------
# One cleaned view for both exports


def _iso(ms: int) -> str:
    """ISO 8601 in UTC with an explicit offset, to the millisecond."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


def _clean(case: Case) -> tuple[Case, tuple[str, ...]]:
    """`case` with every string XML-safe, and the paths of the fields that changed."""
    altered: list[str] = []

    def text(path: str, value: str) -> str:
        clean = xml_safe_text(value)
        if clean != value:
            altered.append(path)
        return clean

    def strings(obj: Any, prefix: str) -> dict[str, Any]:
        return {
            f.name: text(prefix + f.name, getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if isinstance(getattr(obj, f.name), str)
        }

    messages = tuple(
        dataclasses.replace(m, **strings(m, f"messages[{i}].")) for i, m in enumerate(case.messages)
    )
    files = tuple(
        dataclasses.replace(f, **strings(f, f"files[{i}].")) for i, f in enumerate(case.files)
    )
    cleaned = dataclasses.replace(case, **strings(case, ""), messages=messages, files=files)
    return cleaned, tuple(altered)


def _incident_ms(case: Case) -> int:
    """The incident's time: the earliest server acceptance among the reported messages."""
    return min(m.accepted_at_ms for m in case.messages)


def _reported_devices(case: Case) -> list[tuple[str, int]]:
    """The reported account's devices that sent reported messages, with the first time each
    was seen, in order of first appearance."""
    first: dict[str, int] = {}
    for m in case.messages:
        if m.sender_account == case.reported_account:
            seen = first.get(m.sender_device)
            if seen is None or m.accepted_at_ms < seen:
                first[m.sender_device] = m.accepted_at_ms
    return list(first.items())


def _altered_note(altered: Sequence[str]) -> str:
    return (
        "Text changed for XML 1.0 (characters it cannot carry replaced with U+FFFD, carriage "
        "returns with line feeds) in: " + ", ".join(altered) + "."
    )


def _message_note(m: CaseMessage) -> str:
    return (
        f"Message {m.message_id} from account {m.sender_account} (device {m.sender_device}) "
        f"to {m.conversation}; sent {_iso(m.sent_at_ms)} by the sender's clock; accepted by "
        f"the server {_iso(m.accepted_at_ms)}."
    )


def _report_note(case: Case, altered: Sequence[str]) -> str:
    parts = [
        f"{case.platform} case {case.report_id}.",
        f"Reported in the app by the recipient, account {case.reporter_account}, at "
        f"{_iso(case.reported_at_ms)}; escalated by reviewer {case.reviewer} at "
        f"{_iso(case.escalated_at_ms)}.",
        f"Messages: {len(case.messages)}. Files: {len(case.files)} (one fileDetails each).",
        "",
        "Reason given by the reporting user:",
        case.reason,
        "",
        "Reviewer notes:",
        case.notes,
    ]
    if altered:
        parts += ["", _altered_note(altered)]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# XML


def _child(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = xml_safe_text(text)  # already clean; kept as the last line of defence
    return element


def _root(tag: str) -> ET.Element:
    root = ET.Element(tag)
    root.set(f"{{{XSI_NAMESPACE}}}noNamespaceSchemaLocation", SCHEMA_LOCATION)
    return root


def _document(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def export_cybertipline_xml(case: Case) -> bytes:
    """The `<report>` document for `case` (UTF-8, with an XML declaration)."""
    case, altered = _clean(case)
    report = _root("report")

    summary = _child(report, "incidentSummary")
    _child(summary, "incidentType", case.incident_type)
    _child(summary, "platform", case.platform)
    if case.escalate_to_high_priority is not None:
        _child(summary, "escalateToHighPriority", case.escalate_to_high_priority)
    _child(summary, "incidentDateTime", _iso(_incident_ms(case)))
    _child(
        summary,
        "incidentDateTimeDescription",
        "Time the server accepted the earliest reported message.",
    )

    for m in case.messages:
        chat = _child(_child(report, "internetDetails"), "chatImIncident")
        _child(chat, "chatClient", case.platform)
        kind, _, name = m.conversation.partition(":")
        if kind == "group":
            _child(chat, "chatRoomName", name)
        _child(chat, "content", m.text)
        _child(chat, "additionalInfo", _message_note(m))

    reporter = _child(report, "reporter")
    _child(_child(reporter, "reportingPerson"), "email", case.esp_contact_email)
    _child(reporter, "companyTemplate", case.esp_name)

    reported = _child(report, "personOrUserReported")
    _child(reported, "espIdentifier", case.reported_account)
    _child(reported, "espService", case.platform)
    _child(reported, "screenName", case.reported_account)
    for device, seen_ms in _reported_devices(case):
        device_id = _child(reported, "deviceId")
        _child(device_id, "idType", DEVICE_ID_TYPE)
        _child(device_id, "idValue", device)
        _child(device_id, "eventName", DEVICE_EVENT_OTHER)
        _child(device_id, "dateTime", _iso(seen_ms))
    _child(
        reported,
        "additionalInfo",
        f"Account created {_iso(case.reported_account_created_at_ms)}. Device IDs are the "
        "devices that sent the reported messages, with the first time the server accepted one.",
    )

    recipient = _child(report, "intendedRecipient")
    _child(recipient, "espIdentifier", case.reporter_account)
    _child(recipient, "espService", case.platform)
    _child(recipient, "screenName", case.reporter_account)
    _child(
        recipient,
        "additionalInfo",
        f"Received the reported messages and reported them in the app at "
        f"{_iso(case.reported_at_ms)}.",
    )

    _child(report, "additionalInfo", _report_note(case, altered))
    return _document(report)


def export_cybertipline_file_details_xml(
    case: Case,
    *,
    ncmec_report_id: int | None = None,
    ncmec_file_ids: Sequence[str] | None = None,
) -> tuple[bytes, ...]:
    """One `<fileDetails>` document per file of `case`, in order. `ncmec_report_id` and
    `ncmec_file_ids` (one per file) are the ids NCMEC returned for the report and the uploads."""
    if ncmec_report_id is not None and (
        isinstance(ncmec_report_id, bool) or not isinstance(ncmec_report_id, int)
    ):
        raise InvalidInput("NCMEC report id must be an integer")
    if ncmec_file_ids is not None and (
        len(ncmec_file_ids) != len(case.files)
        or not all(isinstance(i, str) and i for i in ncmec_file_ids)
    ):
        raise InvalidInput("give one NCMEC file id per file")
    case, _ = _clean(case)
    accepted = {m.message_id: m.accepted_at_ms for m in case.messages}
    documents = []
    for index, f in enumerate(case.files):
        details = _root("fileDetails")
        if ncmec_report_id is not None:
            _child(details, "reportId", str(ncmec_report_id))
        if ncmec_file_ids is not None:
            _child(details, "fileId", ncmec_file_ids[index])
        _child(details, "fileName", evidence_file_name(f))
        _child(details, "originalFileName", f.name)
        _child(details, "fileViewedByEsp", _bool(f.viewed_by_esp))
        _child(details, "publiclyAvailable", "false")  # end-to-end encrypted to one conversation
        _child(details, "fileRelevance", FILE_RELEVANCE_REPORTED)
        _child(details, "originalFileHash", f.md5_hex).set("hashType", HASH_TYPE_MD5)
        _child(details, "originalFileHash", f.sha256_hex).set("hashType", HASH_TYPE_SHA256)
        _child(
            details,
            "additionalInfo",
            f"Attached to message {f.message_id} (accepted by the server "
            f"{_iso(accepted[f.message_id])}); media type {f.media_type}; {f.size} bytes.",
        )
        documents.append(_document(details))
    return tuple(documents)


def evidence_file_name(file: CaseFile) -> str:
    """The name the export gives a file: its SHA-256, so that names never carry user text."""
    return file.sha256_hex


# --------------------------------------------------------------------------------------------
# JSON


def export_case_json(case: Case) -> bytes:
    """The same information as the XML documents, as one canonical JSON object."""
    case, altered = _clean(case)
    return canonical_json(
        {
            "format": JSON_FORMAT,
            "report_id": case.report_id,
            "incident_type": case.incident_type,
            "incident_date_time": _iso(_incident_ms(case)),
            "escalate_to_high_priority": case.escalate_to_high_priority,
            "platform": case.platform,
            "reported_at": _iso(case.reported_at_ms),
            "escalated_at": _iso(case.escalated_at_ms),
            "esp": {"name": case.esp_name, "contact_email": case.esp_contact_email},
            "reviewer": case.reviewer,
            "reported_account": {
                "account": case.reported_account,
                "created_at": _iso(case.reported_account_created_at_ms),
                "devices": [
                    {"device": device, "first_seen_at": _iso(seen_ms)}
                    for device, seen_ms in _reported_devices(case)
                ],
            },
            "reporter_account": case.reporter_account,
            "reason": case.reason,
            "notes": case.notes,
            "messages": [
                {
                    "message_id": m.message_id,
                    "sender_account": m.sender_account,
                    "sender_device": m.sender_device,
                    "conversation": m.conversation,
                    "sent_at": _iso(m.sent_at_ms),
                    "accepted_at": _iso(m.accepted_at_ms),
                    "text": m.text,
                }
                for m in case.messages
            ],
            "files": [
                {
                    "file_name": evidence_file_name(f),
                    "original_file_name": f.name,
                    "media_type": f.media_type,
                    "size": f.size,
                    "sha256": f.sha256_hex,
                    "md5": f.md5_hex,
                    "viewed_by_esp": f.viewed_by_esp,
                    "publicly_available": False,
                    "file_relevance": FILE_RELEVANCE_REPORTED,
                    "message_id": f.message_id,
                }
                for f in case.files
            ],
            "altered_fields": list(altered),
        }
    )


# --------------------------------------------------------------------------------------------
# A private-matching threshold event (docs/console.md, "Threshold events")

MATCH_JSON_FORMAT = "accord.match-case-export.v1"
_PDQ_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class MatchedImage:
    """One image of a threshold event: the bank entry it matched and how closely. The provider
    holds the image's PDQ hash and a 64 x 64 derivative, never the image."""

    bank: str
    entry_id: int
    label: str  # the bank's label for the entry, chosen by the operator
    distance_bits: int
    pdq_hex: str

    def __post_init__(self) -> None:
        _check_text(self.bank, "bank")
        _check_text(self.label, "label", required=False)
        for what, value in (("entry id", self.entry_id), ("distance", self.distance_bits)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
                raise InvalidInput(f"{what} out of range")
        if not isinstance(self.pdq_hex, str) or not _PDQ_HEX.fullmatch(self.pdq_hex):
            raise InvalidInput("a PDQ hash is 64 lowercase hex digits")


@dataclass(frozen=True, slots=True)
class MatchCase:
    """An escalated threshold event: the account's device sent images that matched hash lists
    (private threshold matching), and a reviewer confirmed and escalated it."""

    event_id: str
    incident_type: str
    detected_at_ms: int  # when the server confirmed the crossing
    escalated_at_ms: int
    esp_name: str
    esp_contact_email: str
    reviewer: str
    reported_account: str
    reported_account_created_at_ms: int
    device_id: str
    images: tuple[MatchedImage, ...]
    notes: str
    log_index: int | None  # the crossing's entry in the transparency log
    platform: str = DEFAULT_PLATFORM

    def __post_init__(self) -> None:
        _check_case(
            self.incident_type,
            texts=(
                ("event id", self.event_id),
                ("provider name", self.esp_name),
                ("provider contact email", self.esp_contact_email),
                ("reviewer", self.reviewer),
                ("reported account", self.reported_account),
                ("device id", self.device_id),
                ("platform", self.platform),
            ),
            optional_texts=(("notes", self.notes),),
            times=(
                ("detection time", self.detected_at_ms),
                ("escalation time", self.escalated_at_ms),
                ("account creation time", self.reported_account_created_at_ms),
            ),
        )
        if not isinstance(self.images, tuple) or not all(
            isinstance(i, MatchedImage) for i in self.images
        ):
            raise InvalidInput("malformed matched images")
        if self.log_index is not None and not 0 <= self.log_index < 2**63:
            raise InvalidInput("log index out of range")


def _match_lines(case: MatchCase) -> list[str]:
    return [
        f"Image {n}: bank {i.bank}, entry {i.entry_id} ({i.label or 'no label'}), "
        f"PDQ Hamming distance {i.distance_bits} bits, PDQ {i.pdq_hex}."
        for n, i in enumerate(case.images, start=1)
    ]


def _match_note(case: MatchCase) -> str:
    logged = (
        f"Transparency log entry {case.log_index}."
        if case.log_index is not None
        else "Not yet in the transparency log."
    )
    return "\n".join(
        [
            f"{case.platform} threshold event {case.event_id}.",
            f"Images sent by device {case.device_id} of account {case.reported_account} "
            f"matched hash-list entries under private threshold matching; the server confirmed "
            f"the crossing at {_iso(case.detected_at_ms)}; reviewer {case.reviewer} escalated "
            f"it at {_iso(case.escalated_at_ms)}. {logged}",
            "The provider holds no copy of the images: only their PDQ hashes and the 64 x 64 "
            "grayscale derivatives the protocol reveals to reviewers.",
            "",
            *_match_lines(case),
            "",
            "Reviewer notes:",
            case.notes,
        ]
    )


def export_match_cybertipline_xml(case: MatchCase) -> bytes:
    """The `<report>` document for a threshold event (UTF-8, with an XML declaration): the same
    shape as `export_cybertipline_xml`, with no message content and no intended recipient."""
    report = _root("report")
    summary = _child(report, "incidentSummary")
    _child(summary, "incidentType", case.incident_type)
    _child(summary, "platform", case.platform)
    _child(summary, "incidentDateTime", _iso(case.detected_at_ms))
    _child(
        summary,
        "incidentDateTimeDescription",
        "Time the server confirmed that the account's images crossed the matching threshold.",
    )
    chat = _child(_child(report, "internetDetails"), "chatImIncident")
    _child(chat, "chatClient", case.platform)
    _child(chat, "additionalInfo", "\n".join(_match_lines(case)))
    reporter = _child(report, "reporter")
    _child(_child(reporter, "reportingPerson"), "email", case.esp_contact_email)
    _child(reporter, "companyTemplate", case.esp_name)
    reported = _child(report, "personOrUserReported")
    _child(reported, "espIdentifier", case.reported_account)
    _child(reported, "espService", case.platform)
    _child(reported, "screenName", case.reported_account)
    device_id = _child(reported, "deviceId")
    _child(device_id, "idType", DEVICE_ID_TYPE)
    _child(device_id, "idValue", case.device_id)
    _child(device_id, "eventName", DEVICE_EVENT_OTHER)
    _child(device_id, "dateTime", _iso(case.detected_at_ms))
    _child(
        reported,
        "additionalInfo",
        f"Account created {_iso(case.reported_account_created_at_ms)}. The device ID is the "
        "device that sent the matched images.",
    )
    _child(report, "additionalInfo", _match_note(case))
    return _document(report)


def export_match_case_json(case: MatchCase) -> bytes:
    """The same information as `export_match_cybertipline_xml`, as one canonical JSON object."""
    notes = xml_safe_text(case.notes)
    return canonical_json(
        {
            "format": MATCH_JSON_FORMAT,
            "event_id": case.event_id,
            "incident_type": case.incident_type,
            "incident_date_time": _iso(case.detected_at_ms),
            "platform": case.platform,
            "escalated_at": _iso(case.escalated_at_ms),
            "esp": {"name": case.esp_name, "contact_email": case.esp_contact_email},
            "reviewer": case.reviewer,
            "reported_account": {
                "account": case.reported_account,
                "created_at": _iso(case.reported_account_created_at_ms),
                "device": case.device_id,
            },
            "images": [
                {
                    "bank": i.bank,
                    "entry_id": i.entry_id,
                    "label": xml_safe_text(i.label),
                    "distance_bits": i.distance_bits,
                    "pdq": i.pdq_hex,
                }
                for i in case.images
            ],
            "transparency_log_index": case.log_index,
            "notes": notes,
            "altered_fields": ["notes"] if notes != case.notes else [],
        }
    )
