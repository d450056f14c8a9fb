"""Case export: CyberTipline-shaped XML and canonical JSON, element order, escaping, rejections."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput
from accord.primitives.encoding import canonical_json
from accord.protocols.cybertipline import (
    CHAT_IM_INCIDENT_ELEMENT_ORDER,
    ELEMENT_ORDER,
    FILE_DETAILS_ELEMENT_ORDER,
    INCIDENT_SUMMARY_ELEMENT_ORDER,
    INCIDENT_TYPES,
    REPORT_ELEMENT_ORDER,
    SCHEMA_LOCATION,
    XSI_NAMESPACE,
    Case,
    CaseFile,
    CaseMessage,
    MatchCase,
    MatchedImage,
    evidence_file_name,
    export_case_json,
    export_cybertipline_file_details_xml,
    export_cybertipline_xml,
    export_match_case_json,
    export_match_cybertipline_xml,
    xml_safe_text,
)

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
SHA_A, MD5_A = "a" * 64, "b" * 32
SHA_B, MD5_B = "0123456789abcdef" * 4, "fedcba9876543210" * 2
SCHEMA_ATTRIBUTE = f"{{{XSI_NAMESPACE}}}noNamespaceSchemaLocation"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def make_message(**changes: Any) -> CaseMessage:
    fields: dict[str, Any] = {
        "message_id": "m1",
        "sender_account": "mallory",
        "sender_device": "DEVICE1",
        "conversation": "group:friends",
        "sent_at_ms": T0,
        "accepted_at_ms": T0 + 250,
        "text": "look at this",
    }
    return CaseMessage(**(fields | changes))


def make_file(**changes: Any) -> CaseFile:
    fields: dict[str, Any] = {
        "name": "photo.jpg",
        "media_type": "image/jpeg",
        "size": 12_345,
        "sha256_hex": SHA_A,
        "md5_hex": MD5_A,
        "viewed_by_esp": True,
        "message_id": "m1",
    }
    return CaseFile(**(fields | changes))


def make_case(**changes: Any) -> Case:
    fields: dict[str, Any] = {
        "report_id": "r_0123456789abcdef",
        "incident_type": INCIDENT_TYPES[0],
        "reported_at_ms": T0 + 60_000,
        "escalated_at_ms": T0 + 3_600_000,
        "esp_name": "Example Messaging Ltd",
        "esp_contact_email": "safety@example.org",
        "reviewer": "reviewer-1",
        "reported_account": "mallory",
        "reported_account_created_at_ms": T0 - 86_400_000,
        "reporter_account": "alice",
        "reason": "he keeps sending these",
        "messages": (
            make_message(),
            make_message(
                message_id="m2",
                sender_device="DEVICE2",
                conversation="account:alice",
                sent_at_ms=T0 - 1_000,
                accepted_at_ms=T0 - 500,
                text="second",
            ),
            make_message(
                message_id="m3",
                sender_account="alice",
                sender_device="ALICE1",
                conversation="account:mallory",
                accepted_at_ms=T0 + 900,
                text="stop",
            ),
        ),
        "files": (
            make_file(),
            make_file(
                name="clip.mp4",
                media_type="video/mp4",
                sha256_hex=SHA_B,
                md5_hex=MD5_B,
                viewed_by_esp=False,
                message_id="m2",
            ),
        ),
        "notes": "matches a known hash; escalated",
    }
    return Case(**(fields | changes))


def parse(document: bytes) -> Element:
    assert document.startswith(XML_DECLARATION)
    document.decode("utf-8")  # strict: valid UTF-8
    root: Element = SafeET.fromstring(document)
    return root


def text_of(element: Element | None) -> str:
    assert element is not None
    return element.text or ""


def check_order(element: Element) -> None:
    """Every element with children lists them in its schema order (repeats allowed)."""
    children = list(element)
    if not children:
        return
    assert element.tag in ELEMENT_ORDER, f"no schema order known for <{element.tag}>"
    order = ELEMENT_ORDER[element.tag]
    positions = []
    for child in children:
        assert child.tag in order, f"<{child.tag}> is not a child of <{element.tag}>"
        positions.append(order.index(child.tag))
    assert positions == sorted(positions), f"children of <{element.tag}> out of order"
    for child in children:
        check_order(child)


# --------------------------------------------------------------------------------------------
# Schema shape


def test_order_constants_are_the_schema_sequences() -> None:
    assert REPORT_ELEMENT_ORDER == (
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
    assert INCIDENT_SUMMARY_ELEMENT_ORDER[0] == "incidentType"
    assert INCIDENT_SUMMARY_ELEMENT_ORDER.index("incidentDateTime") == 4
    assert FILE_DETAILS_ELEMENT_ORDER.index("fileViewedByEsp") < FILE_DETAILS_ELEMENT_ORDER.index(
        "publiclyAvailable"
    )
    assert FILE_DETAILS_ELEMENT_ORDER.index("fileAnnotations") < FILE_DETAILS_ELEMENT_ORDER.index(
        "originalFileHash"
    )
    assert FILE_DETAILS_ELEMENT_ORDER[-1] == "additionalInfo"
    for order in ELEMENT_ORDER.values():
        assert len(set(order)) == len(order)
    assert len(INCIDENT_TYPES) == len(set(INCIDENT_TYPES)) == 8


def test_report_follows_schema_order() -> None:
    root = parse(export_cybertipline_xml(make_case()))
    assert root.tag == "report"
    assert root.get(SCHEMA_ATTRIBUTE) == SCHEMA_LOCATION
    assert [child.tag for child in root] == [
        "incidentSummary",
        "internetDetails",
        "internetDetails",
        "internetDetails",
        "reporter",
        "personOrUserReported",
        "intendedRecipient",
        "additionalInfo",
    ]
    check_order(root)
    for details in root.findall("internetDetails"):
        assert [child.tag for child in details] == ["chatImIncident"]  # an xs:choice


def test_report_content() -> None:
    case = make_case()
    root = parse(export_cybertipline_xml(case))
    summary = root.find("incidentSummary")
    assert summary is not None
    assert [child.tag for child in summary] == [
        "incidentType",
        "platform",
        "incidentDateTime",
        "incidentDateTimeDescription",
    ]
    assert text_of(summary.find("incidentType")) == INCIDENT_TYPES[0]
    # The earliest time the server accepted a reported message (m2), in UTC with an offset.
    assert text_of(summary.find("incidentDateTime")) == "2023-11-14T22:13:19.500+00:00"

    chats = root.findall("internetDetails/chatImIncident")
    assert [text_of(c.find("content")) for c in chats] == ["look at this", "second", "stop"]
    assert text_of(chats[0].find("chatRoomName")) == "friends"
    assert chats[1].find("chatRoomName") is None  # a direct message has no room
    assert [child.tag for child in chats[0]] == list(CHAT_IM_INCIDENT_ELEMENT_ORDER)
    assert "Message m2 from account mallory (device DEVICE2)" in text_of(
        chats[1].find("additionalInfo")
    )

    assert text_of(root.find("reporter/reportingPerson/email")) == "safety@example.org"
    assert text_of(root.find("reporter/companyTemplate")) == "Example Messaging Ltd"
    assert text_of(root.find("personOrUserReported/espIdentifier")) == "mallory"
    devices = root.findall("personOrUserReported/deviceId")
    assert [text_of(d.find("idValue")) for d in devices] == ["DEVICE1", "DEVICE2"]
    assert text_of(devices[1].find("dateTime")) == "2023-11-14T22:13:19.500+00:00"
    assert text_of(root.find("intendedRecipient/espIdentifier")) == "alice"
    info = text_of(root.find("additionalInfo"))
    assert "Reason given by the reporting user:\nhe keeps sending these\n" in info
    assert "Reviewer notes:\nmatches a known hash; escalated" in info
    assert "reviewer-1" in info and "r_0123456789abcdef" in info


def test_high_priority_reason_goes_before_incident_time() -> None:
    root = parse(export_cybertipline_xml(make_case(escalate_to_high_priority="imminent risk")))
    summary = root.find("incidentSummary")
    assert summary is not None
    assert [child.tag for child in summary][:4] == [
        "incidentType",
        "platform",
        "escalateToHighPriority",
        "incidentDateTime",
    ]
    check_order(root)


def test_timestamps_are_iso_8601_utc() -> None:
    case = make_case()
    root = parse(export_cybertipline_xml(case))
    stamp = text_of(root.find("incidentSummary/incidentDateTime"))
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert round(parsed.timestamp() * 1000) == T0 - 500


# --------------------------------------------------------------------------------------------
# File details


def test_file_details_order_and_viewed_flag() -> None:
    case = make_case()
    documents = export_cybertipline_file_details_xml(case)
    assert len(documents) == 2
    roots = [parse(document) for document in documents]
    for root in roots:
        assert root.tag == "fileDetails" and root.get(SCHEMA_ATTRIBUTE) == SCHEMA_LOCATION
        check_order(root)
        assert root.find("reportId") is None and root.find("fileId") is None
    assert [child.tag for child in roots[0]] == [
        "fileName",
        "originalFileName",
        "fileViewedByEsp",
        "publiclyAvailable",
        "fileRelevance",
        "originalFileHash",
        "originalFileHash",
        "additionalInfo",
    ]
    assert text_of(roots[0].find("fileViewedByEsp")) == "true"
    assert text_of(roots[1].find("fileViewedByEsp")) == "false"
    assert text_of(roots[0].find("originalFileName")) == "photo.jpg"
    assert text_of(roots[1].find("fileName")) == evidence_file_name(case.files[1]) == SHA_B
    hashes = {h.get("hashType"): text_of(h) for h in roots[1].findall("originalFileHash")}
    assert hashes == {"MD5": MD5_B, "SHA256": SHA_B}
    assert "message m2" in text_of(roots[1].find("additionalInfo"))


def test_file_details_with_ncmec_ids() -> None:
    case = make_case()
    documents = export_cybertipline_file_details_xml(
        case, ncmec_report_id=4242, ncmec_file_ids=["file-a", "file-b"]
    )
    root = parse(documents[1])
    assert [child.tag for child in root][:3] == ["reportId", "fileId", "fileName"]
    assert text_of(root.find("reportId")) == "4242" and text_of(root.find("fileId")) == "file-b"
    check_order(root)
    with pytest.raises(InvalidInput):
        export_cybertipline_file_details_xml(case, ncmec_file_ids=["only-one"])
    with pytest.raises(InvalidInput):
        export_cybertipline_file_details_xml(case, ncmec_file_ids=["file-a", ""])
    with pytest.raises(InvalidInput):
        export_cybertipline_file_details_xml(case, ncmec_report_id=True)
    with pytest.raises(InvalidInput):
        export_cybertipline_file_details_xml(case, ncmec_report_id="4242")  # type: ignore[arg-type]


def test_a_case_without_files_has_no_file_details() -> None:
    assert export_cybertipline_file_details_xml(make_case(files=())) == ()


# --------------------------------------------------------------------------------------------
# Hostile text

HOSTILE = (
    "a</content><injected attr='1'/>&amp;<!-- x --><![CDATA[ ]]>"
    "\x00\x07\x1b\x1f\ufffe\uffff\ud800z\r\nb\rc\t\x85\U0001f600"
)


def test_xml_safe_text() -> None:
    assert xml_safe_text("plain <&> text\tand\nlines") == "plain <&> text\tand\nlines"
    assert xml_safe_text("a\r\nb\rc") == "a\nb\nc"
    assert xml_safe_text("\x00\x08\x0b\x0c\x0e\x1f") == "\ufffd" * 6
    assert xml_safe_text("\ud800\udfff\ufffe\uffff") == "\ufffd" * 4
    assert xml_safe_text("\x7f\x85\u2028\U0010ffff") == "\x7f\x85\u2028\U0010ffff"  # legal


def test_hostile_text_is_escaped_everywhere() -> None:
    case = make_case(
        messages=(
            make_message(
                text=HOSTILE,
                sender_account="mallory<x>",
                sender_device="D&1",
                conversation="group:" + HOSTILE,
            ),
        ),
        files=(make_file(name=HOSTILE, media_type="<image/jpeg>"),),
        reported_account="mallory<x>",
        reason=HOSTILE,
        notes=HOSTILE,
        esp_name="ESP </companyTemplate>",
        escalate_to_high_priority=HOSTILE,
    )
    document = export_cybertipline_xml(case)
    assert b"<injected" not in document and b"\x00" not in document and b"\r" not in document
    assert b"&lt;/content&gt;&lt;injected" in document
    root = parse(document)
    assert root.find(".//injected") is None
    check_order(root)
    clean = xml_safe_text(HOSTILE)
    assert text_of(root.find("internetDetails/chatImIncident/content")) == clean
    assert text_of(root.find("internetDetails/chatImIncident/chatRoomName")) == clean
    assert text_of(root.find("incidentSummary/escalateToHighPriority")) == clean
    assert text_of(root.find("reporter/companyTemplate")) == "ESP </companyTemplate>"
    assert text_of(root.find("personOrUserReported/espIdentifier")) == "mallory<x>"
    info = text_of(root.find("additionalInfo"))
    assert f"Reason given by the reporting user:\n{clean}\n" in info
    assert "messages[0].text" in info and "reason" in info and "files[0].name" in info

    (file_document,) = export_cybertipline_file_details_xml(case)
    assert b"<injected" not in file_document
    file_root = parse(file_document)
    assert text_of(file_root.find("originalFileName")) == clean
    assert text_of(file_root.find("fileName")) == SHA_A  # user text never names the file

    data = json.loads(export_case_json(case))
    assert data["messages"][0]["text"] == clean and data["reason"] == clean
    assert "messages[0].text" in data["altered_fields"]


def test_attributes_never_carry_content() -> None:
    case = make_case(
        messages=(make_message(text=HOSTILE),), files=(make_file(name=HOSTILE),), reason=HOSTILE
    )
    allowed = {SCHEMA_ATTRIBUTE: {SCHEMA_LOCATION}, "hashType": {"MD5", "SHA256"}}
    documents = [export_cybertipline_xml(case), *export_cybertipline_file_details_xml(case)]
    for document in documents:
        for element in parse(document).iter():
            for name, value in element.attrib.items():
                assert value in allowed[name]


# --------------------------------------------------------------------------------------------
# JSON


def test_json_is_canonical_and_stable() -> None:
    first = export_case_json(make_case())
    assert first == export_case_json(make_case())
    assert canonical_json(json.loads(first)) == first
    data = json.loads(first)
    assert list(data) == sorted(data)
    assert data["format"] == "accord.case-export.v1"
    assert data["incident_date_time"] == "2023-11-14T22:13:19.500+00:00"
    assert data["altered_fields"] == []
    assert [f["viewed_by_esp"] for f in data["files"]] == [True, False]
    assert data["reported_account"]["devices"] == [
        {"device": "DEVICE1", "first_seen_at": "2023-11-14T22:13:20.250+00:00"},
        {"device": "DEVICE2", "first_seen_at": "2023-11-14T22:13:19.500+00:00"},
    ]


def test_json_and_xml_say_the_same() -> None:
    case = make_case()
    data = json.loads(export_case_json(case))
    root = parse(export_cybertipline_xml(case))
    assert [m["text"] for m in data["messages"]] == [
        text_of(c.find("content")) for c in root.findall("internetDetails/chatImIncident")
    ]
    assert data["incident_type"] == text_of(root.find("incidentSummary/incidentType"))
    assert data["incident_date_time"] == text_of(root.find("incidentSummary/incidentDateTime"))
    file_roots = [parse(d) for d in export_cybertipline_file_details_xml(case)]
    for entry, file_root in zip(data["files"], file_roots, strict=True):
        assert entry["file_name"] == text_of(file_root.find("fileName"))
        assert str(entry["viewed_by_esp"]).lower() == text_of(file_root.find("fileViewedByEsp"))
        hashes = {h.get("hashType"): text_of(h) for h in file_root.findall("originalFileHash")}
        assert hashes == {"MD5": entry["md5"], "SHA256": entry["sha256"]}


# --------------------------------------------------------------------------------------------
# Rejections


@pytest.mark.parametrize("incident_type", INCIDENT_TYPES)
def test_every_schema_incident_type_is_accepted(incident_type: str) -> None:
    root = parse(export_cybertipline_xml(make_case(incident_type=incident_type)))
    assert text_of(root.find("incidentSummary/incidentType")) == incident_type


@pytest.mark.parametrize(
    "incident_type",
    ["", "child pornography", "Spam", INCIDENT_TYPES[0] + " ", "Online Enticement of Children"],
)
def test_unknown_incident_type_is_rejected(incident_type: str) -> None:
    with pytest.raises(InvalidInput):
        make_case(incident_type=incident_type)


@pytest.mark.parametrize(
    "changes",
    [
        {"sha256_hex": "A" * 64},
        {"sha256_hex": "a" * 63},
        {"md5_hex": "g" * 32},
        {"md5_hex": ""},
        {"size": -1},
        {"size": 2**53},
        {"size": True},
        {"viewed_by_esp": "false"},
        {"viewed_by_esp": 0},
        {"message_id": ""},
    ],
    ids=repr,
)
def test_malformed_file_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        make_file(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"conversation": "bob"},
        {"conversation": "channel:x"},
        {"conversation": "group:"},
        {"message_id": ""},
        {"sender_account": ""},
        {"sent_at_ms": -1},
        {"accepted_at_ms": 253_402_300_800_000},
        {"accepted_at_ms": 1.5},
        {"text": None},
    ],
    ids=repr,
)
def test_malformed_message_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        make_message(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"messages": ()},
        {"messages": (make_message(), make_message())},  # duplicate ids
        {"files": (make_file(message_id="nope"),)},
        {"messages": [make_message()]},
        {"reported_account": ""},
        {"esp_contact_email": ""},
        {"escalate_to_high_priority": ""},
        {"reported_at_ms": -5},
        {"reason": None},
    ],
    ids=repr,
)
def test_malformed_case_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        make_case(**changes)


def test_case_is_frozen() -> None:
    case = make_case()
    with pytest.raises(dataclasses.FrozenInstanceError):
        case.reason = "changed"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Property: any text survives as its XML-safe form

NASTY = st.sampled_from(["\x00", "\x01", "\x1f", "\r", "\n", "\t", "<", ">", "&", "]", "\ufffe"])
ANY_TEXT = st.text(alphabet=st.one_of(st.characters(exclude_categories=()), NASTY), max_size=80)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=3), reason=ANY_TEXT, name=ANY_TEXT)
def test_any_text_round_trips_as_its_safe_form(texts: list[str], reason: str, name: str) -> None:
    messages = tuple(
        make_message(message_id=f"m{i}", text=text) for i, text in enumerate(texts, start=1)
    )
    case = make_case(messages=messages, files=(make_file(name=name),), reason=reason)

    root = parse(export_cybertipline_xml(case))
    check_order(root)
    contents = [text_of(c.find("content")) for c in root.findall("internetDetails/chatImIncident")]
    assert contents == [xml_safe_text(text) for text in texts]
    info = text_of(root.find("additionalInfo"))
    assert f"Reason given by the reporting user:\n{xml_safe_text(reason)}\n" in info

    (file_document,) = export_cybertipline_file_details_xml(case)
    assert text_of(parse(file_document).find("originalFileName")) == xml_safe_text(name)

    data = json.loads(export_case_json(case))
    assert [m["text"] for m in data["messages"]] == contents
    assert data["reason"] == xml_safe_text(reason)
    altered = {f"messages[{i}].text" for i, t in enumerate(texts) if xml_safe_text(t) != t}
    assert altered <= set(data["altered_fields"])


# --------------------------------------------------------------------------------------------
# Threshold events (private matching)


def make_match_case(**changes: Any) -> MatchCase:
    fields: dict[str, Any] = {
        "event_id": "e_AAAAAAAAAAAAAAAAAAAAAA",
        "incident_type": INCIDENT_TYPES[0],
        "detected_at_ms": T0,
        "escalated_at_ms": T0 + 60_000,
        "esp_name": "Example Messenger",
        "esp_contact_email": "safety@example.org",
        "reviewer": "rita",
        "reported_account": "mallory",
        "reported_account_created_at_ms": T0 - 86_400_000,
        "device_id": "DEVICE1",
        "images": (
            MatchedImage(bank="ncmec", entry_id=7, label="<known>", distance_bits=0, pdq_hex=SHA_A),
            MatchedImage(bank="ncmec", entry_id=9, label="", distance_bits=12, pdq_hex=SHA_B),
        ),
        "notes": "confirmed\r\nby two reviewers\x00",
        "log_index": 42,
    }
    return MatchCase(**(fields | changes))


def test_a_match_case_follows_the_report_schema_order() -> None:
    root = parse(export_match_cybertipline_xml(make_match_case()))
    check_order(root)
    assert [c.tag for c in root] == [
        "incidentSummary",
        "internetDetails",
        "reporter",
        "personOrUserReported",
        "additionalInfo",
    ]
    assert text_of(root.find("incidentSummary/incidentDateTime")) == "2023-11-14T22:13:20.000+00:00"
    assert text_of(root.find("personOrUserReported/deviceId/idValue")) == "DEVICE1"
    info = text_of(root.find("internetDetails/chatImIncident/additionalInfo"))
    assert "bank ncmec, entry 7 (<known>)" in info and "12 bits" in info
    note = text_of(root.find("additionalInfo"))
    assert "Transparency log entry 42." in note and "confirmed\nby two reviewers\ufffd" in note
    assert root.find("intendedRecipient") is None


def test_a_match_case_as_json() -> None:
    body = export_match_case_json(make_match_case())
    obj = json.loads(body)
    assert canonical_json(obj) == body
    assert obj["format"] == "accord.match-case-export.v1"
    assert [i["entry_id"] for i in obj["images"]] == [7, 9]
    assert obj["images"][1]["pdq"] == SHA_B and obj["transparency_log_index"] == 42
    assert obj["notes"] == "confirmed\nby two reviewers\ufffd" and obj["altered_fields"] == [
        "notes"
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"incident_type": "Spam"},
        {"reviewer": ""},
        {"device_id": ""},
        {"detected_at_ms": -1},
        {"log_index": -1},
        {"images": [MatchedImage("b", 1, "", 0, SHA_A)]},  # a list, not a tuple
    ],
)
def test_malformed_match_case_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        make_match_case(**changes)


@pytest.mark.parametrize(
    "changes",
    [{"pdq_hex": "A" * 64}, {"pdq_hex": "a" * 63}, {"entry_id": -1}, {"distance_bits": True}],
)
def test_malformed_matched_image_is_rejected(changes: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "bank": "b",
        "entry_id": 1,
        "label": "",
        "distance_bits": 0,
        "pdq_hex": SHA_A,
    }
    with pytest.raises(InvalidInput):
        MatchedImage(**(fields | changes))
