"""Password hashing for reviewer accounts: Argon2id (RFC 9106) through argon2-cffi."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from accord.errors import InvalidInput

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024

# RFC 9106's second recommended option (64 MiB, 3 passes), one lane per core we have.
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=2)
# Verified against when the name is unknown, so both paths cost one Argon2id evaluation. A
# constant made once with _HASHER's parameters (a test checks they still agree): computing it
# at import cost every process that imports the review desk one Argon2id evaluation (64 MiB).
# No password opens it: an unknown name is refused whatever `verify` says.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=2"
    "$Kjy69EDTGX1dcdT5bDdalg$+Wx28u+XJWLkVhCRHJGWrGL5o/Ocv8NAmH4OLWSFkDU"
)


def hash_password(password: str) -> str:
    if not (MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS):
        raise InvalidInput(
            f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )
    return _HASHER.hash(password)


def verify_password(encoded: str | None, password: str) -> bool:
    """True iff `password` matches `encoded`; with `encoded=None` it costs the same and is
    False."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        ok = _HASHER.verify(encoded or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return ok and encoded is not None
