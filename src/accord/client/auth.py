"""Logging this device in (step 4): a signed challenge buys a bearer token, kept until shortly
before it expires."""

from __future__ import annotations

from accord.client.api import ServerApi
from accord.client.identity import DeviceIdentity
from accord.client.store import AuthToken, LocalStore
from accord.clock import Clock, now_ms
from accord.protocols.messaging import auth_payload
from accord.wire.messaging import Challenge, Token

TOKEN_RENEW_BEFORE_MS = 60_000
"""A cached token this close to its expiry is renewed rather than used."""


class DeviceLogin:
    def __init__(self, store: LocalStore, identity: DeviceIdentity, clock: Clock) -> None:
        self._store = store
        self._identity = identity
        self._clock = clock

    def token(self, api: ServerApi, *, refresh: bool) -> str:
        """A bearer token: the cached one unless `refresh` or near expiry, else a new one."""
        if not refresh:
            cached = self._store.auth_token()
            renew_at_ms = now_ms(self._clock) + TOKEN_RENEW_BEFORE_MS
            if cached is not None and cached.expires_at_ms > renew_at_ms:
                return cached.token
        account, device_id = self._identity.account_name, self._identity.device_id
        challenge = api.call(
            Challenge,
            "POST",
            "/v1/auth/challenge",
            json={"account": account, "device_id": device_id},
            auth=False,
        )
        signature = self._identity.sign(auth_payload(account, device_id, challenge.challenge))
        issued = api.call(
            Token,
            "POST",
            "/v1/auth/token",
            json={
                "account": account,
                "device_id": device_id,
                "challenge": challenge.challenge,
                "signature": signature,
            },
            auth=False,
        )
        self._store.set_auth_token(AuthToken(issued.token, issued.expires_at))
        return issued.token
