"""The target's side of disclosure: found in the log itself, and due whatever the provider does.

The server's sync lists the disclosures it chose to list; a provider hiding a disclosure from
its target would simply leave it out. So on each sync the device reads every log entry since
its last scan, proven complete against the verified checkpoint (`log_scan.read_new_entries`),
and for each disclosure entry opens the commitment it names (the disclosure carries the signed
warrant and nonce; the commitment entry was seen earlier in the same scan): a warrant naming
this account becomes a notice.

For the warrants this device itself accepted, it also knows the disclosure date (the one in
the warrant, moved only by extensions it finds in the log, each checked like the auditor
checks them). Once that date has passed with no disclosure in the log, the device tells its
user itself, from the warrant it verified: the provider can delay the publication, not the
notice.

State (`DisclosureWatch`, kept in the device's `AccessState`): the log position and frontier,
the commitment entries not yet disclosed, and the warrants held until their disclosure.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field, replace
from typing import Any

from accord.client.api import ServerApi
from accord.client.log_scan import LogPosition, read_new_entries
from accord.errors import AccordError, InvalidInput
from accord.primitives.encoding import b64decode, b64encode
from accord.protocols.access.approvers import ApproverSet
from accord.protocols.access.audit import (
    DisclosureNotice,
    disclosure_notice,
    verify_disclosure_extension,
    warrant_notice,
)
from accord.protocols.access.device import VerifiedWarrant
from accord.protocols.access.log_entries import (
    DisclosureExtensionEntry,
    WarrantCommitmentEntry,
    WarrantDisclosureEntry,
    parse_access_entry,
)
from accord.protocols.access.warrant import SignedWarrant
from accord.protocols.translog.note import Checkpoint

ACCESS_TYPE_MARK = b'"type":"accord.access.'
DISCLOSURE_GRACE_S = 3600
"""How long after a held warrant's disclosure date the device waits for the provider's
publication before telling its user itself."""
MAX_ENTRY_BYTES = 64 * 1024


@dataclass
class DisclosureWatch:
    """What the device keeps between scans (see the module docstring)."""

    position: LogPosition = field(default_factory=LogPosition)
    commitments: dict[str, str] = field(default_factory=dict)  # commitment hex -> entry b64
    held: dict[str, dict[str, Any]] = field(default_factory=dict)  # commitment hex -> warrant
    told: list[str] = field(default_factory=list)  # commitments already shown as overdue

    def to_obj(self) -> dict[str, Any]:
        return {
            "position": self.position.to_obj(),
            "commitments": self.commitments,
            "held": self.held,
            "told": self.told,
        }

    @classmethod
    def from_obj(cls, obj: dict[str, Any] | None) -> DisclosureWatch:
        if obj is None:
            return cls()
        return cls(
            LogPosition.from_obj(obj["position"]),
            dict(obj["commitments"]),
            dict(obj["held"]),
            list(obj["told"]),
        )

    def hold(self, verified: VerifiedWarrant) -> None:
        """A warrant this device accepted: its user is told at its disclosure date."""
        self.held[verified.commitment.hex()] = {
            "due": verified.signed_warrant.warrant.disclosure_time,
            "warrant": verified.signed_warrant.to_obj(),
        }


@dataclass
class ScanResult:
    notices: list[DisclosureNotice] = field(default_factory=list)
    refused: list[tuple[str, AccordError]] = field(default_factory=list)  # (what, why)


def scan_for_disclosures(
    api: ServerApi,
    watch: DisclosureWatch,
    checkpoint: Checkpoint,
    *,
    account: str,
    approver_set: ApproverSet | None,
    now: int,
    max_delay_s: int,
) -> ScanResult:
    """Read the log from ``watch.position`` to ``checkpoint`` (verified by the caller) and
    update ``watch``; return the notices for this account. Raises if the entries do not
    match the checkpoint (nothing is then changed)."""
    entries, position = read_new_entries(api, watch.position, checkpoint)
    result = ScanResult()
    for index, data in entries:
        if ACCESS_TYPE_MARK not in data:
            continue
        try:
            entry = parse_access_entry(data)
        except InvalidInput:
            continue  # the auditor flags it; nothing here concerns this device
        if isinstance(entry, WarrantCommitmentEntry):
            watch.commitments[entry.commitment.hex()] = b64encode(data)
        elif isinstance(entry, DisclosureExtensionEntry):
            _take_extension(watch, entry, approver_set, max_delay_s, index, result)
        elif isinstance(entry, WarrantDisclosureEntry):
            _take_disclosure(watch, entry, account, index, result)
    watch.position = position
    for key, held in list(watch.held.items()):
        if now >= int(held["due"]) + DISCLOSURE_GRACE_S:
            notice = warrant_notice(SignedWarrant.from_obj(held["warrant"]))
            result.notices.append(replace(notice, disclosure_time=int(held["due"]), overdue=True))
            del watch.held[key]
            watch.told.append(key)
    return result


def _take_disclosure(
    watch: DisclosureWatch,
    entry: WarrantDisclosureEntry,
    account: str,
    index: int,
    result: ScanResult,
) -> None:
    key = entry.commitment.hex()
    logged = watch.commitments.pop(key, None)
    watch.held.pop(key, None)  # disclosed: told now, if it names this account
    try:
        if logged is None:
            raise InvalidInput("disclosure of a commitment not logged before it")
        committed = parse_access_entry(b64decode(logged, max_bytes=MAX_ENTRY_BYTES))
        if not isinstance(committed, WarrantCommitmentEntry):
            raise InvalidInput("not a commitment entry")
        notice = disclosure_notice(entry, committed, account=account)
    except AccordError as exc:
        result.refused.append((f"disclosure at {index}", exc))
        return
    if notice is not None and key not in watch.told:  # an overdue one was shown already
        result.notices.append(notice)


def _take_extension(
    watch: DisclosureWatch,
    entry: DisclosureExtensionEntry,
    approver_set: ApproverSet | None,
    max_delay_s: int,
    index: int,
    result: ScanResult,
) -> None:
    """An extension moves the date of a held warrant only if it passes the auditor's checks
    under this device's approver set."""
    key = entry.commitment.hex()
    held, logged = watch.held.get(key), watch.commitments.get(key)
    if held is None or logged is None or approver_set is None:
        return
    if not hmac.compare_digest(entry.approver_set, approver_set.set_hash):
        return
    try:
        committed = parse_access_entry(b64decode(logged, max_bytes=MAX_ENTRY_BYTES))
        if not isinstance(committed, WarrantCommitmentEntry):
            raise InvalidInput("not a commitment entry")
        held["due"] = verify_disclosure_extension(
            entry, committed, approver_set, due=int(held["due"]), max_delay_s=max_delay_s
        )
    except AccordError as exc:
        result.refused.append((f"disclosure extension at {index}", exc))
