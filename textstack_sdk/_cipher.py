"""Encryption at rest for token stores: AES-256-GCM records bound to where they are kept.

A record is one line of JSON that says what it is, so a reader that expects tokens
(TextStack's .NET tool) finds none rather than crashing::

    {"format":"textstack-sealed/1","alg":"A256GCM","kid":"<16 hex>",
     "nonce":"<b64url, 12 bytes>","data":"<b64url ciphertext+tag>","note":"..."}

- Each write draws a fresh random 96-bit nonce.
- ``kid`` names the key: a truncated SHA-256 of a domain-separated key, not secret,
  so a record says which key it needs without revealing anything about it.
- The associated data binds the ciphertext to the format version, the store kind
  (``file``, later ``redis``) and the store's identity (the cache file's absolute path,
  a Redis namespace): a record copied to another place, or relabelled, does not decrypt.
- Records are canonical: the bytes must equal the record re-serialised, so no byte of
  it (not even whitespace or the note) can change without decryption failing.

Keys are 32 random bytes written as URL-safe base64. Sources, first found wins: an
explicit argument; ``TEXTSTACK_CACHE_KEY`` (one key, or a comma-separated list whose
first key encrypts and all decrypt); ``TEXTSTACK_CACHE_KEY_FILE`` (same format, in a file
refused unless it is owner-only, checked on its open descriptor like the cache);
``TEXTSTACK_CACHE_KEY_KEYRING`` (a service name: the key list stored in the OS keyring under
that service and the user ``cache-key``, through the optional ``keyring`` package). None
of them set means no encryption; a source that is set but unusable raises, never falls
back to the next source or to plaintext.

``cryptography`` is imported only when a cipher is built, never at package import.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Protocol, Union, runtime_checkable

from ._errors import CacheDecryptionError, ConfigurationError
from ._private_file import read_private
from ._store import TokenCipher as StoreCipher

__all__ = [
    "ENV_KEY",
    "ENV_KEY_FILE",
    "ENV_KEY_KEYRING",
    "KEYRING_USER",
    "AesGcmCipher",
    "TokenCipher",
    "cipher_from_env",
    "generate_key",
    "is_sealed",
    "key_id",
    "record_key_id",
    "undecryptable_message",
]

ENV_KEY = "TEXTSTACK_CACHE_KEY"
ENV_KEY_FILE = "TEXTSTACK_CACHE_KEY_FILE"
ENV_KEY_KEYRING = "TEXTSTACK_CACHE_KEY_KEYRING"
KEYRING_USER = "cache-key"
FORMAT = "textstack-sealed/1"
_ALG = "A256GCM"
_NOTE = (
    "encrypted TextStack tokens; readable only by textstack_sdk with the key "
    "(TEXTSTACK_CACHE_KEY) named by kid"
)
_KEY_BYTES = 32
_NONCE_BYTES = 12
_KID_DOMAIN = b"textstack-sdk cache key id v1\x00"
_AD_DOMAIN = b"textstack-sdk sealed record\x00"
_MAX_KEY_FILE = 4096
_MAX_KEYS = 16
# Windows editors start a UTF-8 key file with one; it is no part of the key.
_BOM = b"\xef\xbb\xbf"
_KID = re.compile(r"[0-9a-f]{16}")
_KEYLIKE = re.compile(r"[A-Za-z0-9_+=-]{24,}")
# A short marker every record carries in its first bytes, so a store that has no key can
# still tell an encrypted record from a corrupt one and leave it alone.
MARKER = b'"format":"textstack-sealed/'

KeyInput = Union[str, bytes]


@runtime_checkable
class TokenCipher(StoreCipher, Protocol):
    """Seals and opens token records for the stores. Implementations must be thread-safe.

    ``encrypt(plaintext, *, kind, identity)`` returns a record under the first key, bound
    to the store kind (``file``, ``redis``) and the identity of the record's place (the
    cache file's path, a Redis namespace); ``decrypt(record, *, kind, identity)`` returns
    the plaintext, or raises ``CacheDecryptionError`` for an unknown key id, an altered
    byte or another place's record. Those two are all a store needs (``_store``); the key
    ids let a store name the key a record needs.
    """

    @property
    def key_id(self) -> str:
        """The id of the key that encrypts (not secret)."""
        ...

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key that decrypts, the encrypting one first."""
        ...


class AesGcmCipher:
    """AES-256-GCM with rotating keys. Thread-safe (immutable after construction).

    Args:
        keys: One key or several, each 32 bytes or their URL-safe base64 text. The first
            encrypts; all decrypt (rotation: deploy ``new,old``, then ``new``).

    Raises:
        ConfigurationError: No key, a malformed key, or ``cryptography`` is missing. The
            message never contains key material.
    """

    __slots__ = ("_aead", "_ids")

    def __init__(self, keys: Union[KeyInput, Sequence[KeyInput]]) -> None:
        items: Sequence[KeyInput] = [keys] if isinstance(keys, (str, bytes)) else list(keys)
        raw = [_decode_key(item, f"key {n}") for n, item in enumerate(items, 1)]
        if not raw:
            raise ConfigurationError("an encryption key is needed; none was given")
        if len(raw) > _MAX_KEYS:
            raise ConfigurationError(f"at most {_MAX_KEYS} encryption keys are accepted")
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise ConfigurationError(
                "encrypting the token cache needs the 'cryptography' package: "
                "pip install cryptography"
            ) from exc
        ids = tuple(_key_id_of(key) for key in raw)
        # Duplicates keep their first position: the first key still encrypts.
        self._aead: dict[str, Any] = {}
        for kid, key in zip(ids, raw):
            self._aead.setdefault(kid, AESGCM(key))
        self._ids = tuple(dict.fromkeys(ids))

    @staticmethod
    def generate_key() -> str:
        """A fresh random key: 32 bytes as URL-safe base64 (44 characters)."""
        return generate_key()

    @property
    def key_id(self) -> str:
        """The id of the key that encrypts (not secret)."""
        return self._ids[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key that decrypts, the encrypting one first."""
        return self._ids

    def encrypt(self, plaintext: bytes, *, kind: str, identity: str) -> bytes:
        """A record of ``plaintext`` under the first key, bound to this store.

        Args:
            plaintext: What to seal.
            kind: The kind of store, e.g. ``file`` or ``redis``.
            identity: Which store of that kind and which record in it, e.g. the cache
                file's absolute path or a Redis namespace.
        """
        kid = self._ids[0]
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead[kid].encrypt(nonce, plaintext, _associated_data(kind, identity))
        return _render(kid, nonce, sealed)

    def decrypt(self, ciphertext: bytes, *, kind: str, identity: str) -> bytes:
        """The plaintext of a record written for this store by any configured key.

        Raises:
            CacheDecryptionError: The record is malformed or altered (``tampered``/
                ``malformed``), names a key that is not configured (``unknown_key``), or
                belongs to another store (``tampered``: the tag does not verify).
        """
        kid, nonce, sealed = _unpack(ciphertext)
        aead = self._aead.get(kid)
        if aead is None:
            raise CacheDecryptionError(
                f"it needs key id {kid}, which is not configured",
                key_id=kid,
                reason="unknown_key",
            )
        from cryptography.exceptions import InvalidTag

        try:
            plain: bytes = aead.decrypt(nonce, sealed, _associated_data(kind, identity))
        except InvalidTag:
            raise CacheDecryptionError(
                f"it does not verify under key id {kid} (altered, or copied from another location)",
                key_id=kid,
                reason="tampered",
            ) from None
        return plain

    def __repr__(self) -> str:
        return f"AesGcmCipher(key_ids={self._ids!r})"

    def __reduce__(self) -> Any:
        # A pickle would carry the keys wherever it goes (a cache, a queue, a log of
        # task arguments); whether the AEAD objects refuse depends on the backend.
        raise TypeError("an AesGcmCipher holds keys and is never pickled")

    def __copy__(self) -> AesGcmCipher:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> AesGcmCipher:
        return self


def generate_key() -> str:
    """A fresh random key: 32 bytes as URL-safe base64 (44 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_KEY_BYTES)).decode("ascii")


def key_id(key: KeyInput) -> str:
    """The public id of a key (16 hex digits); reveals nothing usable about the key.

    Raises:
        ConfigurationError: The key is malformed.
    """
    return _key_id_of(_decode_key(key, "the key"))


def record_key_id(record: bytes) -> Optional[str]:
    """The key id a sealed record names, or None when it is not a record or names none.

    Only reads the id (the record is not verified): for messages and for deciding
    whether a record may be overwritten.
    """
    if MARKER not in record[:64]:
        return None
    try:
        document = json.loads(record)
    except (ValueError, RecursionError):
        return None
    kid = document.get("kid") if isinstance(document, dict) else None
    return kid if isinstance(kid, str) and _KID.fullmatch(kid) is not None else None


def is_sealed(record: bytes) -> bool:
    """Whether ``record`` looks like a sealed record (even a damaged one)."""
    return MARKER in record[:64]


def undecryptable_message(where: str, error: CacheDecryptionError) -> str:
    """The message a store gives when its record cannot be decrypted: the two ways out."""
    key = f"key id {error.key_id}" if error.key_id else "the key it was written with"
    return (
        f"cannot decrypt the token cache {where}: {error.message}; it is left as it is. "
        f"Fix: configure {key} in {ENV_KEY}, or run `textstack logout` to discard it"
    )


def cipher_from_env(
    keys: Union[KeyInput, Sequence[KeyInput], None] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Optional[AesGcmCipher]:
    """The cipher the first configured key source asks for, or None when none is set.

    Args:
        keys: Explicit keys; they win over the environment.
        environ: The environment to read; ``os.environ`` when None.

    Raises:
        ConfigurationError: A source is set but unusable (malformed key, key file
            missing, not owner-only, or unreadable): never a silent fallback.
    """
    if keys is not None:
        return AesGcmCipher(keys)
    env = os.environ if environ is None else environ
    listed = _configured(env, ENV_KEY)
    if listed is not None:
        return AesGcmCipher(_split(listed, ENV_KEY))
    path = _configured(env, ENV_KEY_FILE)
    if path is not None:
        return AesGcmCipher(_split(_read_key_file(path), ENV_KEY_FILE))
    service = _configured(env, ENV_KEY_KEYRING)
    if service is not None:
        return AesGcmCipher(_split(_read_keyring(service), ENV_KEY_KEYRING))
    return None


# -- internals -------------------------------------------------------------------------


def _configured(env: Mapping[str, str], name: str) -> Optional[str]:
    """The stripped value of a key variable; None when unset; an error when set but blank."""
    value = env.get(name)
    if value is None:
        return None
    if not value.strip():
        # `-e TEXTSTACK_CACHE_KEY="$KEY"` with $KEY unset: the deployment meant to encrypt.
        raise ConfigurationError(
            f"{name} is set but empty; unset it to run without encryption, or give it a "
            "value (make a key with `textstack cache key`)"
        )
    return value.strip()


def _shown(value: str) -> str:
    """A name variable's value for an error message, unless a key may have been pasted there.

    Keys go into the wrong variable by mistake; a long base64-like run (a key, or most of
    one) is never echoed, while a path or a service name is.
    """
    parts = value.replace("\n", ",").split(",")
    if _KEYLIKE.search(value) is None and not any(_is_key(part) for part in parts):
        return repr(value)
    return "(value not shown: it looks like a key; keys go in TEXTSTACK_CACHE_KEY or a key file)"


def _is_key(text: str) -> bool:
    try:
        _decode_key(text, "")
    except ConfigurationError:
        return False
    return True


def _split(text: str, source: str) -> list[str]:
    parts = [part.strip() for part in text.replace("\n", ",").split(",")]
    keys = [part for part in parts if part]
    if not keys:
        raise ConfigurationError(f"{source} holds no key")
    # Name the source in errors, never the key.
    for n, part in enumerate(keys, 1):
        _decode_key(part, f"{source} key {n}")
    return keys


def _read_key_file(path: str) -> str:
    if not os.path.isabs(os.path.expanduser(path)):
        raise ConfigurationError(f"{ENV_KEY_FILE} must be an absolute path, got {_shown(path)}")
    full = os.path.expanduser(path)
    got = read_private(full, limit=_MAX_KEY_FILE, remedy="write the key to a file you own")
    if got.problem is not None:
        raise ConfigurationError(
            f"refusing the key file {full} ({ENV_KEY_FILE}): " + got.problem.replace("{}", full)
        )
    if got.data is None:
        raise ConfigurationError(f"the key file {full} ({ENV_KEY_FILE}) does not exist")
    data = got.data[len(_BOM) :] if got.data.startswith(_BOM) else got.data
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigurationError(f"the key file {full} is not a base64 key") from None


def _read_keyring(service: str) -> str:
    try:
        # Imported by name: the extra is optional, and so are its type stubs.
        keyring: Any = importlib.import_module("keyring")
    except ImportError:
        raise ConfigurationError(
            f"{ENV_KEY_KEYRING} is set, but the OS keyring needs the 'keyring' package: "
            "pip install 'textstack-sdk[keyring]'"
        ) from None
    try:
        value = keyring.get_password(service, KEYRING_USER)
    except Exception as exc:  # noqa: BLE001 - every backend failure means "no key"
        # Only the type: a backend's message is not ours to vouch for.
        raise ConfigurationError(
            f"the OS keyring could not be read for {ENV_KEY_KEYRING}={_shown(service)} "
            f"({type(exc).__name__}); headless machines usually have no keyring: use "
            f"{ENV_KEY_FILE} there"
        ) from None
    if not value:
        raise ConfigurationError(
            f"the OS keyring holds no key for {ENV_KEY_KEYRING}={_shown(service)} (user "
            f"{KEYRING_USER!r}); store one with `keyring set <service> {KEYRING_USER}`"
        )
    return str(value)


def _decode_key(key: KeyInput, label: str) -> bytes:
    if isinstance(key, bytes) and len(key) == _KEY_BYTES:
        return key
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    if not isinstance(text, str):
        raise ConfigurationError(f"{label} must be text or bytes")
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    # Round-tripping rejects standard base64 (+/) and stray characters the decoder skips.
    if len(raw) != _KEY_BYTES or base64.urlsafe_b64encode(raw).decode("ascii").rstrip(
        "="
    ) != text.rstrip("="):
        raise ConfigurationError(
            f"{label} is not a key: expected 32 random bytes as URL-safe base64 "
            "(make one with `textstack cache key`)"
        )
    return raw


def _key_id_of(raw: bytes) -> str:
    return hashlib.sha256(_KID_DOMAIN + raw).hexdigest()[:16]


def _associated_data(kind: str, identity: str) -> bytes:
    if not kind or "\x00" in kind or "\x00" in identity:
        raise ConfigurationError("a store kind is required and neither may contain NUL")
    # A POSIX path need not be UTF-8: os.fsdecode gives lone surrogates, which encode back
    # to the path's own bytes.
    return b"\x00".join(
        (
            _AD_DOMAIN,
            FORMAT.encode(),
            kind.encode("utf-8"),
            identity.encode("utf-8", "surrogateescape"),
        )
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _render(kid: str, nonce: bytes, sealed: bytes) -> bytes:
    document = {
        "format": FORMAT,
        "alg": _ALG,
        "kid": kid,
        "nonce": _b64(nonce),
        "data": _b64(sealed),
        "note": _NOTE,
    }
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def _unpack(record: bytes) -> tuple[str, bytes, bytes]:
    malformed = CacheDecryptionError("it is not a well-formed encrypted record", reason="malformed")
    try:
        document = json.loads(record.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise malformed from None
    if not isinstance(document, dict):
        raise malformed
    kid = document.get("kid")
    if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
        raise malformed
    if document.get("format") != FORMAT or document.get("alg") != _ALG:
        raise CacheDecryptionError(
            "it is in an unknown encrypted format", key_id=kid, reason="malformed"
        )
    nonce_text, data_text = document.get("nonce"), document.get("data")
    if not isinstance(nonce_text, str) or not isinstance(data_text, str):
        raise CacheDecryptionError(malformed.message, key_id=kid, reason="malformed")
    try:
        nonce = base64.urlsafe_b64decode(nonce_text + "=" * (-len(nonce_text) % 4))
        sealed = base64.urlsafe_b64decode(data_text + "=" * (-len(data_text) % 4))
    except (binascii.Error, ValueError):
        raise CacheDecryptionError(malformed.message, key_id=kid, reason="malformed") from None
    # Canonical bytes only: any change anywhere in the record is refused, not ignored.
    if len(nonce) != _NONCE_BYTES or not hmac.compare_digest(_render(kid, nonce, sealed), record):
        raise CacheDecryptionError(
            "it was altered (it is not the record as written)", key_id=kid, reason="tampered"
        )
    return kid, nonce, sealed
