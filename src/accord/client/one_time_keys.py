"""Keeping this device's one-time and fallback keys published (step 3), each signed by it."""

from __future__ import annotations

from accord.client.context import ClientContext
from accord.protocols.messaging import one_time_key_payload
from accord.wire.messaging import KeyCount, OneTimeKey

ONE_TIME_KEY_TARGET = 50
ONE_TIME_KEY_LOW_WATER = 25


def publish_one_time_keys(ctx: ClientContext, *, initial: bool = False) -> KeyCount:
    """Top the server's stock up to `ONE_TIME_KEY_TARGET` once it falls below the low-water
    mark, or a fallback key is missing. `initial`: the server holds none yet."""
    count = (
        KeyCount(one_time_keys=0, fallback_key=False)
        if initial
        else ctx.api.call(KeyCount, "GET", "/v1/keys/count")
    )
    want = ONE_TIME_KEY_TARGET - count.one_time_keys
    if count.one_time_keys >= ONE_TIME_KEY_LOW_WATER and count.fallback_key:
        return count
    identity = ctx.identity
    olm = identity.olm
    otks = olm.unpublished_one_time_keys()
    if want > len(otks):
        otks = olm.generate_one_time_keys(want - len(otks))
    fallback = olm.unpublished_fallback_key()
    if not count.fallback_key and not fallback:
        fallback = olm.generate_fallback_key()
    identity.save()
    body = {
        "v": 1,
        "one_time_keys": [
            _signed_key(ctx, kid, key, fallback=False).model_dump() for kid, key in otks.items()
        ],
        "fallback_key": (
            _signed_key(ctx, *next(iter(fallback.items())), fallback=True).model_dump()
            if fallback
            else None
        ),
    }
    result = ctx.api.call(KeyCount, "POST", "/v1/keys", json=body)
    olm.mark_keys_as_published()
    identity.save()
    return result


def _signed_key(ctx: ClientContext, key_id: str, key: str, *, fallback: bool) -> OneTimeKey:
    identity = ctx.identity
    unsigned = OneTimeKey(key_id=key_id, key=key, signature="-")
    signature = identity.sign(
        one_time_key_payload(identity.account_name, identity.device_id, unsigned, fallback)
    )
    return OneTimeKey(key_id=key_id, key=key, signature=signature)
