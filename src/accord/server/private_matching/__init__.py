"""Private threshold matching on the server (docs/protocol/private-matching.md), by job:

- `tables`: an operator publishes a blinded table built from banks (S1-S5); its digest is in
  the transparency log before any client is given it;
- `intake`: a message's vouchers, checked strictly before it is stored (never opened there:
  what the sender sees must not depend on whether a voucher opens), queued once it commits;
- `worker`: the queue, processed off the request path (P1-P9): shares, the threshold test,
  review events past the threshold, crossings appended to the log;
- `events`: threshold events for reviewers and the console.

`PrivateMatchingService` (`service`) builds them; routes/matching.py and routes/review.py map
them to HTTP. Nothing here logs a voucher, a hash, a key or an account's images.
"""

from accord.server.private_matching.service import PrivateMatchingService

__all__ = ["PrivateMatchingService"]
