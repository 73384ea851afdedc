"""ES256 JWT signing and verification for the fake server, with a key made at startup.

``cryptography`` is imported here only, and only when a signer is built, so that
``import textstack_sdk`` (and even ``import textstack_sdk.testing``) never loads it.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any, Mapping, Optional

__all__ = ["Es256Signer"]

_COORD = 32  # P-256 scalars are 32 bytes; a JWS signature is r || s (RFC 7518 §3.4).


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(segment: str) -> bytes:
    if len(segment) % 4 == 1:
        raise ValueError("impossible base64url length")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class Es256Signer:
    """Signs and verifies compact ES256 JWS with one fresh P-256 key. Thread-safe.

    The key never leaves the process; ``rotate()`` replaces it, which makes every
    earlier token fail verification.
    """

    def __init__(self) -> None:
        try:
            import cryptography  # noqa: F401
        except ImportError as exc:
            from .._errors import ConfigurationError

            raise ConfigurationError(
                "the local TextStack server signs real JWTs and needs the 'cryptography' "
                "package: pip install cryptography"
            ) from exc
        self._state: tuple[Any, str] = (None, "")
        self.rotate()

    def rotate(self) -> None:
        """Generates a new key (and key id); tokens signed before no longer verify."""
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        self._state = (key, secrets.token_hex(8))

    def sign(self, payload: Mapping[str, Any]) -> str:
        """Returns ``header.payload.signature`` for any JSON-serialisable payload."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        key, kid = self._state
        header = {"alg": "ES256", "typ": "JWT", "kid": kid}
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))
            for part in (header, dict(payload))
        ).encode("ascii")
        der = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        raw = r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")
        return signing_input.decode("ascii") + "." + _b64url(raw)

    def verify(self, token: str) -> Optional[dict[str, Any]]:
        """The payload when the signature is ours and valid, else None. Never raises."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        parts = token.split(".")
        if len(parts) != 3:
            return None
        key, kid = self._state
        try:
            header = json.loads(_unb64url(parts[0]))
            raw = _unb64url(parts[2])
            if not isinstance(header, dict) or header.get("alg") != "ES256":
                return None
            if header.get("kid") != kid or len(raw) != 2 * _COORD:
                return None
            der = encode_dss_signature(
                int.from_bytes(raw[:_COORD], "big"), int.from_bytes(raw[_COORD:], "big")
            )
            signing_input = (parts[0] + "." + parts[1]).encode("ascii")
            key.public_key().verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
            payload = json.loads(_unb64url(parts[1]))
        except (InvalidSignature, ValueError, binascii.Error, RecursionError):
            return None
        return payload if isinstance(payload, dict) else None

    def __repr__(self) -> str:
        return "Es256Signer()"
