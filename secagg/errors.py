"""One error hierarchy for the whole system.

Crypto failures are deliberately opaque (one class, no detail) so that no
caller can learn *which* check failed. Classes that describe bad input also
subclass ``ValueError`` so generic callers can catch them the usual way.
"""

from __future__ import annotations


class SecAggError(Exception):
    """Root of every error raised by secagg, protocol, clients and aggregator."""


class ParameterError(SecAggError, ValueError):
    """A configuration or argument is invalid (wrong size, out of range, unsafe)."""


class OverflowRisk(ParameterError):
    """A quantisation / modulus configuration could wrap around when summed."""


class DecryptionError(SecAggError):
    """Authenticated decryption failed. Carries no detail by design."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


class InvalidSignature(SecAggError):
    """A signature did not verify. Carries no detail by design."""

    def __init__(self) -> None:
        super().__init__("invalid signature")


class InvalidShare(SecAggError):
    """Secret shares are malformed, or a reconstructed secret failed its check."""

    def __init__(self, detail: str = "invalid share") -> None:
        super().__init__(detail)


class InvalidKey(ParameterError):
    """A public key is malformed, of the wrong size, or a low-order point."""


class HEParameterError(ParameterError):
    """Homomorphic-encryption parameters are insecure, unsupported or mismatched."""
