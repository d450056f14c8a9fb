"""The server's relational schema (SQLAlchemy Core). Migrations in storage/migrations build it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Shared by every table set the server owns (see storage/banks.py), so migrations name
# constraints the same way everywhere.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# BigInteger primary keys autoincrement on PostgreSQL; SQLite needs INTEGER for rowid aliasing.
BigId = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("suspended", Boolean, nullable=False, default=False),
)

devices = Table(
    "devices",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", BigId, ForeignKey("accounts.id"), nullable=False),
    Column("device_id", String(32), nullable=False),
    Column("ed25519", String(64), nullable=False),
    Column("curve25519", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("approver_device_id", String(32), nullable=True),
    Column("approval_signature", String(128), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    # Index of the device's registration in the transparency log. A device is used only once
    # it is logged (NULL: registered but not yet logged).
    Column("log_index", BigInteger, nullable=True),
    UniqueConstraint("account_id", "device_id", name="uq_devices_account_device"),
)

one_time_keys = Table(
    "one_time_keys",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("device_pk", BigId, ForeignKey("devices.id"), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("key", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("fallback", Boolean, nullable=False),
    UniqueConstraint("device_pk", "key_id", "fallback", name="uq_otk_device_key"),
)

auth_challenges = Table(
    "auth_challenges",
    metadata,
    Column("challenge_hash", LargeBinary(32), primary_key=True),
    Column("device_pk", BigId, ForeignKey("devices.id"), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

auth_tokens = Table(
    "auth_tokens",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("device_pk", BigId, ForeignKey("devices.id"), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

link_requests = Table(
    "link_requests",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("account_id", BigId, ForeignKey("accounts.id"), nullable=False),
    Column("device_json", Text, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("sender_device_pk", BigId, ForeignKey("devices.id"), nullable=False),
    Column("message_id", String(43), nullable=False),
    Column("to_account", String(64), nullable=True),
    Column("to_group", String(64), nullable=True),
    Column("megolm", LargeBinary, nullable=True),
    Column("megolm_session_id", String(43), nullable=True),
    Column("extensions", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("device_count", Integer, nullable=False),
    UniqueConstraint("sender_device_pk", "message_id", name="uq_messages_sender_message"),
    sqlite_autoincrement=True,
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("device_pk", BigId, ForeignKey("devices.id"), nullable=False),
    Column("message_pk", BigId, ForeignKey("messages.id"), nullable=False),
    Column("olm_type", Integer, nullable=True),
    Column("olm_body", LargeBinary, nullable=True),
    Index("ix_deliveries_device_id", "device_pk", "id"),
    Index("ix_deliveries_message", "message_pk"),
    # Delivery ids are what devices acknowledge and remember: never reuse one.
    sqlite_autoincrement=True,
)

blobs = Table(
    "blobs",
    metadata,
    Column("blob_id", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("uploader_device_pk", BigId, ForeignKey("devices.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_blobs_created_at", "created_at"),
)

# The blobs a message carries, as its sender declared them: a blob stays while a message that
# is still queued holds it (server.blobs.BlobCollector). Rows outlive their message; the
# collector removes them with the blob.
message_blobs = Table(
    "message_blobs",
    metadata,
    Column("message_pk", BigId, primary_key=True),
    Column("blob_id", String(64), primary_key=True),
    Index("ix_message_blobs_blob", "blob_id"),
)

# Counts behind rate limits that must hold across processes and restarts (server.limits).
limit_counters = Table(
    "limit_counters",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("a", Float, nullable=False),
    Column("b", Float, nullable=False),
    Column("c", Float, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_limit_counters_expires_at", "expires_at"),
)

groups = Table(
    "groups",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("version", BigInteger, nullable=False),
    Column("state_json", Text, nullable=False),
    Column("signer_account", String(64), nullable=False),
    Column("signer_device_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_pk", BigId, ForeignKey("groups.id"), primary_key=True),
    Column("account_id", BigId, ForeignKey("accounts.id"), primary_key=True),
)

# --- franking, reports and review (docs/protocol/franking.md, docs/console.md) -----------------

# The server's franking keys. One per rotation period; kept while reports of messages tagged
# under it may still arrive, then deleted (a message older than that can no longer be reported).
franking_keys = Table(
    "franking_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("secret", LargeBinary, nullable=False),  # sealed (server.secrets)
    Column("created_at", BigInteger, nullable=False),
)

reports = Table(
    "reports",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("report_id", String(40), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("reporter", String(64), nullable=False),
    Column("reported_account", String(64), nullable=False),
    Column("reported_device", String(32), nullable=False),
    Column("conversation", String(80), nullable=False),
    Column("reason", Text, nullable=False),
    # The verified messages (wire.reports.ReviewedMessage without attachment state), as JSON.
    Column("messages_json", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # The reported message's id: a reporter files one report per message, whichever process
    # takes the filing (NULL only in rows a duplicate of which was filed before this existed).
    Column("reported_message_id", String(43), nullable=True),
    Index("ix_reports_status_created", "status", "created_at"),
    Index("ix_reports_reported_account", "reported_account"),
    Index(
        "uq_reports_reporter_message",
        "reporter",
        "reported_account",
        "reported_message_id",
        unique=True,
    ),
)

# Attachments of a report, sealed (HPKE) to the review service's key; `viewed_at` records when
# a reviewer first chose to see one (an export's fileViewedByEsp).
report_attachments = Table(
    "report_attachments",
    metadata,
    Column("report_pk", BigId, ForeignKey("reports.id"), primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("message_id", String(43), nullable=False),
    Column("name", String(255), nullable=False),
    Column("media_type", String(127), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256_hex", String(64), nullable=False),
    Column("md5_hex", String(32), nullable=False),
    Column("sealed_file", String(64), nullable=True),
    Column("viewed_at", BigInteger, nullable=True),
    Column("viewed_by", String(64), nullable=True),
)

reviewers = Table(
    "reviewers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("disabled", Boolean, nullable=False),
)

review_sessions = Table(
    "review_sessions",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("reviewer_pk", BigId, ForeignKey("reviewers.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# Append-only: every reviewer action, each entry chained to the one before by SHA-256.
review_audit = Table(
    "review_audit",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(80), nullable=False),
    Column("note", Text, nullable=False),
    Column("chain", LargeBinary(32), nullable=False),
    Index("ix_review_audit_at", "at"),
    sqlite_autoincrement=True,
)

# The days whose review counts (`accord.protocols.review_counts`) were appended to the
# transparency log: a row is written before its entry is appended (so two server processes
# cannot both append one day), and given the entry's index after.
review_count_days = Table(
    "review_count_days",
    metadata,
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("log_index", BigInteger, nullable=True),
    Column("emitted_at", BigInteger, nullable=False),
)

# Notices from trust and safety to an account (a warning), shown by its client on receive.
account_notices = Table(
    "account_notices",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", BigId, ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_account_notices_account", "account_id", "id"),
)

# Appeals of suspended accounts (docs/console.md, "Appeals"): one open appeal per account.
appeals = Table(
    "appeals",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", BigId, ForeignKey("accounts.id"), nullable=False),
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open, upheld, lifted
    Column("created_at", BigInteger, nullable=False),
    Column("decided_at", BigInteger, nullable=True),
    Index("ix_appeals_account", "account_id", "status"),
    sqlite_autoincrement=True,
)

# --- private threshold matching (docs/protocol/private-matching.md) -----------------------------

# Published blinded tables. `secret` is the table's blinding scalar alpha, sealed: it stays here
# (the file clients download holds alpha * G only). A table is served once its digest is logged.
pm_tables = Table(
    "pm_tables",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("digest", LargeBinary(32), nullable=False, unique=True),
    Column("secret", LargeBinary, nullable=False),  # sealed (server.secrets)
    Column("params", LargeBinary(16), nullable=False),
    Column("banks_json", Text, nullable=False),
    Column("banked_hashes", BigInteger, nullable=False),
    Column("elements", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("published_at", BigInteger, nullable=False),
    Column("retired_at", BigInteger, nullable=True),
    Column("log_index", BigInteger, nullable=True),
)

# Vouchers accepted with a message and not yet processed (processing is off the request path,
# so its timing tells a sender nothing). A row leaves in the transaction that processes it. No row
# here or below names the message a voucher came with, its recipients or when it was sent
# (docs/protocol/private-matching.md, "What the server stores"); `device_id` (the sending device
# of the account) is kept only until the voucher is processed.
pm_queue = Table(
    "pm_queue",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("matching_account", String(100), nullable=False),
    Column("voucher_id", LargeBinary(16), nullable=False),
    Column("device_id", String(32), nullable=False),
    Column("voucher", LargeBinary, nullable=False),
    UniqueConstraint("matching_account", "voucher_id", name="uq_pm_queue_voucher"),
    sqlite_autoincrement=True,
)

# Per account (all of an account's devices share its matching secret): counts, the newest key
# epoch seen, and the row locked while one of its vouchers is processed.
pm_accounts = Table(
    "pm_accounts",
    metadata,
    Column("matching_account", String(100), primary_key=True),
    Column("account", String(64), nullable=False),
    Column("vouchers", BigInteger, nullable=False),
    Column("rejected", BigInteger, nullable=False),
    Column("latest_epoch", BigInteger, nullable=False, server_default="0"),
)

# Processed voucher ids of the account's current key epoch (replays are refused); ids of earlier
# epochs are dropped once a voucher of a later epoch is processed.
pm_seen_vouchers = Table(
    "pm_seen_vouchers",
    metadata,
    Column("matching_account", String(100), primary_key=True),
    Column("voucher_id", LargeBinary(16), primary_key=True),
    Column("epoch", BigInteger, nullable=False),
)

# Opened outer layers (a band matched, or a synthetic voucher): the Shamir share, its detection
# tag and the inner payload, still encrypted under the device's unknown voucher key.
pm_shares = Table(
    "pm_shares",
    metadata,
    Column("matching_account", String(100), primary_key=True),
    Column("epoch", BigInteger, primary_key=True, autoincrement=False),
    Column("x", LargeBinary(32), primary_key=True),
    Column("voucher_id", LargeBinary(16), nullable=False),
    Column("header", LargeBinary(72), nullable=False),
    Column("y", LargeBinary(32), nullable=False),
    Column("tag", LargeBinary, nullable=False),
    Column("inner_nonce", LargeBinary(12), nullable=False),
    Column("inner", LargeBinary, nullable=False),
)

# Per account and key epoch, once the threshold is crossed: the recovered voucher key (sealed,
# server.secrets), when, and the crossing's log entry (a count and a commitment to
# `crossing_nonce`, nothing else).
pm_epochs = Table(
    "pm_epochs",
    metadata,
    Column("matching_account", String(100), primary_key=True),
    Column("epoch", BigInteger, primary_key=True, autoincrement=False),
    Column("voucher_key", LargeBinary, nullable=False),
    Column("crossed_at", BigInteger, nullable=False),
    Column("crossing_nonce", LargeBinary(32), nullable=False),
    Column("log_index", BigInteger, nullable=True),
)

# Review events: confirmed matches (full PDQ hash re-checked against the bank), for reviewers.
pm_events = Table(
    "pm_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("matching_account", String(100), nullable=False),
    Column("account", String(64), nullable=False),
    Column("device_id", String(32), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("table_version", Integer, nullable=False),
    Column("images", Integer, nullable=False),
    Column("discarded", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_pm_events_created", "created_at"),
    sqlite_autoincrement=True,
)

pm_event_images = Table(
    "pm_event_images",
    metadata,
    Column("event_pk", BigId, ForeignKey("pm_events.id"), primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("voucher_id", LargeBinary(16), nullable=False),
    Column("pdq", LargeBinary(32), nullable=False),
    Column("bank", String(64), nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("label", String(128), nullable=False),
    Column("distance", Integer, nullable=False),
    Column("derivative", LargeBinary(4096), nullable=False),
)

# --- lawful access (docs/lawful-access.md) ------------------------------------------------------

# Where the provider's own lawful-access entries sit in the transparency log (the log holds the
# entries): approver sets (`ref` = the hash of the set each one replaces, zeros for the first,
# so two successors of one set cannot both be published), agency keys (`ref` = key id) and
# warrant disclosures (`ref` = commitment). A row is written before its entry is appended, with
# `log_index` NULL, so a second publication of the same thing is refused by the unique key.
access_log_index = Table(
    "access_log_index",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("ref", LargeBinary(32), nullable=False),
    Column("version", Integer, nullable=True),
    Column("log_index", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("kind", "ref", name="uq_access_log_index_kind_ref"),
)

# Accepted warrants. `nonce` opens the logged commitment: it is secret until the disclosure
# time, when the opening is published. Windows and times are seconds since the epoch.
access_warrants = Table(
    "access_warrants",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("warrant_id", LargeBinary(32), nullable=False, unique=True),
    Column("commitment", LargeBinary(32), nullable=False, unique=True),
    Column("target_account_id", BigId, ForeignKey("accounts.id"), nullable=False),
    Column("signed_warrant", Text, nullable=False),
    Column("nonce", LargeBinary(32), nullable=False),
    Column("scope", String(32), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=False),
    Column("disclosure_time", BigInteger, nullable=False),
    # Log indexes: the commitment (NULL until logged; nothing is delivered before), the agency
    # key it is delivered to, the disclosure, and the record count published after the window.
    Column("commitment_index", BigInteger, nullable=True),
    Column("agency_key_index", BigInteger, nullable=False),
    Column("disclosure_index", BigInteger, nullable=True),
    Column("final_count_index", BigInteger, nullable=True),
    Column("counted_records", BigInteger, nullable=False),
    Column("counted_at", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # The signed, cosigned checkpoint that first contained the commitment: its cosignature
    # times bound how early the window may start (device check W11).
    Column("commitment_checkpoint", Text, nullable=True),
    Index("ix_access_warrants_target", "target_account_id", "end_time"),
)

# Records sealed by the target's devices to the agency (the provider holds no key to them).
access_records = Table(
    "access_records",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("warrant_pk", BigId, ForeignKey("access_warrants.id"), nullable=False),
    Column("device_id", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("record", LargeBinary, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    UniqueConstraint("warrant_pk", "device_id", "seq", name="uq_access_records_stream"),
    sqlite_autoincrement=True,
)

# Delivery metadata of a target under a warrant with `metadata` in scope, during its window
# only (no delivery history is kept for anyone else).
access_delivery_metadata = Table(
    "access_delivery_metadata",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("warrant_pk", BigId, ForeignKey("access_warrants.id"), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("counterpart", String(64), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Index("ix_access_delivery_metadata_warrant", "warrant_pk", "id"),
    sqlite_autoincrement=True,
)
