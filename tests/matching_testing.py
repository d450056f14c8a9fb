"""Helpers for tests of private matching through a real server: publish a table as the operator,
wait for the server's worker, and read what the server's database holds for one account (the
voucher key opened with the server's secrets key, as the operator could)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select

from accord.client.operator import OperatorApi
from accord.primitives.shamir import Share, field_element_from_bytes
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.hashers import hash_file
from accord.protocols.private_matching.voucher import OpenedShare
from accord.server.private_matching.worker import EPOCH_KEY_SECRETS
from accord.server.secrets import FileSecretsKey
from accord.storage.db import make_engine, sqlite_url
from accord.storage.schema import pm_epochs, pm_shares
from accord_testing import eventually


def admin_client(server: Any) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token()}"}
    )


def drain_matching(server: Any, timeout_s: float = 120.0) -> dict[str, Any]:
    """Wait until the server has processed every queued voucher; its matching status."""
    with admin_client(server) as op:

        def drained() -> dict[str, Any] | None:
            status: dict[str, Any] = op.get("/v1/matching/status").json()
            done = status["queued"] == 0 and status["crossings_unlogged"] == 0
            return status if done else None

        return eventually(drained, "every queued voucher processed", timeout_s=timeout_s)


def bank_and_publish(server: Any, bank: str, pool: list[Path], **params: int) -> dict[str, Any]:
    """The operator banks the PDQ hashes of `pool` and publishes (and logs) a table."""
    op = OperatorApi(server.url, server.admin_token())
    try:
        op.create_bank(bank, 31)
        op.add_entries(
            bank,
            [
                BankEntry(signal_type="pdq", hash=hash_file(p).pdq.hash, source=f"file:{p.name}")  # type: ignore[union-attr]
                for p in pool
            ],
        )
        return op.publish_table({"banks": [bank], **params}).model_dump()
    finally:
        op.close()


def server_engine(server: Any) -> Engine:
    return make_engine(server.db_url or sqlite_url(server.data_dir))


def stored_shares(
    server: Any, account: str
) -> tuple[list[OpenedShare], bytes | None, bytes | None]:
    """What the server's database holds for one account: its opened shares, its voucher key as
    stored (sealed) and that key opened with the server's secrets key (None before a
    crossing)."""
    engine = server_engine(server)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(pm_shares).where(pm_shares.c.matching_account == account)
            ).all()
            key = conn.execute(
                select(pm_epochs.c.voucher_key, pm_epochs.c.epoch).where(
                    pm_epochs.c.matching_account == account
                )
            ).first()
    finally:
        engine.dispose()
    shares = [
        OpenedShare(
            voucher_id=bytes(r.voucher_id),
            epoch=r.epoch,
            header=bytes(r.header),
            share=Share(field_element_from_bytes(bytes(r.x)), field_element_from_bytes(bytes(r.y))),
            tag=(),
            inner_nonce=bytes(r.inner_nonce),
            inner_ciphertext=bytes(r.inner),
        )
        for r in rows
    ]
    if key is None:
        return shares, None, None
    secrets = FileSecretsKey(path=server.data_dir / "secrets.key")
    sealed = bytes(key.voucher_key)
    return shares, sealed, EPOCH_KEY_SECRETS.open(secrets, sealed, f"{account}/{key.epoch}")


class TableRequests(httpx.BaseTransport):
    """A client's transport to the real server that records the paths of its table downloads;
    with `change_delta`, it plays a dishonest server answering the delta route with the real
    delta changed by that function."""

    def __init__(self, change_delta: Callable[[bytes], bytes] | None = None) -> None:
        self._real = httpx.HTTPTransport()
        self._change = change_delta
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/v1/matching/tables/"):
            self.paths.append(path)
        response = self._real.handle_request(request)
        if self._change is None or not path.endswith("/delta") or response.status_code != 200:
            return response
        data = response.read()
        response.close()
        return httpx.Response(200, content=self._change(data))
