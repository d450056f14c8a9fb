"""Shared by the lawful-access integration tests: approvers, an agency and warrants against a
real server.

Authorities act through `accord.client.authority` (what the CLI runs). A dishonest provider is
played by editing the server's own database between requests, as the other integration tests
do: the server then serves what it stores, and the clients must refuse it.

Time is the module's `TestClock`: the server process, the devices and the authorities read the
same clock, and a test moves it past a window's end instead of waiting for it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from accord.client import authority as au
from accord.client.client import AccordClient
from accord.clock import now_s
from accord.protocols.access.agency import AgencyKey
from accord.protocols.access.approvers import ApproverRole, ApproverSet, SignedApproverSet
from accord.protocols.access.warrant import SignedWarrant
from accord.protocols.translog.note import generate_cosigner, generate_signer
from accord.server.process import ServerProcess, free_port
from accord.server.translog import DEFAULT_LOG_ORIGIN, LOG_KEY_FILE
from accord.storage.db import begin_write, make_engine, sqlite_url
from accord.storage.schema import access_warrants, accounts
from accord.wire.access import WarrantSubmitted
from accord_testing import TEST_KDF_COST, TestClock, make_manifest, start_server
from accord_testing import start_witness as testing_start_witness

PASS = "test passphrase"
GENESIS: dict[str, str] = {}
"""Per server URL, the genesis approver set its authorities published: what the deployment
configures its clients with (`ACCORD_APPROVER_SET`), never learnt from the server."""
ROLES = {
    "judge": ApproverRole.ISSUING_AUTHORITY,
    "commissioner": ApproverRole.JUDICIAL_COMMISSIONER,
    "oversight": ApproverRole.OVERSIGHT_BODY,
    "outsider": ApproverRole.OVERSIGHT_BODY,
    "newcomer": ApproverRole.OVERSIGHT_BODY,
}


@dataclass
class Authorities:
    """Approver and agency keys on disk (made once per module), and what the server logged."""

    root: Path
    clock: TestClock
    keys: dict[str, au.ApproverKey] = field(default_factory=dict)
    agency_key_file: Path | None = None
    approver_set: SignedApproverSet | None = None
    agency: AgencyKey | None = None

    @classmethod
    def make(cls, root: Path, clock: TestClock) -> Authorities:
        root.mkdir(parents=True, exist_ok=True)
        world = cls(root, clock)
        for name, role in ROLES.items():
            path = root / f"{name}.key"
            au.generate_approver_key(name, role.value, path)
            world.keys[name] = au.load_approver_key(path)
        world.agency_key_file = root / "nca.key"
        au.generate_agency_key("nca", world.agency_key_file)
        return world

    def now(self) -> int:
        return now_s(self.clock)

    def wait_until(self, moment: float) -> None:
        """Move the shared clock past `moment` (nothing sleeps)."""
        self.clock.advance_past(moment)

    def signers(self, *names: str) -> list[au.ApproverKey]:
        return [self.keys[n] for n in names]

    def publish(
        self,
        server: ServerProcess,
        members: Sequence[str] = ("commissioner", "judge", "oversight"),
        *,
        threshold: int = 2,
        signed_by: Sequence[str] = ("judge", "commissioner"),
        replaces: SignedApproverSet | None = None,
    ) -> SignedApproverSet:
        signed = au.create_approver_set(
            threshold, [self.keys[m].approver for m in members], replaces=replaces
        )
        signed = au.sign_approver_set_with(signed, self.signers(*signed_by))
        au.publish_approver_set(server.url, server.admin_token(), signed)
        self.approver_set = signed
        if replaces is None:
            GENESIS.setdefault(server.url, signed.approver_set.set_hash.hex())
        return signed

    def register(
        self, server: ServerProcess, signed_by: Sequence[str] = ("judge", "oversight")
    ) -> AgencyKey:
        assert self.agency_key_file is not None
        signed, _ = au.register_agency(
            server.url,
            Path(str(self.agency_key_file) + ".pub"),
            self.signers(*signed_by),
            self.root / "agency-home",
            clock=self.clock,
        )
        self.agency = signed.key
        return signed.key

    @property
    def current_set(self) -> ApproverSet:
        assert self.approver_set is not None
        return self.approver_set.approver_set

    def warrant(
        self,
        target: str,
        *,
        start: int | None = None,
        end: int | None = None,
        scope: Sequence[str] = ("content", "metadata"),
        signed_by: Sequence[str] = ("judge", "commissioner"),
        disclose_after_s: int = 180 * 86400,
        max_duration_s: int = 30 * 86400,
        agency: AgencyKey | None = None,
    ) -> SignedWarrant:
        t = self.now()
        signed = au.draft_warrant(
            target=target,
            agency=agency or self.agency,  # type: ignore[arg-type]
            scope=scope,
            start_time=t if start is None else start,
            end_time=t + 3600 if end is None else end,
            case_reference="CASE-77",
            disclose_after_s=disclose_after_s,
            max_duration_s=max_duration_s,
        )
        approved_at = min(t - 1, signed.warrant.start_time)
        for name in signed_by:
            signed = au.sign_warrant(signed, self.keys[name], now=approved_at)
        return signed

    def submit(self, server: ServerProcess, signed: SignedWarrant) -> WarrantSubmitted:
        return au.submit_warrant(server.url, signed)

    def fetch(self, server: ServerProcess, warrant_id: str, **kw: Any) -> au.FetchResult:
        assert self.agency_key_file is not None
        return au.fetch_records(
            server.url, au.load_agency_key(self.agency_key_file), warrant_id, **kw
        )


def account(root: Path, server: ServerProcess, name: str, **kw: Any) -> AccordClient:
    """A device on the server's clock, configured with the deployment's genesis approver set."""
    kw.setdefault("clock", server.clock)  # type: ignore[attr-defined]
    if "manifest" not in kw:
        kw["insecure_dev"] = True
        kw.setdefault("approver_set", GENESIS.get(server.url))
    return AccordClient.create_account(
        root / name, server.url, name, PASS, **kw, kdf_cost=TEST_KDF_COST
    )


@contextmanager
def server_db(server: ServerProcess) -> Iterator[Connection]:
    """The server's own database, to play a dishonest provider: one write transaction, so
    reading and then changing rows while the server runs waits for its commits."""
    engine: Engine = make_engine(server.db_url or sqlite_url(server.data_dir))
    try:
        with begin_write(engine) as conn:
            yield conn
    finally:
        engine.dispose()


def tamper_warrant(server: ServerProcess, warrant_id: str, **values: Any) -> None:
    with server_db(server) as conn:
        if "target" in values:
            values["target_account_id"] = conn.execute(
                select(accounts.c.id).where(accounts.c.name == values.pop("target"))
            ).scalar_one()
        if isinstance(values.get("signed_warrant"), SignedWarrant):
            values["signed_warrant"] = values["signed_warrant"].to_bytes().decode()
        conn.execute(
            update(access_warrants)
            .where(access_warrants.c.warrant_id == bytes.fromhex(warrant_id))
            .values(**values)
        )


def warrant_row(server: ServerProcess, warrant_id: str) -> Any:
    with server_db(server) as conn:
        return conn.execute(
            select(access_warrants).where(access_warrants.c.warrant_id == bytes.fromhex(warrant_id))
        ).one()


def refusal_codes(client: AccordClient) -> list[str]:
    return [r.code for r in client.access.refusals]


def device_refuses(client: AccordClient, code: str) -> None:
    """The device's next sync refuses the warrant with ``code`` and acts on nothing."""
    result = client.access.sync()
    assert result.accepted == []
    assert code in [r.code for r in result.refused], result.refused
    assert client.access.active_warrants() == []


@dataclass(frozen=True)
class WitnessedLog:
    """A server data directory holding its log key, and a witness's key file and port."""

    data: Path
    log_vkey: str
    witness_key: Path
    witness_vkey: str
    port: int

    @property
    def server_args(self) -> list[str]:
        return ["--witness", f"http://127.0.0.1:{self.port}"]


def witnessed_log(root: Path) -> WitnessedLog:
    """Keys for a log and one witness under ``root`` (nothing is started)."""
    data = root / "server"
    data.mkdir()
    log_skey, log_vkey = generate_signer(DEFAULT_LOG_ORIGIN)
    (data / LOG_KEY_FILE).write_text(log_skey + "\n")
    os.chmod(data / LOG_KEY_FILE, 0o600)
    skey, vkey = generate_cosigner("witness.test/w1")
    key = root / "witness.key"
    key.write_text(skey + "\n")
    key.chmod(0o600)
    return WitnessedLog(data, log_vkey, key, vkey, free_port())


def start_witness(
    root: Path, key: Path, log_vkey: str, port: int, clock: TestClock | None = None
) -> subprocess.Popen[bytes]:
    """`accord witness serve` on a loopback port, dating its cosignatures by `clock`."""
    return testing_start_witness(root, key, log_vkey, port, clock.env if clock else None)


@dataclass(frozen=True)
class WitnessedDeployment:
    """A running server whose log a witness cosigns, its authorities (approver set published,
    agency registered) and the log's keys."""

    server: ServerProcess
    auth: Authorities
    log: WitnessedLog

    def manifest(self, **bounds: Any) -> str:
        """A deployment manifest for this log and witness, naming the published genesis set;
        `bounds` as `make_manifest` takes them."""
        genesis = GENESIS[self.server.url]
        return make_manifest(
            self.log.log_vkey, [self.log.witness_vkey], approver_set=genesis, **bounds
        )


@contextmanager
def witnessed_deployment(
    root: Path, clock: TestClock, env: dict[str, str] | None = None
) -> Iterator[WitnessedDeployment]:
    """Start a witness and a server (`env`: the operator's settings) under ``root``; stop both
    on the way out."""
    w = witnessed_log(root)
    witness = start_witness(root, w.witness_key, w.log_vkey, w.port, clock)
    try:
        server = start_server(w.data, clock=clock, extra_args=w.server_args, env=env)
        try:
            auth = Authorities.make(root / "authorities", clock)
            auth.publish(server)
            auth.register(server)
            yield WitnessedDeployment(server, auth, w)
        finally:
            server.stop()
    finally:
        witness.kill()
        witness.wait()
