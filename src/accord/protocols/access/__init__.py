"""Accountable lawful access: the pure protocol core (docs/lawful-access.md).

Modules: `approvers` (k-of-n approver sets and their changes), `agency` (agency HPKE key
registrations), `warrant` (ETSI TS 103 120 warrant fields, approvals, hiding commitment),
`log_entries` (the log entry types), `device` (the target device's checks W1-W12), `records`
(sealing and opening intercepted records), `audit` (disclosure notices and the public audit),
`timeparse` (durations, and times as ISO 8601). No I/O, no network, no database.
"""
