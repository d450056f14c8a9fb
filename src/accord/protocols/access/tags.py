"""The type tags of the lawful-access log entries (`log_entries` defines and parses the entries).

Kept apart so that the log's entry parser (`accord.protocols.translog.entries`) can recognise
and count these types without importing the warrant, approver and agency modules; it imports
them when it meets such an entry.
"""

from __future__ import annotations

TAG_APPROVER_SET = "accord.access.approver_set.v1"
TAG_AGENCY_KEY = "accord.access.agency_key.v1"
TAG_WARRANT_COMMITMENT = "accord.access.warrant_commitment.v1"
TAG_WARRANT_DISCLOSURE = "accord.access.warrant_disclosure.v1"
TAG_RECORD_COUNT = "accord.access.record_count.v1"
TAG_DISCLOSURE_EXTENSION = "accord.access.disclosure_extension.v1"
ACCESS_TAG_PREFIX = "accord.access."
