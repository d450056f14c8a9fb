"""Accountable lawful access on the server: the provider's part of docs/lawful-access.md §5.

The provider publishes approver sets (operator, signed by k approvers) and agency keys (signed by
k approvers) as log entries; accepts a warrant signed by k approvers of the current set, commits
to it in the log (a hiding commitment, never the target) and delivers it with its proofs to the
target's devices on their ordinary sync; stores the records those devices seal to the agency
(it holds no key to them) and refuses records outside the window; records delivery metadata of
a metadata-scope target during the window only (no delivery history otherwise); publishes
record counts after each window and, after the disclosure time, the opening of the warrant.

By job: `authorities` (approver sets, agency keys, warrants), `device_sync` (what a target's
device fetches), `agency` (records delivered and retrieved, agency tokens), `metadata`
(delivery metadata), `housekeeping` (record counts, disclosures), over `ledger` (the access
entries in the transparency log). `AccessService` (`service`) builds them; routes/access.py
maps them to HTTP.
"""

from accord.server.access.service import AccessService

__all__ = ["AccessService"]
