"""``textstack cache key | rekey | decrypt``: encryption at rest of the token cache.

``key`` is the one command that prints a key, on stdout and nowhere else (like ``token``
prints the token); what to do with it goes to stderr, so ``textstack cache key > file``
captures only the key. Nothing else here prints key material: keys are named by their
id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .._errors import ConfigurationError
from .._text import for_terminal
from ._context import EXIT_USAGE

if TYPE_CHECKING:
    from ._context import Context

__all__ = ["register"]


def cmd_key(ctx: Context) -> int:
    from .. import AesGcmCipher

    key = AesGcmCipher.generate_key()
    ctx.out(key)
    ctx.err(
        f"textstack: a new cache key (key id {AesGcmCipher(key).key_id}). Give it to every "
        "process that uses this cache, in one of:\n"
        "  TEXTSTACK_CACHE_KEY=<key>              (environment)\n"
        "  TEXTSTACK_CACHE_KEY_FILE=/abs/path     (a file only you can read: chmod 600)\n"
        "To rotate, list the new key first and keep the old one until every file is "
        "re-encrypted: TEXTSTACK_CACHE_KEY=<new>,<old>, run `textstack cache rekey`, then "
        "drop <old>."
    )
    return 0


def cmd_rekey(ctx: Context) -> int:
    cache = ctx.cache()
    before = cache.rewrite()
    where = for_terminal(str(cache.path))
    if before is None:
        ctx.out(f"No token cache at {where}; nothing to re-encrypt.")
        return 0
    was = "plaintext" if before == "plaintext" else f"key id {before}"
    ctx.out(f"Re-encrypted {where} under key id {cache.cipher.key_id} (was {was}).")
    return 0


def cmd_decrypt(ctx: Context) -> int:
    if not ctx.args.to_plaintext:
        raise ConfigurationError("say what to decrypt to: `textstack cache decrypt --to-plaintext`")
    cache = ctx.cache()
    where = for_terminal(str(cache.path))
    if not ctx.args.yes:
        ctx.err(
            f"textstack: this writes your tokens UNENCRYPTED to {where}, where any copy of "
            "the file (backups, synced folders) can use them. Run again with --yes to do it."
        )
        return EXIT_USAGE
    before = cache.rewrite(plaintext=True)
    if before is None:
        ctx.out(f"No token cache at {where}; nothing to decrypt.")
        return 0
    was = "plaintext" if before == "plaintext" else f"key id {before}"
    ctx.out(f"Wrote {where} in plaintext (was {was}).")
    if cache.cipher is not None:
        ctx.err(
            "textstack: note: a key is still configured, so the next use re-encrypts the "
            "file; remove TEXTSTACK_CACHE_KEY / TEXTSTACK_CACHE_KEY_FILE / "
            "TEXTSTACK_CACHE_KEY_KEYRING to stay in plaintext."
        )
    return 0


def register(add: Callable[..., Any]) -> None:
    """Adds the ``cache`` command group to the parser."""
    group = add(
        "cache",
        cmd_key,
        "encryption at rest of the token cache: key, rekey, decrypt",
        examples=[
            ("make a key, then configure it", "export TEXTSTACK_CACHE_KEY=$(textstack cache key)"),
            ("re-encrypt under the first configured key", "textstack cache rekey"),
            ("leave encryption", "textstack cache decrypt --to-plaintext --yes"),
        ],
    )
    actions = group.add_subparsers(
        dest="cache_action", metavar="ACTION", required=True, help="key, rekey or decrypt"
    )
    add("key", cmd_key, "print a fresh cache encryption key on stdout", under=actions)
    add(
        "rekey",
        cmd_rekey,
        "re-encrypt the token cache under the first configured key",
        under=actions,
    )
    decrypt = add(
        "decrypt", cmd_decrypt, "write the encrypted token cache back in plaintext", under=actions
    )
    decrypt.add_argument(
        "--to-plaintext", action="store_true", help="decrypt the cache file in place"
    )
    decrypt.add_argument("--yes", action="store_true", help="confirm writing tokens unencrypted")
