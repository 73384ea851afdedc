"""textstack_sdk: the Python SDK for the TextStack reading library.

The public names are listed in ``__all__``; everything in a ``_module`` is private.

Importing the package loads only its version: each public name is imported from its
module on first use (PEP 562 ``__getattr__``), so ``import textstack_sdk`` and the
``textstack`` command pay only for what they touch. Type checkers see the names through
the ``TYPE_CHECKING`` imports below.
"""

from ._version import __version__

# Not typing.TYPE_CHECKING: importing typing would cost more than the rest of this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._api_models import (
        AskAnswer,
        Author,
        Book,
        Chapter,
        ChapterLink,
        ChapterReview,
        ChapterSummary,
        Citation,
        EditionSummary,
        Genre,
        Highlight,
        Insight,
        JsonObject,
        LibraryHit,
        MyBook,
        MyBookDetail,
        MyBookProgress,
        MyChapter,
        Progress,
        SearchHit,
        SearchResults,
        ShelfItem,
        Shelves,
        User,
        VocabularyPage,
        VocabularyWord,
    )
    from ._cache import FileTokenCache, TokenCache, default_cache_path
    from ._cipher import AesGcmCipher, TokenCipher, cipher_from_env
    from ._client import InvalidArgument, TextStackApiClient
    from ._errors import (
        ApiError,
        AuthorizationDenied,
        AuthorizationError,
        AuthorizationExpired,
        AuthorizationRequired,
        AuthorizationTimeout,
        CacheDecryptionError,
        ConfigurationError,
        FieldError,
        ProtocolError,
        TextStackError,
        TransportError,
    )
    from ._memory_cache import MemoryTokenCache
    from ._models import Authorized, Failed, Pending, TokenResult, TokenSet
    from ._providers import StaticTokenProvider, TokenProvider, provider_from_env
    from ._redis_store import RedisTokenStore
    from ._token_manager import TokenManager, TokenStatus

del TYPE_CHECKING  # not a public name

__all__ = [
    "AesGcmCipher",
    "ApiError",
    "AskAnswer",
    "Author",
    "AuthorizationDenied",
    "AuthorizationError",
    "AuthorizationExpired",
    "AuthorizationRequired",
    "AuthorizationTimeout",
    "Authorized",
    "Book",
    "CacheDecryptionError",
    "Chapter",
    "ChapterLink",
    "ChapterReview",
    "ChapterSummary",
    "Citation",
    "ConfigurationError",
    "EditionSummary",
    "Failed",
    "FieldError",
    "FileTokenCache",
    "Genre",
    "Highlight",
    "Insight",
    "InvalidArgument",
    "JsonObject",
    "LibraryHit",
    "MemoryTokenCache",
    "MyBook",
    "MyBookDetail",
    "MyBookProgress",
    "MyChapter",
    "Pending",
    "Progress",
    "ProtocolError",
    "RedisTokenStore",
    "SearchHit",
    "SearchResults",
    "ShelfItem",
    "Shelves",
    "StaticTokenProvider",
    "TextStackApiClient",
    "TextStackError",
    "TokenCache",
    "TokenCipher",
    "TokenManager",
    "TokenProvider",
    "TokenResult",
    "TokenSet",
    "TokenStatus",
    "TransportError",
    "User",
    "VocabularyPage",
    "VocabularyWord",
    "__version__",
    "cipher_from_env",
    "default_cache_path",
    "provider_from_env",
]

# Where each public name lives; imported on first access.
_MODULE_NAMES = {
    "_api_models": (
        "AskAnswer",
        "Author",
        "Book",
        "Chapter",
        "ChapterLink",
        "ChapterReview",
        "ChapterSummary",
        "Citation",
        "EditionSummary",
        "Genre",
        "Highlight",
        "Insight",
        "JsonObject",
        "LibraryHit",
        "MyBook",
        "MyBookDetail",
        "MyBookProgress",
        "MyChapter",
        "Progress",
        "SearchHit",
        "SearchResults",
        "ShelfItem",
        "Shelves",
        "User",
        "VocabularyPage",
        "VocabularyWord",
    ),
    "_cache": ("FileTokenCache", "TokenCache", "default_cache_path"),
    "_cipher": ("AesGcmCipher", "TokenCipher", "cipher_from_env"),
    "_client": ("InvalidArgument", "TextStackApiClient"),
    "_errors": (
        "ApiError",
        "AuthorizationDenied",
        "AuthorizationError",
        "AuthorizationExpired",
        "AuthorizationRequired",
        "AuthorizationTimeout",
        "CacheDecryptionError",
        "ConfigurationError",
        "FieldError",
        "ProtocolError",
        "TextStackError",
        "TransportError",
    ),
    "_memory_cache": ("MemoryTokenCache",),
    "_models": ("Authorized", "Failed", "Pending", "TokenResult", "TokenSet"),
    "_providers": ("StaticTokenProvider", "TokenProvider", "provider_from_env"),
    "_redis_store": ("RedisTokenStore",),
    "_token_manager": ("TokenManager", "TokenStatus"),
}
_WHERE = {name: module for module, names in _MODULE_NAMES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
