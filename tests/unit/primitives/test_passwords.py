"""Reviewer passwords: Argon2id (RFC 9106, second option); an unknown name costs the same."""

from __future__ import annotations

from argon2 import extract_parameters

from accord.primitives import passwords
from accord.primitives.passwords import hash_password, verify_password


def test_the_unknown_name_hash_has_the_hashers_parameters() -> None:
    # Verifying against it must cost what verifying a real reviewer's hash costs.
    dummy = extract_parameters(passwords._DUMMY_HASH)
    real = extract_parameters(hash_password("a reviewer's passphrase"))
    assert dummy == real
    assert (dummy.time_cost, dummy.memory_cost, dummy.parallelism) == (3, 64 * 1024, 2)


def test_an_unknown_name_never_verifies() -> None:
    assert not verify_password(None, "accord-unknown-reviewer-placeholder")
    assert not verify_password(None, "anything at all")


def test_a_password_verifies_only_against_its_own_hash() -> None:
    encoded = hash_password("correct horse battery")
    assert verify_password(encoded, "correct horse battery")
    assert not verify_password(encoded, "correct horse battery!")
