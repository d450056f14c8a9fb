"""Trust-and-safety review of verified reports (docs/console.md).

Reviewer accounts (Argon2id passwords, roles reviewer and admin) and their sessions; the report
queue; attachments shown blurred until a reviewer reveals one; actions on the reported account
(dismiss, warn, suspend and its undo, escalate); exports of escalated cases; and an append-only,
hash-chained audit trail of every reviewer action. The console (accord.console) and the JSON API
(`/v1/review/...`) are thin layers over this service.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import zipfile
from dataclasses import dataclass
from typing import Any, Literal

from anyio import to_thread
from PIL import Image, ImageFilter
from sqlalchemy import Connection, and_, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import (
    AuthenticationError,
    AuthorizationError,
    Conflict,
    InvalidInput,
    LoginBusy,
    LoginThrottled,
    NotFound,
)
from accord.primitives.encoding import canonical_json
from accord.primitives.passwords import hash_password, verify_password
from accord.protocols.cybertipline import (
    Case,
    CaseFile,
    CaseMessage,
    MatchCase,
    MatchedImage,
    export_case_json,
    export_cybertipline_file_details_xml,
    export_cybertipline_xml,
    export_match_case_json,
    export_match_cybertipline_xml,
)
from accord.server.limits import LoginThrottle, PasswordWorkPool
from accord.server.messaging import MessagingService
from accord.server.private_matching.events import crossing_log_index, read_event
from accord.server.reports import ReviewVault, attachment_aad
from accord.storage.db import Database, inserted_id
from accord.storage.schema import (
    account_notices,
    accounts,
    appeals,
    devices,
    pm_events,
    report_attachments,
    reports,
    review_audit,
    review_sessions,
    reviewers,
)
from accord.wire.common import is_reserved_name
from accord.wire.messaging import DeviceRef
from accord.wire.reports import (
    AccountOverview,
    Appeal,
    AppealList,
    AuditEntry,
    AuditTrail,
    Notice,
    NoticeList,
    ReportDetail,
    ReportList,
    ReportSummary,
    ReviewedAttachment,
    ReviewedMessage,
)

ROLES = ("reviewer", "admin")
SESSION_TTL_MS = 8 * 3600 * 1000
ACTIONS = ("dismiss", "warn", "suspend", "unsuspend", "escalate", "reopen")
ADMIN_ACTIONS = ("unsuspend",)
STATUS_AFTER = {
    "dismiss": "dismissed",
    "warn": "warned",
    "suspend": "suspended",
    "unsuspend": "open",
    "escalate": "escalated",
    "reopen": "open",
}
STATUSES = ("open", "dismissed", "warned", "suspended", "escalated")
# Threshold events (private matching) get the same decisions, with "confirm" for a match that
# breaks the rules but needs no more than the record (docs/console.md, "Threshold events").
EVENT_ACTIONS = ("confirm", "dismiss", "suspend", "unsuspend", "escalate", "reopen")
EVENT_STATUS_AFTER = {
    "confirm": "confirmed",
    "dismiss": "dismissed",
    "suspend": "suspended",
    "unsuspend": "open",
    "escalate": "escalated",
    "reopen": "open",
}
EVENT_STATUSES = ("open", "confirmed", "dismissed", "suspended", "escalated")
WARNING_TEXT = (
    "Trust and safety reviewed a report about a message from this account and found it breaks "
    "the service's rules. Further reports may lead to suspension."
)
APPEAL_LIFTED_TEXT = (
    "Trust and safety reviewed your appeal and lifted the suspension of this account."
)
APPEAL_UPHELD_TEXT = (
    "Trust and safety reviewed your appeal and kept the suspension of this account."
)
MAX_NOTICES_PER_PAGE = 100
MAX_NOTE_CHARS = 2000
PREVIEW_PIXELS = 320
MAX_PREVIEW_SOURCE_PIXELS = 50_000_000
GENESIS_CHAIN = bytes(32)
DEFAULT_INCIDENT_TYPE = "Child Pornography (possession, manufacture, and distribution)"
# The audit trail's actor for login attempts that proved no identity (a reserved name, so no
# reviewer can hold it).
LOGIN_AUDIT_ACTOR = "system"


@dataclass(frozen=True)
class ActingReviewer:
    """Who acts in the review API: a reviewer with a session, or the operator (as an admin)."""

    name: str
    role: str


OPERATOR_AS_REVIEWER = ActingReviewer(name="operator", role="admin")


@dataclass(frozen=True)
class ReviewerSession:
    token: str
    csrf_token: str
    reviewer: str
    role: str
    expires_at: int


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def audit_link(previous: bytes, at: int, actor: str, action: str, target: str, note: str) -> bytes:
    """The chain value of an audit entry: SHA-256 over the previous one and this entry."""
    body = canonical_json(
        {"at": at, "actor": actor, "action": action, "target": target, "note": note}
    )
    return hashlib.sha256(previous + body).digest()


def verify_audit_chain(entries: list[AuditEntry]) -> bool:
    """True iff `entries` (oldest first, from the first one) form an unbroken chain."""
    previous = GENESIS_CHAIN
    for e in entries:
        link = audit_link(previous, e.at, e.actor, e.action, e.target, e.note)
        if link.hex() != e.chain:
            return False
        previous = link
    return True


def _blurred_preview(media_type: str, data: bytes | None) -> bytes:
    """A small, heavily blurred PNG: enough to tell 'a photo' from 'a document', not what it
    shows. Non-images and missing files get a plain grey tile."""
    tile = Image.new("L", (PREVIEW_PIXELS, PREVIEW_PIXELS // 4 * 3), 160)
    if data is not None and media_type.startswith("image/"):
        try:
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h <= MAX_PREVIEW_SOURCE_PIXELS:
                    img.draft("RGB", (64, 64))
                    small = img.convert("RGB").resize((12, 9), Image.Resampling.BOX)
                    tile = small.resize(tile.size, Image.Resampling.BILINEAR).filter(
                        ImageFilter.GaussianBlur(24)
                    )
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    out = io.BytesIO()
    tile.save(out, format="PNG")
    return out.getvalue()


class ReviewService:
    def __init__(
        self,
        db: Database,
        vault: ReviewVault,
        messaging: MessagingService,
        *,
        esp_name: str = "Accord",
        esp_contact_email: str = "safety@accord.invalid",
        clock: Clock = SYSTEM_CLOCK,
        throttle: LoginThrottle | None = None,
        password_pool: PasswordWorkPool | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.throttle = throttle or LoginThrottle(clock=clock)
        self.password_pool = password_pool or PasswordWorkPool()
        self.vault = vault
        self.messaging = messaging
        self.esp_name = esp_name
        self.esp_contact_email = esp_contact_email

    # --- reviewers and sessions -----------------------------------------------------------

    async def create_reviewer(self, name: str, password: str, role: str) -> None:
        if role not in ROLES:
            raise InvalidInput(f"role is one of {', '.join(ROLES)}")
        if is_reserved_name(name):
            raise InvalidInput("this reviewer name is reserved", code="name_reserved")
        encoded = await to_thread.run_sync(hash_password, password)

        def _tx(conn: Connection) -> None:
            conn.execute(
                insert(reviewers).values(
                    name=name,
                    password_hash=encoded,
                    role=role,
                    created_at=now_ms(self.clock),
                    disabled=False,
                )
            )

        try:
            await self.db.transact_async(_tx)
        except IntegrityError:
            raise Conflict(f"reviewer {name} already exists") from None
        await self._audit("operator", "create_reviewer", name, role)

    async def login(self, name: str, password: str, *, address: str = "") -> ReviewerSession:
        """Check a reviewer's password, throttled per name and per client `address`.

        A locked-out name or address is refused (`login_throttled`) before any Argon2id work;
        a full password pool is refused (`login_busy`). Failed and refused attempts are
        audited with the name tried and the address, never the password."""
        note = f"from {address or 'unknown'}"
        try:
            await to_thread.run_sync(self.throttle.check, name, address)
        except LoginThrottled as exc:
            await self._audit(LOGIN_AUDIT_ACTOR, exc.code, name, note)
            raise

        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(reviewers.c.id, reviewers.c.password_hash, reviewers.c.role).where(
                    reviewers.c.name == name, reviewers.c.disabled.is_(False)
                )
            ).first()

        row = await self.db.read_async(_rd)
        try:
            ok = await self.password_pool.run(
                verify_password, row.password_hash if row is not None else None, password
            )
        except LoginBusy as exc:
            await self._audit(LOGIN_AUDIT_ACTOR, exc.code, name, note)
            raise
        if not ok or row is None:
            await to_thread.run_sync(self.throttle.record_failure, name, address)
            await self._audit(LOGIN_AUDIT_ACTOR, "login_failed", name, note)
            raise AuthenticationError("wrong name or password")
        await to_thread.run_sync(self.throttle.record_success, name)
        session = ReviewerSession(
            token=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            reviewer=name,
            role=row.role,
            expires_at=now_ms(self.clock) + SESSION_TTL_MS,
        )

        def _tx(conn: Connection) -> None:
            conn.execute(
                insert(review_sessions).values(
                    token_hash=_token_hash(session.token),
                    reviewer_pk=row.id,
                    csrf_token=session.csrf_token,
                    expires_at=session.expires_at,
                )
            )
            conn.execute(
                review_sessions.delete().where(review_sessions.c.expires_at < now_ms(self.clock))
            )

        await self.db.transact_async(_tx)
        await self._audit(name, "login", name, "")
        return session

    async def session(self, token: str) -> ReviewerSession:
        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(
                    review_sessions.c.csrf_token,
                    review_sessions.c.expires_at,
                    reviewers.c.name,
                    reviewers.c.role,
                )
                .join(reviewers, reviewers.c.id == review_sessions.c.reviewer_pk)
                .where(
                    review_sessions.c.token_hash == _token_hash(token),
                    reviewers.c.disabled.is_(False),
                )
            ).first()

        row = await self.db.read_async(_rd)
        if row is None or row.expires_at < now_ms(self.clock):
            raise AuthenticationError("session expired; log in again")
        return ReviewerSession(
            token=token,
            csrf_token=row.csrf_token,
            reviewer=row.name,
            role=row.role,
            expires_at=row.expires_at,
        )

    async def logout(self, token: str) -> None:
        def _tx(conn: Connection) -> None:
            conn.execute(
                review_sessions.delete().where(review_sessions.c.token_hash == _token_hash(token))
            )

        await self.db.transact_async(_tx)

    # --- notices to accounts ---------------------------------------------------------------

    async def notices(self, account: str, *, after: int) -> NoticeList:
        """What review told an account (warnings), oldest first, after notice id `after`."""

        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(account_notices)
                .join(accounts, accounts.c.id == account_notices.c.account_id)
                .where(accounts.c.name == account, account_notices.c.id > after)
                .order_by(account_notices.c.id)
                .limit(MAX_NOTICES_PER_PAGE)
            ).all()

        rows = await self.db.read_async(_rd)
        return NoticeList(
            notices=[
                Notice(id=r.id, kind=r.kind, text=r.text, created_at=r.created_at) for r in rows
            ]
        )

    # --- the queue ------------------------------------------------------------------------

    async def list_reports(
        self,
        *,
        status: str | None = None,
        account: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> ReportList:
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status is one of {', '.join(STATUSES)}")
        n_attachments = (
            select(func.count())
            .where(report_attachments.c.report_pk == reports.c.id)
            .scalar_subquery()
        )

        def _rd(conn: Connection) -> Any:
            q = select(reports, n_attachments.label("n_attachments")).order_by(
                reports.c.created_at.desc(), reports.c.id.desc()
            )
            if status is not None:
                q = q.where(reports.c.status == status)
            if account:
                q = q.where(reports.c.reported_account == account)
            if before is not None:
                q = q.where(reports.c.created_at < before)
            return conn.execute(q.limit(max(1, min(limit, 500)))).all()

        rows = await self.db.read_async(_rd)
        return ReportList(reports=[_summary(r, r.n_attachments) for r in rows])

    async def report(self, report_id: str) -> ReportDetail:
        def _rd(conn: Connection) -> Any:
            row = conn.execute(select(reports).where(reports.c.report_id == report_id)).first()
            if row is None:
                return None, []
            files = conn.execute(
                select(report_attachments)
                .where(report_attachments.c.report_pk == row.id)
                .order_by(report_attachments.c.idx)
            ).all()
            return row, files

        row, files = await self.db.read_async(_rd)
        if row is None:
            raise NotFound("no such report")
        return _detail(row, files)

    async def account_overview(self, account: str) -> AccountOverview:
        def _rd(conn: Connection) -> Any:
            acct = conn.execute(select(accounts).where(accounts.c.name == account)).first()
            if acct is None:
                return None
            n_devices = conn.execute(
                select(func.count()).where(
                    devices.c.account_id == acct.id, devices.c.revoked_at.is_(None)
                )
            ).scalar_one()
            n_reports = conn.execute(
                select(func.count()).where(reports.c.reported_account == account)
            ).scalar_one()
            n_warnings = conn.execute(
                select(func.count()).where(
                    account_notices.c.account_id == acct.id, account_notices.c.kind == "warning"
                )
            ).scalar_one()
            return acct, n_devices, n_reports, n_warnings

        found = await self.db.read_async(_rd)
        if found is None:
            raise NotFound("no such account")
        acct, n_devices, n_reports, n_warnings = found
        return AccountOverview(
            account=account,
            created_at=acct.created_at,
            suspended=bool(acct.suspended),
            devices=n_devices,
            reports=n_reports,
            warnings=n_warnings,
        )

    # --- attachments ----------------------------------------------------------------------

    async def _attachment_row(self, report_id: str, index: int) -> Any:
        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(report_attachments)
                .join(reports, reports.c.id == report_attachments.c.report_pk)
                .where(reports.c.report_id == report_id, report_attachments.c.idx == index)
            ).first()

        row = await self.db.read_async(_rd)
        if row is None:
            raise NotFound("no such attachment")
        return row

    def _open(self, report_id: str, row: Any) -> bytes | None:
        if row.sealed_file is None:
            return None
        return self.vault.open(row.sealed_file, attachment_aad(report_id, row.idx))

    async def attachment_preview(self, report_id: str, index: int) -> tuple[str, bytes]:
        """A blurred preview; does not count as viewing the file."""
        row = await self._attachment_row(report_id, index)

        def _preview() -> bytes:
            return _blurred_preview(row.media_type, self._open(report_id, row))

        return "image/png", await to_thread.run_sync(_preview)

    async def reveal_attachment(self, report_id: str, index: int, actor: str) -> tuple[str, bytes]:
        """The file itself, for a reviewer who chose to see it (recorded and audited)."""
        row = await self._attachment_row(report_id, index)
        data = await to_thread.run_sync(self._open, report_id, row)
        if data is None:
            raise NotFound("the attachment was no longer on the server when it was reported")
        if row.viewed_at is None:

            def _tx(conn: Connection) -> None:
                conn.execute(
                    update(report_attachments)
                    .where(
                        and_(
                            report_attachments.c.report_pk == row.report_pk,
                            report_attachments.c.idx == index,
                            report_attachments.c.viewed_at.is_(None),
                        )
                    )
                    .values(viewed_at=now_ms(self.clock), viewed_by=actor)
                )

            await self.db.transact_async(_tx)
        await self._audit(actor, "view_attachment", f"{report_id}/{index}", "")
        return row.media_type, data

    # --- actions --------------------------------------------------------------------------

    async def act(
        self, report_id: str, actor: str, action: str, note: str = "", *, role: str = "reviewer"
    ) -> ReportDetail:
        """Record a decision. Lifting a suspension is for admins (role "admin", or the
        operator): a reviewer can suspend, but not undo another reviewer's suspension."""
        _check_action(action, ACTIONS, note, role=role)
        detail = await self.report(report_id)
        account = detail.reported_account
        at = now_ms(self.clock)

        def _tx(conn: Connection) -> None:
            conn.execute(
                update(reports)
                .where(reports.c.report_id == report_id)
                .values(status=STATUS_AFTER[action], updated_at=at)
            )
            _set_suspension(conn, account, action)
            if action == "warn":
                account_id = conn.execute(
                    select(accounts.c.id).where(accounts.c.name == account)
                ).scalar_one()
                conn.execute(
                    insert(account_notices).values(
                        account_id=account_id, kind="warning", text=WARNING_TEXT, created_at=at
                    )
                )
            self._append_audit(conn, at, actor, action, report_id, note)

        await self.db.transact_async(_tx)
        if action in ("suspend", "unsuspend"):
            self.messaging.forget_cached_auth()
        return await self.report(report_id)

    # --- threshold events (private matching) ----------------------------------------------

    async def act_on_event(
        self, event_id: str, actor: str, action: str, note: str = "", *, role: str = "reviewer"
    ) -> None:
        """Decide a threshold event as a report is decided: confirm, dismiss, suspend the
        account (and, for admins, lift it), escalate, reopen; audited like a report action,
        with the event's id as the target."""
        _check_action(action, EVENT_ACTIONS, note, role=role)
        at = now_ms(self.clock)

        def _tx(conn: Connection) -> None:
            account = conn.execute(
                select(pm_events.c.account).where(pm_events.c.event_id == event_id)
            ).scalar()
            if account is None:
                raise NotFound("no such event")
            conn.execute(
                update(pm_events)
                .where(pm_events.c.event_id == event_id)
                .values(status=EVENT_STATUS_AFTER[action])
            )
            _set_suspension(conn, account, action)
            self._append_audit(conn, at, actor, action, event_id, note)

        await self.db.transact_async(_tx)
        if action in ("suspend", "unsuspend"):
            self.messaging.forget_cached_auth()

    async def export_event(self, event_id: str, fmt: str, actor: str) -> tuple[str, bytes]:
        """An escalated threshold event as a CyberTipline-shaped package (`fmt` "xml": a ZIP
        of `report.xml` and `case.json`) or its JSON alone; audited."""
        if fmt not in ("xml", "json"):
            raise InvalidInput("format is xml or json")

        row, images = await self.db.read_async(lambda conn: read_event(conn, event_id))
        if row.status != "escalated":
            raise Conflict("only an escalated event is exported")
        overview = await self.account_overview(row.account)
        escalation = await self._last_action(event_id, "escalate")
        case = MatchCase(
            event_id=event_id,
            incident_type=DEFAULT_INCIDENT_TYPE,
            detected_at_ms=row.created_at,
            escalated_at_ms=escalation.at if escalation else now_ms(self.clock),
            esp_name=self.esp_name,
            esp_contact_email=self.esp_contact_email,
            reviewer=escalation.actor if escalation else actor,
            reported_account=row.account,
            reported_account_created_at_ms=overview.created_at,
            device_id=row.device_id,
            images=tuple(
                MatchedImage(
                    bank=i.bank,
                    entry_id=int(i.entry_id),
                    label=i.label,
                    distance_bits=int(i.distance),
                    pdq_hex=bytes(i.pdq).hex(),
                )
                for i in images
            ),
            notes=escalation.note if escalation else "",
            log_index=crossing_log_index(row),
        )
        await self._audit(actor, f"export_{fmt}", event_id, "")
        if fmt == "xml":
            return "application/zip", _zip(
                [
                    ("report.xml", export_match_cybertipline_xml(case)),
                    ("case.json", export_match_case_json(case)),
                ]
            )
        return "application/json", export_match_case_json(case)

    # --- appeals (docs/console.md, "Appeals") ----------------------------------------------

    async def file_appeal(self, account: str, text: str) -> Appeal:
        """A suspended account's appeal: one open at a time (`appeal_open`); only a suspended
        account appeals (`not_suspended`). Audited; the text is the user's own words, shown to
        reviewers as plain text."""
        at = now_ms(self.clock)

        def _tx(conn: Connection) -> Any:
            acct = conn.execute(
                select(accounts.c.id, accounts.c.suspended).where(accounts.c.name == account)
            ).one()
            if not acct.suspended:
                raise Conflict("only a suspended account appeals", code="not_suspended")
            open_one = conn.execute(
                select(appeals.c.id).where(
                    appeals.c.account_id == acct.id, appeals.c.status == "open"
                )
            ).first()
            if open_one is not None:
                raise Conflict("an appeal of this account is already open", code="appeal_open")
            appeal_id = inserted_id(
                conn.execute(
                    insert(appeals).values(
                        account_id=acct.id, text=text, status="open", created_at=at
                    )
                )
            )
            self._append_audit(conn, at, account, "appeal", f"appeal/{appeal_id}", "")
            return appeal_id

        appeal_id = await self.db.transact_async(_tx)
        return Appeal(id=appeal_id, account=account, text=text, status="open", created_at=at)

    async def appeals(self, *, status: str | None = None, account: str | None = None) -> AppealList:
        def _rd(conn: Connection) -> Any:
            query = (
                select(appeals, accounts.c.name)
                .join(accounts, accounts.c.id == appeals.c.account_id)
                .order_by(appeals.c.id)
            )
            if status is not None:
                query = query.where(appeals.c.status == status)
            if account is not None:
                query = query.where(accounts.c.name == account)
            return conn.execute(query.limit(500)).all()

        rows = await self.db.read_async(_rd)
        return AppealList(
            appeals=[
                Appeal(
                    id=int(r.id),
                    account=r.name,
                    text=r.text,
                    status=r.status,
                    created_at=int(r.created_at),
                    decided_at=int(r.decided_at) if r.decided_at is not None else None,
                )
                for r in rows
            ]
        )

    async def decide_appeal(
        self, appeal_id: int, actor: str, decision: str, note: str = "", *, role: str
    ) -> Appeal:
        """Uphold the suspension, or lift it (admins only, as unsuspending a report's account);
        the account is told either way, and the decision is audited."""
        if decision == "lift" and role != "admin":
            raise AuthorizationError("only an admin can lift a suspension")
        at = now_ms(self.clock)

        def _tx(conn: Connection) -> Any:
            row = conn.execute(
                select(appeals, accounts.c.name)
                .join(accounts, accounts.c.id == appeals.c.account_id)
                .where(appeals.c.id == appeal_id)
            ).first()
            if row is None:
                raise NotFound()
            if row.status != "open":
                raise Conflict("this appeal was decided already", code="appeal_decided")
            status: Literal["lifted", "upheld"] = "lifted" if decision == "lift" else "upheld"
            conn.execute(
                update(appeals)
                .where(appeals.c.id == appeal_id)
                .values(status=status, decided_at=at)
            )
            if decision == "lift":
                conn.execute(
                    update(accounts).where(accounts.c.id == row.account_id).values(suspended=False)
                )
            conn.execute(
                insert(account_notices).values(
                    account_id=row.account_id,
                    kind="appeal",
                    text=APPEAL_LIFTED_TEXT if decision == "lift" else APPEAL_UPHELD_TEXT,
                    created_at=at,
                )
            )
            self._append_audit(conn, at, actor, f"appeal_{status}", f"appeal/{appeal_id}", note)
            return Appeal(
                id=appeal_id,
                account=row.name,
                text=row.text,
                status=status,
                created_at=int(row.created_at),
                decided_at=at,
            )

        appeal: Appeal = await self.db.transact_async(_tx)
        self.messaging.forget_cached_auth()
        return appeal

    # --- the audit trail ------------------------------------------------------------------

    @staticmethod
    def _append_audit(
        conn: Connection, at: int, actor: str, action: str, target: str, note: str
    ) -> None:
        if conn.dialect.name == "postgresql":  # one writer at a time keeps the chain linear
            conn.execute(text("LOCK TABLE review_audit IN SHARE ROW EXCLUSIVE MODE"))
        last = conn.execute(
            select(review_audit.c.chain).order_by(review_audit.c.seq.desc()).limit(1)
        ).scalar()
        previous = bytes(last) if last is not None else GENESIS_CHAIN
        conn.execute(
            insert(review_audit).values(
                at=at,
                actor=actor,
                action=action,
                target=target,
                note=note,
                chain=audit_link(previous, at, actor, action, target, note),
            )
        )

    async def record_view(self, actor: str, action: str, target: str) -> None:
        """Audit that `actor` looked at something (a match event, an image) without acting."""
        await self._audit(actor, action, target, "")

    async def _audit(self, actor: str, action: str, target: str, note: str) -> None:
        def _tx(conn: Connection) -> None:
            self._append_audit(conn, now_ms(self.clock), actor, action, target, note)

        await self.db.transact_async(_tx)

    async def _last_action(self, target: str, action: str) -> Any:
        """The newest audit entry recording `action` on `target`, or None."""

        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(review_audit)
                .where(review_audit.c.target == target, review_audit.c.action == action)
                .order_by(review_audit.c.seq.desc())
                .limit(1)
            ).first()

        return await self.db.read_async(_rd)

    async def audit_trail(self, *, limit: int = 100, after: int = 0) -> AuditTrail:
        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(review_audit)
                .where(review_audit.c.seq > after)
                .order_by(review_audit.c.seq)
                .limit(max(1, min(limit, 1000)))
            ).all()

        rows = await self.db.read_async(_rd)
        return AuditTrail(
            entries=[
                AuditEntry(
                    seq=r.seq,
                    at=r.at,
                    actor=r.actor,
                    action=r.action,
                    target=r.target,
                    note=r.note,
                    chain=bytes(r.chain).hex(),
                )
                for r in rows
            ]
        )

    # --- exports --------------------------------------------------------------------------

    async def export(self, report_id: str, fmt: str, actor: str) -> tuple[str, bytes]:
        if fmt not in ("xml", "json"):
            raise InvalidInput("format is xml or json")
        detail = await self.report(report_id)
        if detail.status != "escalated":
            raise Conflict("only an escalated case is exported")
        overview = await self.account_overview(detail.reported_account)
        escalation = await self._last_action(report_id, "escalate")
        case = Case(
            report_id=report_id,
            incident_type=DEFAULT_INCIDENT_TYPE,
            reported_at_ms=detail.created_at,
            escalated_at_ms=escalation.at if escalation else detail.updated_at,
            esp_name=self.esp_name,
            esp_contact_email=self.esp_contact_email,
            reviewer=escalation.actor if escalation else actor,
            reported_account=detail.reported_account,
            reported_account_created_at_ms=overview.created_at,
            reporter_account=detail.reporter,
            reason=detail.reason,
            messages=tuple(
                CaseMessage(
                    message_id=m.message_id,
                    sender_account=m.sender,
                    sender_device=m.sender_device,
                    conversation=m.conversation,
                    sent_at_ms=m.sent_at,
                    accepted_at_ms=m.accepted_at,
                    text=m.text,
                )
                for m in detail.items
            ),
            files=tuple(
                CaseFile(
                    name=a.name,
                    media_type=a.media_type,
                    size=a.size,
                    sha256_hex=a.sha256,
                    md5_hex=a.md5,
                    viewed_by_esp=a.viewed,
                    message_id=m.message_id,
                )
                for m in detail.items
                for a in m.attachments
                if a.available
            ),
            notes=escalation.note if escalation else "",
        )
        await self._audit(actor, f"export_{fmt}", report_id, "")
        if fmt == "xml":
            return "application/zip", cybertipline_package(case)
        return "application/json", export_case_json(case)


def cybertipline_package(case: Case) -> bytes:
    """The CyberTipline-shaped export as one ZIP: `report.xml` (the report document),
    `fileDetails-N.xml` (one per file, in order) and `case.json`. The files themselves are not
    included: they are uploaded to the recipient organisation separately, by a person."""
    details = export_cybertipline_file_details_xml(case)
    return _zip(
        [
            ("report.xml", export_cybertipline_xml(case)),
            *((f"fileDetails-{n}.xml", doc) for n, doc in enumerate(details, start=1)),
            ("case.json", export_case_json(case)),
        ]
    )


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return out.getvalue()


def _check_action(action: str, allowed: tuple[str, ...], note: str, *, role: str) -> None:
    """`action` is one of `allowed` and the reviewer's role may take it; the note fits."""
    if action not in allowed:
        raise InvalidInput(f"action is one of {', '.join(allowed)}")
    if action in ADMIN_ACTIONS and role != "admin":
        raise AuthorizationError(f"only an admin can {action}")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"a note has at most {MAX_NOTE_CHARS} characters")


def _set_suspension(conn: Connection, account: str, action: str) -> None:
    """Suspend the account, or lift its suspension, when `action` says so."""
    if action in ("suspend", "unsuspend"):
        conn.execute(
            update(accounts).where(accounts.c.name == account).values(suspended=action == "suspend")
        )


def _summary(row: Any, n_attachments: int) -> ReportSummary:
    return ReportSummary(
        report_id=row.report_id,
        status=row.status,
        reported_account=row.reported_account,
        reporter=row.reporter,
        conversation=row.conversation,
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        messages=len(json.loads(row.messages_json)),
        attachments=n_attachments,
    )


def _detail(row: Any, files: list[Any]) -> ReportDetail:
    by_message: dict[str, list[ReviewedAttachment]] = {}
    for f in files:
        by_message.setdefault(f.message_id, []).append(
            ReviewedAttachment(
                index=f.idx,
                name=f.name,
                media_type=f.media_type,
                size=f.size,
                sha256=f.sha256_hex,
                md5=f.md5_hex,
                available=f.sealed_file is not None,
                viewed=f.viewed_at is not None,
            )
        )
    items = [
        ReviewedMessage(**m, attachments=by_message.get(m["message_id"], []))
        for m in json.loads(row.messages_json)
    ]
    summary = _summary(row, len(files))
    return ReportDetail(
        **summary.model_dump(),
        verified_sender=DeviceRef(account=row.reported_account, device_id=row.reported_device),
        items=items,
    )
