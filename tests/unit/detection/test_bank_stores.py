"""The `BankStore` contract, run against every implementation.

`SqlBankStore` (here in memory) holds the banks itself; `RemoteBankStore` reaches a real server
app, in process, through its operator API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from accord.client.banks import RemoteBankStore
from accord.client.operator import OperatorApi
from accord.errors import Conflict, NotFound
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.hashers import PdqResult
from accord.protocols.detection.matching import MatchQuery
from accord.protocols.detection.signals import Md5Hash, PdqHash
from accord.protocols.detection.variants import NamedHash
from accord.server.app import create_app
from accord.server.config import ServerConfig, ensure_admin_token
from accord.storage.banks import BankStore, MemoryBankStore

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
# PDQ with its first four bits flipped: distance 4.
PDQ_NEAR = "08f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "facefacefacefacefacefacefaceface"


class BankStoreContract:
    """What every bank store does, wherever its banks are."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[BankStore]:
        raise NotImplementedError

    def test_create_get_and_list(self, store: BankStore) -> None:
        info = store.create_bank("alpha", threshold=28)
        assert (info.name, info.threshold, info.entry_count, info.enabled_count) == (
            "alpha",
            28,
            0,
            0,
        )
        assert len(info.version) == 64 and store.get_bank("alpha").version == info.version
        store.create_bank("beta")
        assert [b.name for b in store.list_banks()] == ["alpha", "beta"]
        with pytest.raises(Conflict):
            store.create_bank("alpha")
        with pytest.raises(NotFound):
            store.get_bank("gamma")

    def test_add_entries_counts_only_new_ones(self, store: BankStore) -> None:
        before = store.create_bank("b").version
        entries = [
            BankEntry.parse("pdq", PDQ, label="A1", source="file:x"),
            BankEntry.parse("md5", MD5, label="A1", source="file:x"),
        ]
        assert store.add_entries("b", entries) == 2
        assert store.add_entries("b", entries) == 0
        info = store.get_bank("b")
        assert (info.entry_count, info.enabled_count) == (2, 2) and info.version != before
        with pytest.raises(NotFound):
            store.add_entries("nope", entries)

    def test_import_then_export(self, store: BankStore) -> None:
        store.create_bank("b")
        data = f"type,hash,label\npdq,{PDQ},B2\nmd5,{MD5},A1\n".encode()
        result = store.import_file("b", data, "csv", source="csv:list.csv")
        assert result.added == 2 and result.parsed in (2, None)
        assert store.import_file("b", data, "csv", source="csv:list.csv").added == 0
        exported = "".join(store.export_file("b", "csv")).splitlines()
        assert exported == ["type,hash,label", f"pdq,{PDQ},B2", f"md5,{MD5},A1"]
        hma = "".join(store.export_file("b", "hma")).splitlines()
        assert hma[0] == "signal_type,signal_str,collab,category,tags" and len(hma) == 3

    def test_matcher(self, store: BankStore) -> None:
        store.create_bank("b", threshold=10)
        store.create_bank("other")
        store.add_entries("b", [BankEntry.parse("pdq", PDQ, label="A1", source="file:x")])
        store.add_entries("other", [BankEntry.parse("md5", MD5, label="B1", source="file:y")])
        query = MatchQuery.from_hashes([PdqHash.from_hex(PDQ_NEAR), Md5Hash.from_hex(MD5)])

        (hit,) = store.open_matcher(["b"]).match(query)
        assert (hit.bank, hit.signal_type, hit.distance, hit.label, hit.via, hit.hash) == (
            "b",
            "pdq",
            4,
            "A1",
            "original",
            PDQ,
        )
        every = store.open_matcher().match(query)
        assert {(m.bank, m.signal_type, m.label) for m in every} == {
            ("b", "pdq", "A1"),
            ("other", "md5", "B1"),
        }
        unrelated = MatchQuery.from_hashes([Md5Hash.from_hex("00" * 16)])
        assert store.open_matcher().match(unrelated) == []

    def test_hash_for_the_verifying_stage_alone_never_matches_by_hash(
        self, store: BankStore
    ) -> None:
        """A hash derived from an image below the quality gate (`verified_only`) finds nothing
        where nothing checks the image: a hash-only bank here, and the server (never sent)."""
        store.create_bank("b")
        store.add_entries("b", [BankEntry.parse("pdq", PDQ, label="A1", source="file:x")])
        lifted = NamedHash("lifted", PdqResult(PdqHash.from_hex(PDQ), 100), verified_only=True)
        assert store.open_matcher(["b"]).match(MatchQuery(pdq=(lifted,))) == []


class TestSqlBankStore(BankStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[BankStore]:
        store = MemoryBankStore()
        yield store
        store.close()


class TestRemoteBankStore(BankStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[BankStore]:
        config = ServerConfig(data_dir=tmp_path / "server")
        app = create_app(config)
        with TestClient(app) as client:
            api = OperatorApi(
                "http://testserver",
                ensure_admin_token(config.data_dir),
                transport=client._transport,
            )
            store = RemoteBankStore(api)
            yield store
            store.close()

    def test_bank_list_gives_no_counts_by_type(self, store: BankStore) -> None:
        store.create_bank("b")
        assert store.get_bank("b").counts_by_type is None
