"""The witness: checks a log's new checkpoint against the last one it cosigned, then cosigns.

Implements C2SP tlog-witness ``add-checkpoint`` (https://c2sp.org/tlog-witness) with Ed25519
tlog-cosignature/v1 cosignatures. No web framework here: `accord.witness.app` maps the errors
raised below to HTTP statuses.

=============================  ======  =========================================
outcome                        status  raised as
=============================  ======  =========================================
malformed request or note      400     `InvalidInput` (`TooLarge`: 413)
old size > checkpoint size     400     `InvalidInput`
unknown origin                 404     `NotFound`
no valid trusted signature     403     `AuthorizationError`
old size != last cosigned      409     `OldSizeMismatch` (body: the cosigned size)
same size, different root      409     `Conflict` (a forked log)
consistency proof fails        422     `VerificationError`
=============================  ======  =========================================
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from accord.errors import (
    AuthorizationError,
    Conflict,
    InvalidInput,
    NotFound,
    VerificationError,
)
from accord.protocols.translog import merkle
from accord.protocols.translog.note import (
    CosignatureSigner,
    Verifier,
    parse_checkpoint,
    parse_unverified_note,
    parse_vkey,
    verify_note,
)
from accord.witness.request import parse_add_checkpoint_request
from accord.witness.state import StateTransaction, WitnessStateStore


class OldSizeMismatch(Conflict):
    """The request's old size is not the size this witness last cosigned for the log."""

    code = "old_size_mismatch"
    default_message = "old size does not match the last cosigned checkpoint"

    def __init__(self, current_size: int) -> None:
        super().__init__()
        self.current_size = current_size


@dataclass(frozen=True)
class WitnessConfig:
    """Who the witness is and which logs it follows (origin -> trusted log keys)."""

    cosigner: CosignatureSigner
    logs: Mapping[str, Sequence[Verifier]]

    def __post_init__(self) -> None:
        if not isinstance(self.cosigner, CosignatureSigner):
            raise InvalidInput("the witness key must be a cosignature (type 0x04) key")
        if not self.logs:
            raise InvalidInput("configure at least one log key")
        for origin, keys in self.logs.items():
            if not origin or not keys:
                raise InvalidInput("every log needs an origin and at least one key")


def logs_from_vkeys(vkeys: Sequence[str | Verifier]) -> dict[str, list[Verifier]]:
    """Log keys from vkeys; each log's origin is its key name (tlog-checkpoint: the key name
    SHOULD match the origin line)."""
    logs: dict[str, list[Verifier]] = {}
    for vkey in vkeys:
        verifier = parse_vkey(vkey) if isinstance(vkey, str) else vkey
        if verifier.is_cosigner:
            raise InvalidInput("a log key must be a note signing (type 0x01) key")
        logs.setdefault(verifier.name, []).append(verifier)
    return logs


class Witness:
    def __init__(
        self,
        config: WitnessConfig,
        state: WitnessStateStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.state = state
        self._clock = clock

    @property
    def vkey(self) -> str:
        return self.config.cosigner.vkey

    def add_checkpoint(self, body: bytes) -> str:
        """Handle one add-checkpoint request; returns the cosignature line(s)."""
        request = parse_add_checkpoint_request(body)
        note = parse_unverified_note(request.checkpoint)
        checkpoint = parse_checkpoint(note.text)
        # The witness MUST verify the checkpoint against the keys it trusts for the origin.
        log_keys = self.config.logs.get(checkpoint.origin)
        if not log_keys:
            raise NotFound("unknown log")
        try:
            verify_note(note, log_keys)
        except VerificationError:
            raise AuthorizationError("checkpoint is not validly signed by the log") from None
        if request.old_size > checkpoint.size:
            raise InvalidInput("old size is larger than the checkpoint size")

        def check_and_record(tx: StateTransaction) -> None:
            current = tx.current()
            cosigned_size = current.size if current else 0
            if request.old_size != cosigned_size:
                raise OldSizeMismatch(cosigned_size)
            if request.old_size == checkpoint.size:
                if request.proof:
                    raise VerificationError("consistency proof must be empty for equal sizes")
                if current is None:
                    # Size 0 never cosigned before: the empty tree has one root.
                    if not hmac.compare_digest(checkpoint.root_hash, merkle.EMPTY_ROOT):
                        raise VerificationError("wrong root for the empty tree")
                elif not hmac.compare_digest(checkpoint.root_hash, current.root_hash):
                    raise Conflict("checkpoint forks the log: same size, different root")
            elif request.old_size == 0:
                # Nothing cosigned yet: the proof MUST be empty; the first view is trusted.
                if request.proof:
                    raise VerificationError("consistency proof must be empty from size 0")
            else:
                assert current is not None  # old_size == cosigned_size > 0
                merkle.verify_consistency(
                    request.old_size,
                    checkpoint.size,
                    current.root_hash,
                    checkpoint.root_hash,
                    request.proof,
                )
            tx.record(checkpoint.size, checkpoint.root_hash, note.text)

        # Checking the old size and recording the new checkpoint are one atomic step, and
        # the new state is persisted before any cosignature leaves the witness.
        self.state.update(checkpoint.origin, check_and_record)
        cosignature = self.config.cosigner.sign(note.text, timestamp=int(self._clock()))
        return cosignature.to_line()
