"""Bank file formats: CSV, python-threatexchange/HMA, NCMEC XML. Malformed input and fuzzing."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput, TooLarge
from accord.protocols.detection import importers
from accord.protocols.detection.importers import (
    ImportResult,
    export_csv,
    export_hma,
    parse_bank_file,
    parse_csv,
    parse_hma,
    parse_ncmec_xml,
)
from accord.protocols.detection.signals import Md5Hash, PdqHash, Sha256Hash

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "facefacefacefacefacefacefaceface"

NCMEC = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2">
    <images count="2" maxTimestamp="2017-10-24T15:10:00Z">
        <image>
            <member id="42">Example Member</member>
            <timestamp>2017-10-24T15:00:00Z</timestamp>
            <id>image1</id>
            <classification>A1</classification>
            <fingerprints>
                <md5>{MD5}</md5>
                <sha1>a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1</sha1>
                <pdq>{PDQ}</pdq>
            </fingerprints>
        </image>
        <deletedImage>
            <member id="43">Example Member2</member>
            <id>image4</id>
            <timestamp>2017-10-24T15:10:00Z</timestamp>
        </deletedImage>
    </images>
    <videos count="1" maxTimestamp="2019-11-24T15:10:00Z">
        <video>
            <member id="101">TX Example</member>
            <id>largetags</id>
            <classification>B2</classification>
            <fingerprints>
                <md5>{MD5[::-1]}</md5>
                <tmk-pdqf rel="self" href="/v2/entries/1/fingerprints/TMK_PDQF"/>
            </fingerprints>
        </video>
    </videos>
</queryResult>""".encode()


def test_csv() -> None:
    result = parse_csv(f"type,hash,label\npdq,{PDQ},A1\nmd5,{MD5}\n\nvideo_md5,{MD5.upper()},B2\n")
    kinds = [(e.signal_type, e.label) for e in result.entries]
    assert kinds == [("pdq", "A1"), ("md5", ""), ("md5", "B2")]
    assert result.entries[0].hash == PdqHash.from_hex(PDQ)


@pytest.mark.parametrize(
    "text,where",
    [
        (f"pdq,{PDQ[:-1]}\n", "line 1"),
        (f"pdq,{PDQ}\nmd5,zz{MD5[2:]}\n", "line 2"),
        (f"url,{PDQ}\n", "line 1"),
        ("pdq\n", "line 1"),
        (f"pdq,{PDQ},A1,extra\n", "line 1"),
        (f'pdq,"{PDQ}\n', ""),
        (f"pdq,{PDQ},bad\x01label\n", "line 1"),
    ],
)
def test_csv_errors_name_the_line_not_the_value(text: str, where: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_csv(text)
    assert where in info.value.message
    assert PDQ[:20] not in info.value.message and MD5[4:20] not in info.value.message


def test_hma_export_format() -> None:
    text = (
        "signal_type,signal_str,collab,category,tags\n"
        f"pdq,{PDQ},Sample Data,POSITIVE_CLASS,gifct_terror violence\n"
        f"video_md5,{MD5},Sample Data,NEGATIVE_CLASS,\n"
        "url,https://example.org,Sample Data,POSITIVE_CLASS,\n"
    )
    result = parse_hma(text)
    assert result.skipped == 1
    assert [(e.signal_type, e.enabled, e.label) for e in result.entries] == [
        ("pdq", True, "gifct_terror violence"),
        ("md5", False, ""),
    ]
    assert result.entries[0].source == "hma:Sample Data"
    with pytest.raises(InvalidInput):
        parse_hma("type,hash\npdq,00\n")
    with pytest.raises(InvalidInput):
        parse_hma("")


def test_ncmec_xml() -> None:
    result = parse_ncmec_xml(NCMEC)
    assert [(e.signal_type, e.label, e.source) for e in result.entries] == [
        ("md5", "A1", "ncmec:42/image1"),
        ("pdq", "A1", "ncmec:42/image1"),
        ("md5", "B2", "ncmec:101/largetags"),
    ]
    assert result.deleted_sources == ["ncmec:43/image4"]
    assert result.skipped == 2  # sha1, tmk-pdqf


@pytest.mark.parametrize(
    "doc",
    [
        b"<queryResult><images><image><fingerprints/></image></images></queryResult>",
        b"<status/>",
        b"<queryResult><images><image><id>x</id><fingerprints><pdq>12</pdq></fingerprints>"
        b"</image></images></queryResult>",
        b"<queryResult>",
        b"\xff\xfe not xml",
        # entity expansion ("billion laughs") and external entities are refused
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<queryResult>&b;</queryResult>",
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<queryResult>&x;</queryResult>",
    ],
)
def test_ncmec_malformed(doc: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_ncmec_xml(doc)


def test_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importers, "NCMEC_MAX_XML_BYTES", 100)
    with pytest.raises(TooLarge):
        parse_ncmec_xml(NCMEC)
    monkeypatch.setattr(importers, "IMPORT_MAX_ENTRIES", 1)
    with pytest.raises(TooLarge):
        parse_csv(f"pdq,{PDQ}\nmd5,{MD5}\nmd5,{MD5}\n")
    monkeypatch.setattr(importers, "IMPORT_MAX_BYTES", 10)
    with pytest.raises(TooLarge):
        parse_bank_file(f"pdq,{PDQ}\n".encode(), "csv")


def test_not_utf8() -> None:
    with pytest.raises(InvalidInput):
        parse_bank_file(b"pdq,\xff\xfe\n", "csv")


def test_exports_round_trip() -> None:
    entries = parse_csv(f"pdq,{PDQ},A1\nmd5,{MD5},B1\nsha256,{'ab' * 32},\n").entries
    csv_text = "".join(export_csv(entries))
    assert parse_csv(csv_text).entries == entries
    hma_text = "".join(export_hma(entries))
    back = parse_hma(hma_text).entries
    assert [(e.signal_type, e.hash, e.label) for e in back] == [
        ("pdq", PdqHash.from_hex(PDQ), "A1"),
        ("md5", Md5Hash.from_hex(MD5), "B1"),
        ("sha256", Sha256Hash.from_hex("ab" * 32), ""),
    ]  # sha256 goes out as python-threatexchange's video_sha256
    assert "video_sha256," in hma_text


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=600))
def test_fuzz_csv(text: str) -> None:
    for parse in (parse_csv, parse_hma):
        with contextlib.suppress(InvalidInput):
            parse(text)


@FUZZ
@given(
    st.lists(
        st.sampled_from(["pdq", "md5", ",", "\n", '"', PDQ, MD5, "A1", "\r", "x"]), max_size=40
    )
)
def test_fuzz_csv_structured(parts: list[str]) -> None:
    with contextlib.suppress(InvalidInput):
        parse_csv("".join(parts))


@FUZZ
@given(st.binary(max_size=800))
def test_fuzz_ncmec_bytes(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        parse_ncmec_xml(data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(NCMEC) - 1), st.integers(0, 255)), max_size=6))
def test_fuzz_ncmec_mutations(flips: list[tuple[int, int]]) -> None:
    data = bytearray(NCMEC)
    for pos, value in flips:
        data[pos] = value
    with contextlib.suppress(InvalidInput):
        parse_ncmec_xml(bytes(data))


def test_video_sha256_rows_kept() -> None:
    """A python-threatexchange export's video_sha256 rows are stored as SHA-256 entries."""
    sha = "cd" * 32
    text = f"signal_type,signal_str,collab,category,tags\nvideo_sha256,{sha},c1,POSITIVE_CLASS,T\n"
    (entry,) = parse_hma(text).entries
    assert (entry.signal_type, entry.hash, entry.label) == ("sha256", Sha256Hash.from_hex(sha), "T")


class _NoWholeReads(io.BytesIO):
    """A file that refuses to be read whole: a streamed import reads lines of bounded size."""

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and 0 <= size <= 1 << 20
        return super().read(size)

    def read1(self, size: int = -1) -> bytes:
        assert 0 <= size <= 1 << 20
        return super().read1(size)


def test_streamed_csv_reads_in_bounded_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = "".join(f"md5,{i:032x},L\n" for i in range(20_000)).encode()
    result = ImportResult()
    entries = list(importers.read_bank_entries(_NoWholeReads(lines), "csv", result))
    assert len(entries) == 20_000 and entries[-1].hash == Md5Hash.from_hex(f"{19_999:032x}")
    monkeypatch.setattr(importers, "IMPORT_MAX_LINE_CHARS", 100)
    with pytest.raises(TooLarge):
        list(importers.read_bank_entries(io.BytesIO(b"md5," + b"a" * 200 + b"\n"), "csv", result))
    monkeypatch.setattr(importers, "IMPORT_MAX_BYTES", 1000)
    with pytest.raises(TooLarge):
        list(importers.read_bank_entries(io.BytesIO(lines), "csv", result))


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_streamed_files(data: bytes) -> None:
    for fmt in ("csv", "hma"):
        with contextlib.suppress(InvalidInput):
            list(importers.read_bank_entries(io.BytesIO(data), fmt, ImportResult()))


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n")))
def test_upload_pieces_keep_every_line(lines: list[bytes]) -> None:
    """`bank import --server` sends whole lines in bounded pieces; an HMA piece repeats the
    header, and the pieces hold every line once."""
    from accord.client.banks import line_pieces

    data = b"".join(lines)
    pieces = list(line_pieces(io.BytesIO(data), 100, repeat_header=False))
    assert b"".join(pieces) == data
    assert all(len(p) <= 100 or p.count(b"\n") == 1 for p in pieces)
    header = b"signal_type,signal_str\n"
    hma = list(line_pieces(io.BytesIO(header + data), 100, repeat_header=True))
    assert all(p.startswith(header) for p in hma)
    assert b"".join(p[len(header) :] for p in hma) == data


def test_upload_pieces_refuse_a_huge_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.client import banks

    monkeypatch.setattr(banks, "IMPORT_MAX_LINE_CHARS", 10)
    with pytest.raises(TooLarge):
        list(banks.line_pieces(io.BytesIO(b"x" * 50), 100, repeat_header=False))
