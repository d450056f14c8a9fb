"""Settings shared by the tests that no command-line option or variable exposes."""

from __future__ import annotations

from accord.primitives.storage_crypto import KdfCost

# A cheap Argon2id for the local stores tests create (the default is RFC 9106's 64 MiB, t=3).
TEST_KDF_COST = KdfCost(time_cost=1, memory_kib=1024, parallelism=1)
