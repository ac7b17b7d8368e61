"""Protocol errors: one class per rejection reason, each mapped to one status code.

The server machine raises these from ``receive`` when a client's message is
rejected; the host turns them into gRPC status codes through one table
(``STATUS`` names the code of each class). Rejections never change what
was already accepted.
"""

from __future__ import annotations

from secagg.errors import SecAggError


class ProtocolError(SecAggError):
    """Root of protocol errors."""

    status = "INVALID_ARGUMENT"


class UnexpectedCall(ProtocolError):
    """The host called the machine out of order (a bug in the caller, not a peer fault)."""

    status = "FAILED_PRECONDITION"


class InvalidMessage(ProtocolError, ValueError):
    """Malformed or out-of-spec content: wrong length, range, recipients, sizes."""

    status = "INVALID_ARGUMENT"


class WrongPhase(ProtocolError):
    """The message belongs to another phase, a stale round, or arrived after its deadline."""

    status = "FAILED_PRECONDITION"


class UnknownClient(ProtocolError):
    """The sender is not in this round's cohort (or was excluded from it)."""

    status = "PERMISSION_DENIED"


class AuthenticationFailed(ProtocolError):
    """A signature did not verify against the roster."""

    status = "UNAUTHENTICATED"


class ConflictingMessage(ProtocolError):
    """A second, different message for a phase the client already answered."""

    status = "ALREADY_EXISTS"


class RoundAborted(ProtocolError):
    """The round is aborted; the client should drop the session."""

    status = "ABORTED"
