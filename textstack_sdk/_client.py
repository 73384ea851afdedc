"""``TextStackApiClient``: one blocking, thread-safe method per TextStack API route.

The client builds requests (paths joined under the base URL's ``/api`` prefix, user
values percent-encoded as single segments, camelCase JSON bodies), adds the bearer token
on user-scoped routes only, replays once after a 401 with a refreshed token, and turns
answers into the typed results of ``_api_models`` or into errors. Parsing is pure and
lives in ``_api_parse``; the network lives behind the ``Transport`` seam.

What calls return:

* reads return a typed result; the single-resource reads the wire contract marks
  "404 when not found / not yours" (``get_book``, ``get_chapter``, ``get_my_book``,
  ``get_my_chapter``, ``list_my_book_highlights``, ``get_my_insights``,
  ``get_progress``, ``get_my_book_progress``) return None on a JSON or empty 404;
  a 404 carrying an HTML page (a proxy, a wrong base URL) still raises.
* ``save_highlight``, ``save_my_highlight``, ``save_insight`` and
  ``save_chapter_review`` return the saved object the server sends back, or None when
  the server acknowledged with an empty 2xx body.
* ``set_progress`` and ``set_my_book_progress`` return None on any 2xx.
* everything else raises: ``ApiError`` (non-2xx), ``ProtocolError`` (a 2xx that breaks
  the contract), ``TransportError``, ``AuthorizationRequired``, ``InvalidArgument``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union
from urllib.parse import quote, urlencode

from . import _api_parse as P
from ._api_models import (
    AskAnswer,
    Book,
    Chapter,
    ChapterReview,
    Highlight,
    Insight,
    LibraryHit,
    MyBook,
    MyBookDetail,
    MyBookProgress,
    MyChapter,
    Progress,
    SearchResults,
    Shelves,
    VocabularyPage,
)
from ._errors import AuthorizationRequired, ConfigurationError, TextStackError
from ._http import Request, Response, Transport
from ._jwt import is_bearer_token
from ._models import Authorized, Failed, Pending, TokenResult
from ._settings import resolve_api_url, resolve_site_host, resolve_timeout
from ._text import for_terminal

if TYPE_CHECKING:
    from ._providers import TokenProvider

__all__ = [
    "DEFAULT_HIGHLIGHT_COLOR",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "InvalidArgument",
    "TextStackApiClient",
]

T = TypeVar("T")
Locator = Union[str, Mapping[str, Any]]

_log = logging.getLogger("textstack_sdk.client")

DEFAULT_HIGHLIGHT_COLOR = "yellow"
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_MIN_RESPONSE_BYTES = 1024
_MAX_RESPONSE_BYTES = 1024 * 1024 * 1024
_BEARER = "Bearer "
# Ids and slugs that need no escaping (and are not dot segments) skip quote().
_PLAIN_SEGMENT = re.compile(r"(?!\.{1,2}\Z)[A-Za-z0-9_~.-]+")


class InvalidArgument(TextStackError, ValueError):
    """An argument cannot make a valid request (empty id, both or neither of two ids...).

    Raised before anything is sent.
    """


# ---------------------------------------------------------------- argument helpers


def _segment(value: object, name: str) -> str:
    """One path segment: '/', '?', '#', '%' and '..' cannot change the route."""
    if isinstance(value, uuid.UUID):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{name} must be a non-empty string")
    if _PLAIN_SEGMENT.fullmatch(value):
        return value
    encoded = quote(value, safe="")
    if encoded in (".", ".."):
        # Dot segments survive quote() and would be resolved away by URL normalisation.
        encoded = encoded.replace(".", "%2E")
    return encoded


def _text_arg(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    return value


def _opt_text(value: object, name: str) -> Optional[str]:
    return None if value is None else _text_arg(value, name)


def _id_arg(value: object, name: str) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{name} must be a non-empty string")
    return value


def _count(value: object, name: str, minimum: int) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name} must be an integer >= {minimum}")
    return value


def _percent(value: object) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument("percent must be a number")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 100.0:
        raise InvalidArgument("percent must be between 0 and 100")
    return number


def _json_text(value: object, name: str) -> Optional[str]:
    """A string, or a JSON-serialisable object sent as its compact JSON text."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{name} must be a string or JSON-serialisable") from exc


def _one_book(edition_id: object, book_id: object) -> tuple[str, str]:
    """The (JSON name, id) of exactly one of a catalog edition or an uploaded book."""
    if (edition_id is None) == (book_id is None):
        raise InvalidArgument("pass exactly one of edition_id (catalog) or book_id (upload)")
    if edition_id is not None:
        return "editionId", _id_arg(edition_id, "edition_id")
    return "userBookId", _id_arg(book_id, "book_id")


def _encode(payload: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(
            payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgument("the request body is not JSON-serialisable") from exc


def _tags(value: object) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Iterable):
        tags = list(value)
        if all(isinstance(tag, str) for tag in tags):
            return ",".join(tags)
    raise InvalidArgument("tags must be a string or a list of strings")


def _query(pairs: Iterable[tuple[str, object]]) -> str:
    present = [(key, value) for key, value in pairs if value is not None]
    return "?" + urlencode(present) if present else ""


def _looks_like_html(response: Response) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    return "html" in content_type or response.body.lstrip()[:1] == b"<"


def _authorization_required(result: object) -> AuthorizationRequired:
    if isinstance(result, Pending):
        return AuthorizationRequired(
            result.message,
            reason="a login is waiting for approval",
            verification_uri=result.verification_uri,
            user_code=result.user_code,
            verification_uri_complete=result.verification_uri_complete,
        )
    if isinstance(result, Failed):
        reason = for_terminal(result.message)
        return AuthorizationRequired(f"authentication required — {reason}", reason=reason)
    reason = f"the token provider returned {type(result).__name__}, not a token result"
    return AuthorizationRequired(f"authentication required — {reason}", reason=reason)


class TextStackApiClient:
    """Blocking TextStack API client. Thread-safe: share one per process.

    One transport (one connection pool) per client. Public catalog routes never carry
    a token; user-scoped routes get one from the token provider first and send nothing
    without it. A call that gets one thing returns None when the server answers 404;
    a list is a tuple, empty only when truly empty; failures raise (each method's
    Raises section says which).

    Args:
        api_url: Base URL including its path prefix; None reads ``TEXTSTACK_API_URL``
            (default ``https://textstack.app/api``). Plain http only to loopback.
        site_host: The exact ``Host`` header; None reads ``TEXTSTACK_SITE_HOST``
            (default ``textstack.app``).
        token_provider: Supplies bearer tokens; None means ``provider_from_env()``.
        timeout: Per-request deadline in seconds, in (0, 600]; None reads
            ``TEXTSTACK_MCP_TIMEOUT_SECONDS`` (default 15).
        transport: A ``Transport`` to use instead of the urllib3 one (not closed by
            ``close()``).
        max_response_bytes: Largest response body accepted by the transport the client
            creates.
        user_agent: ``User-Agent`` of the transport the client creates.
        environ: The environment to read instead of ``os.environ``.

    Raises:
        ConfigurationError: A setting is invalid (the message names it).
    """

    def __init__(
        self,
        api_url: Optional[str] = None,
        *,
        site_host: Optional[str] = None,
        token_provider: Optional[TokenProvider] = None,
        timeout: Optional[float] = None,
        transport: Optional[Transport] = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        user_agent: Optional[str] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        if environ is None:
            environ = os.environ
        self._api_url = resolve_api_url(api_url, environ)
        self._site_host = resolve_site_host(site_host, environ)
        self._timeout = resolve_timeout(timeout, environ)
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or not _MIN_RESPONSE_BYTES <= max_response_bytes <= _MAX_RESPONSE_BYTES
        ):
            raise ConfigurationError(
                f"max_response_bytes must be an integer between {_MIN_RESPONSE_BYTES} "
                f"and {_MAX_RESPONSE_BYTES}"
            )
        if user_agent is not None and (
            not isinstance(user_agent, str) or any(ch in user_agent for ch in "\r\n\0")
        ):
            raise ConfigurationError("user_agent must be a single-line string")

        self._owns_provider = token_provider is None
        if token_provider is None:
            from ._providers import provider_from_env

            token_provider = provider_from_env(environ)
        if not callable(getattr(token_provider, "get_token", None)):
            raise ConfigurationError("token_provider must have a get_token() method")
        self._provider = token_provider

        self._owns_transport = transport is None
        if transport is None:
            from ._transport import Urllib3Transport

            options: dict[str, Any] = {
                "timeout": self._timeout,
                "max_response_bytes": max_response_bytes,
            }
            if user_agent is not None:
                options["user_agent"] = user_agent
            transport = Urllib3Transport(**options)
        self._transport: Transport = transport

        base = (("Host", self._site_host), ("Accept", "application/json"))
        self._headers: tuple[tuple[str, str], ...] = base
        self._json_headers: tuple[tuple[str, str], ...] = (
            *base,
            ("Content-Type", "application/json"),
        )
        # The last token that passed the header-safety check; identity comparison keeps
        # the hot path free of a regex per call. A benign race: worst case, one re-check.
        self._checked_token: Optional[str] = None
        self._bearer_headers: dict[
            tuple[tuple[str, str], ...], tuple[str, tuple[tuple[str, str], ...]]
        ] = {}
        self._close_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> TextStackApiClient:
        """A client configured entirely from the environment.

        Args:
            environ: The environment to read; ``os.environ`` when None.
        """
        return cls(environ=environ)

    @property
    def api_url(self) -> str:
        """The base URL every path is joined to (no trailing slash)."""
        return self._api_url

    @property
    def site_host(self) -> str:
        """The ``Host`` header every request carries."""
        return self._site_host

    @property
    def timeout(self) -> float:
        """The per-request deadline in seconds."""
        return self._timeout

    @property
    def token_provider(self) -> TokenProvider:
        """The token provider of user-scoped calls."""
        return self._provider

    def __repr__(self) -> str:
        return f"TextStackApiClient(api_url={self._api_url!r}, site_host={self._site_host!r})"

    def close(self) -> None:
        """Closes what the client created (transport, token provider). Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._owns_transport:
                self._transport.close()
        finally:
            closer = getattr(self._provider, "close", None)
            if self._owns_provider and callable(closer):
                closer()

    def __enter__(self) -> TextStackApiClient:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    # ------------------------------------------------------------ the request core

    def _exchange(self, request: Request) -> Response:
        if self._closed:
            raise ConfigurationError("the TextStackApiClient is closed")
        response = self._transport.handle_request(request)
        _log.debug("%s -> %d", request.route, response.status)
        return response

    def _request(
        self, method: str, route: str, path: str, body: Optional[bytes], *, user: bool
    ) -> Response:
        url = self._api_url + path
        headers = self._headers if body is None else self._json_headers
        retry_safe = method == "GET"
        if not user:
            return self._exchange(
                Request(method, url, headers, body, route, retry_safe, self._timeout)
            )
        token = self._token()
        response = self._exchange(
            Request(
                method,
                url,
                self._with_bearer(headers, token),
                body,
                route,
                retry_safe,
                self._timeout,
            )
        )
        if response.status != 401:
            return response
        # A 401 means the server did not act, so replaying a write once is safe.
        fresh = self._token_after_401(token, route)
        response = self._exchange(
            Request(
                method,
                url,
                self._with_bearer(headers, fresh),
                body,
                route,
                retry_safe,
                self._timeout,
            )
        )
        if response.status == 401:
            self._invalidate(fresh)
            reason = "the server rejected the access token even after a refresh (HTTP 401)"
            raise AuthorizationRequired(f"authentication required — {reason}", reason=reason)
        return response

    def _with_bearer(
        self, headers: tuple[tuple[str, str], ...], token: str
    ) -> tuple[tuple[str, str], ...]:
        # The same tuple for every call with this token: no per-call string building,
        # and the transport's validated-headers cache hits on it.
        cached = self._bearer_headers.get(headers)
        if cached is not None and cached[0] is token:
            return cached[1]
        full = (*headers, ("Authorization", _BEARER + token))
        self._bearer_headers[headers] = (token, full)
        return full

    def _token(self) -> str:
        result: TokenResult = self._provider.get_token()
        if not isinstance(result, Authorized):
            raise _authorization_required(result)
        token = result.access_token
        if token is not self._checked_token:
            if not is_bearer_token(token):
                reason = "the token provider gave a value that is not a bearer token"
                raise AuthorizationRequired(f"authentication required — {reason}", reason=reason)
            self._checked_token = token
        return token

    def _invalidate(self, token: str) -> None:
        invalidate = getattr(self._provider, "invalidate", None)
        if callable(invalidate):
            invalidate(token)

    def _token_after_401(self, rejected: str, route: str) -> str:
        _log.debug("%s -> 401; asking the token provider for a new token", route)
        self._invalidate(rejected)
        fresh = self._token()
        if fresh == rejected:
            reason = "the server rejected the access token (HTTP 401)"
            raise AuthorizationRequired(f"authentication required — {reason}", reason=reason)
        return fresh

    def _get(
        self,
        route: str,
        path: str,
        kind: Callable[[Any, str], T],
        *,
        user: bool,
        none_on_404: bool = False,
    ) -> Optional[T]:
        response = self._request("GET", route, path, None, user=user)
        return self._result(response, route, kind, none_on_404=none_on_404)

    @staticmethod
    def _result(
        response: Response,
        route: str,
        kind: Callable[[Any, str], T],
        *,
        none_on_404: bool = False,
        empty_is_none: bool = False,
    ) -> Optional[T]:
        status = response.status
        if 200 <= status < 300:
            if empty_is_none and not response.body.strip():
                return None
            data = P.decode_json(
                response.body,
                route=route,
                status=status,
                content_type=response.headers.get("content-type"),
            )
            return P.parse(kind, data, route=route, status=status)
        if status == 404 and none_on_404 and not _looks_like_html(response):
            return None
        raise P.api_error(status, response.headers, response.body, route=route)

    @staticmethod
    def _required(value: Optional[T]) -> T:
        # _result only returns None when asked to (404 or empty body).
        assert value is not None
        return value

    def _send_json(
        self,
        method: str,
        route: str,
        path: str,
        payload: Mapping[str, Any],
        kind: Callable[[Any, str], T],
        *,
        user: bool = True,
        empty_is_none: bool = True,
    ) -> Optional[T]:
        response = self._request(method, route, path, _encode(payload), user=user)
        return self._result(response, route, kind, empty_is_none=empty_is_none)

    def _send_no_result(
        self, method: str, route: str, path: str, payload: Mapping[str, Any]
    ) -> None:
        response = self._request(method, route, path, _encode(payload), user=True)
        if not 200 <= response.status < 300:
            raise P.api_error(response.status, response.headers, response.body, route=route)

    # ------------------------------------------------------------ public catalog

    def search_books(self, query: str, limit: Optional[int] = None) -> SearchResults:
        """Full-text search of the public catalog (``GET /search``).

        Args:
            query: The search text.
            limit: Most hits to return; the server's default when None.

        Returns:
            The total number of matching chapters and one page of hits, each naming its
            edition (``hit.edition.id`` is the edition id other calls take).

        Raises:
            InvalidArgument: query is not a string or limit is not a positive integer.
            ApiError: The server refused (ProtocolError: the answer broke the contract).
            TransportError: The network failed.
        """
        path = "/search" + _query(
            (("q", _text_arg(query, "query")), ("limit", _count(limit, "limit", 1)))
        )
        return self._required(self._get("GET /search", path, P.search_results, user=False))

    def get_book(self, slug: str) -> Optional[Book]:
        """A catalog book with its chapters (``GET /books/{slug}``), None when unknown.

        Args:
            slug: The book's slug, the readable name in its address (``"moby-dick"``).

        Returns:
            The book with its chapters (their ids and slugs), or None when no book has
            that slug (404).

        Raises:
            InvalidArgument: slug is empty.
            ApiError: Any failure other than 404.
            TransportError: The network failed.
        """
        path = "/books/" + _segment(slug, "slug")
        return self._get("GET /books/{slug}", path, P.book, user=False, none_on_404=True)

    def get_chapter(self, slug: str, chapter_slug: str) -> Optional[Chapter]:
        """A catalog chapter with its HTML, None when unknown.

        Args:
            slug: The book's slug.
            chapter_slug: The chapter's slug (``Book.chapters[i].slug``).

        Returns:
            The chapter with its HTML and links to its neighbours, or None when the book
            or the chapter is unknown (404).

        Raises:
            InvalidArgument: slug or chapter_slug is empty.
            ApiError: Any failure other than 404.
            TransportError: The network failed.
        """
        path = f"/books/{_segment(slug, 'slug')}/chapters/{_segment(chapter_slug, 'chapter_slug')}"
        return self._get(
            "GET /books/{slug}/chapters/{chapterSlug}",
            path,
            P.chapter,
            user=False,
            none_on_404=True,
        )

    # ------------------------------------------------------------ user scoped

    def ask_book(self, edition_id: str, question: str, k: Optional[int] = None) -> AskAnswer:
        """Asks a question about a catalog edition (``POST /books/{editionId}/ask``).

        Args:
            edition_id: The edition's id.
            question: The question.
            k: How many passages to retrieve; the server's default when None.

        Returns:
            The answer with the chapters it cites; ``insufficient`` is True when the
            book's text did not support an answer.

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            InvalidArgument: An argument is empty or out of range.
            ApiError: The server refused.
            TransportError: The network failed.
        """
        route = "POST /books/{editionId}/ask"
        payload: dict[str, Any] = {"question": _text_arg(question, "question")}
        count = _count(k, "k", 1)
        if count is not None:
            payload["k"] = count
        path = f"/books/{_segment(edition_id, 'edition_id')}/ask"
        return self._required(
            self._send_json("POST", route, path, payload, P.ask_answer, empty_is_none=False)
        )

    def list_my_highlights(self, edition_id: str) -> Optional[tuple[Highlight, ...]]:
        """The caller's highlights in a catalog edition (``GET /me/highlights/{editionId}``).

        Returns:
            The highlights (empty when there are none), or None when the edition is not
            found (404).

        Args:
            edition_id: The catalog edition's id (see ``Book.id``).

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: Any failure other than 404.
            TransportError: The network failed.
        """
        path = "/me/highlights/" + _segment(edition_id, "edition_id")
        return self._get(
            "GET /me/highlights/{editionId}", path, P.highlights, user=True, none_on_404=True
        )

    def save_highlight(  # noqa: PLR0917 - positional order is the public contract
        self,
        edition_id: str,
        chapter_id: str,
        selected_text: str,
        color: str = DEFAULT_HIGHLIGHT_COLOR,
        note_text: Optional[str] = None,
        anchor_json: Optional[Union[str, Mapping[str, Any]]] = None,
    ) -> Optional[Highlight]:
        """Saves a highlight in a catalog chapter (``POST /me/highlights``).

        Args:
            edition_id: The edition's id.
            chapter_id: The chapter's id.
            selected_text: The highlighted text.
            color: The highlight colour.
            note_text: An optional note.
            anchor_json: The reader's anchor, as JSON text or a JSON-serialisable object.

        Returns:
            The saved highlight, or None when the server sent no body.

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: The server refused.
            TransportError: The network failed.
        """
        where = {
            "editionId": _id_arg(edition_id, "edition_id"),
            "chapterId": _id_arg(chapter_id, "chapter_id"),
        }
        return self._post_highlight(where, selected_text, color, note_text, anchor_json)

    def list_my_vocabulary(
        self,
        stage: Optional[Union[str, int]] = None,
        search: Optional[str] = None,
        limit: Optional[int] = None,
        offset: Optional[int] = None,
    ) -> VocabularyPage:
        """A page of the caller's vocabulary (``GET /me/vocabulary/words``).

        Unset filters are omitted from the query.

        Args:
            stage: Only words at this learning stage (a name such as ``"learning"``, or
                the server's number for it).
            search: Only words containing this text.
            limit: Most words to return; the server's default when None.
            offset: Words to skip, for paging.

        Returns:
            One page of words and the total count.

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            InvalidArgument: A filter has the wrong type or range.
            ApiError: The server refused.
            TransportError: The network failed.
        """
        if stage is not None and (isinstance(stage, bool) or not isinstance(stage, (str, int))):
            raise InvalidArgument("stage must be a string or an integer")
        path = "/me/vocabulary/words" + _query(
            (
                ("stage", stage),
                ("search", _opt_text(search, "search")),
                ("limit", _count(limit, "limit", 1)),
                ("offset", _count(offset, "offset", 0)),
            )
        )
        return self._required(
            self._get("GET /me/vocabulary/words", path, P.vocabulary_page, user=True)
        )

    def search_my_library(
        self, query: str, tags: Optional[Union[str, Iterable[str]]] = None
    ) -> tuple[LibraryHit, ...]:
        """Searches the caller's own library (``GET /me/library/search``).

        Args:
            query: The search text.
            tags: A comma-separated string or a list of tags (sent comma-joined).

        Returns:
            The matches, best first (empty when nothing matches).

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: The server refused.
            TransportError: The network failed.
        """
        path = "/me/library/search" + _query(
            (("q", _text_arg(query, "query")), ("tags", _tags(tags)))
        )
        return self._required(self._get("GET /me/library/search", path, P.library_hits, user=True))

    def list_my_books(self) -> tuple[MyBook, ...]:
        """The books the caller uploaded (``GET /me/books``).

        Returns:
            The uploaded books (empty when there are none).

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: The server refused.
            TransportError: The network failed.
        """
        return self._required(self._get("GET /me/books", "/me/books", P.my_books, user=True))

    def get_my_book(self, book_id: str) -> Optional[MyBookDetail]:
        """One uploaded book with its chapters; None when not found or not the caller's.

        Args:
            book_id: The uploaded book's id (``MyBook.id``).

        Returns:
            The book with its chapters, or None (404).

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: Any failure other than 404.
            TransportError: The network failed.
        """
        path = "/me/books/" + _segment(book_id, "book_id")
        return self._get(
            "GET /me/books/{bookId}", path, P.my_book_detail, user=True, none_on_404=True
        )

    def get_my_chapter(self, book_id: str, chapter_slug: str) -> Optional[MyChapter]:
        """A chapter of an uploaded book with its HTML; None when not found or not yours.

        Args:
            book_id: The uploaded book's id.
            chapter_slug: The chapter's slug (``MyBookDetail.chapters[i].slug``).

        Returns:
            The chapter with its HTML, or None (404).

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: Any failure other than 404.
            TransportError: The network failed.
        """
        path = (
            f"/me/books/{_segment(book_id, 'book_id')}"
            f"/chapters/{_segment(chapter_slug, 'chapter_slug')}"
        )
        return self._get(
            "GET /me/books/{bookId}/chapters/{chapterSlug}",
            path,
            P.my_chapter,
            user=True,
            none_on_404=True,
        )

    def list_my_book_highlights(self, book_id: str) -> Optional[tuple[Highlight, ...]]:
        """Highlights in an uploaded book; None when the book is not the caller's.

        Args:
            book_id: The uploaded book's id.

        Returns:
            The highlights (empty when there are none), or None (404).

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: Any failure other than 404.
            TransportError: The network failed.
        """
        path = "/me/highlights/userbook/" + _segment(book_id, "book_id")
        return self._get(
            "GET /me/highlights/userbook/{bookId}",
            path,
            P.highlights,
            user=True,
            none_on_404=True,
        )

    def save_my_highlight(  # noqa: PLR0917 - positional order is the public contract
        self,
        book_id: str,
        user_chapter_id: str,
        selected_text: str,
        color: str = DEFAULT_HIGHLIGHT_COLOR,
        note_text: Optional[str] = None,
        anchor_json: Optional[Union[str, Mapping[str, Any]]] = None,
    ) -> Optional[Highlight]:
        """Saves a highlight in an uploaded book's chapter (``POST /me/highlights``).

        Args:
            book_id: The uploaded book's id.
            user_chapter_id: The chapter's id in that book (``MyChapter.id``).
            selected_text: The highlighted text.
            color: The highlight colour.
            note_text: An optional note.
            anchor_json: The reader's anchor, as JSON text or a JSON-serialisable object;
                None sends one that quotes ``selected_text``.

        Returns:
            The saved highlight, or None when the server sent no body.

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: The server refused.
            TransportError: The network failed.
        """
        where = {
            "userBookId": _id_arg(book_id, "book_id"),
            "userChapterId": _id_arg(user_chapter_id, "user_chapter_id"),
        }
        return self._post_highlight(where, selected_text, color, note_text, anchor_json)

    def _post_highlight(
        self,
        where: dict[str, str],
        selected_text: str,
        color: str,
        note_text: Optional[str],
        anchor_json: Optional[Union[str, Mapping[str, Any]]],
    ) -> Optional[Highlight]:
        # One route for catalog and uploaded books; ``where`` names the book and chapter.
        anchor = _json_text(anchor_json, "anchor_json")
        if anchor is None:
            # The server requires an anchor (the text of a JSON object); without one from
            # a reader, quote the selection, as TextStack's own clients do.
            anchor = json.dumps(
                {"type": "TextQuoteSelector", "exact": selected_text, "source": "sdk"},
                separators=(",", ":"),
                ensure_ascii=False,
            )
        payload = {
            **where,
            "anchorJson": anchor,
            "color": _text_arg(color, "color"),
            "selectedText": _text_arg(selected_text, "selected_text"),
            "noteText": _opt_text(note_text, "note_text"),
        }
        return self._send_json(
            "POST", "POST /me/highlights", "/me/highlights", payload, P.highlight
        )

    def get_my_insights(
        self, edition_id: Optional[str] = None, book_id: Optional[str] = None
    ) -> Optional[tuple[Insight, ...]]:
        """The caller's insights on one book (exactly one of edition_id or book_id).

        Args:
            edition_id: A catalog edition's id.
            book_id: An uploaded book's id.

        Returns:
            The insights, or None when the book is not found or not the caller's.

        Raises:
            InvalidArgument: Neither or both ids given.
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: Any failure other than 404.
            TransportError: The network failed.
        """
        key, value = _one_book(edition_id, book_id)
        path = "/me/insights" + _query(((key, value),))
        return self._get("GET /me/insights", path, P.insights, user=True, none_on_404=True)

    def save_insight(
        self,
        text: str,
        edition_id: Optional[str] = None,
        book_id: Optional[str] = None,
        chapter_slug: Optional[str] = None,
        question: Optional[str] = None,
    ) -> Optional[Insight]:
        """Saves an insight (``POST /me/insights``); saving again for the same place
        replaces it. ``chapter_slug`` None means the whole book.

        Args:
            text: The insight.
            edition_id: A catalog edition's id (or give book_id).
            book_id: An uploaded book's id (or give edition_id).
            chapter_slug: The chapter it is about; None for the whole book.
            question: The question it answers, if any.

        Returns:
            The saved insight, or None when the server sent no body.

        Raises:
            InvalidArgument: Neither or both ids given.
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: The server refused.
            TransportError: The network failed.
        """
        key, value = _one_book(edition_id, book_id)
        payload = {
            key: value,
            "chapterSlug": _opt_text(chapter_slug, "chapter_slug"),
            "text": _text_arg(text, "text"),
            "question": _opt_text(question, "question"),
        }
        return self._send_json("POST", "POST /me/insights", "/me/insights", payload, P.insight)

    def get_shelves(self) -> Shelves:
        """The caller's library shelves (``GET /me/library/shelves``).

        Returns:
            The continue-reading, recently-added and finished-this-month shelves.

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: The server refused.
            TransportError: The network failed.
        """
        return self._required(
            self._get("GET /me/library/shelves", "/me/library/shelves", P.shelves, user=True)
        )

    def get_progress(self, edition_id: str) -> Optional[Progress]:
        """Reading position in a catalog edition; None if never opened.

        Args:
            edition_id: The catalog edition's id.

        Returns:
            The position, or None when the person never opened the edition (404).

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: Any failure other than 404.
            TransportError: The network failed.
        """
        path = "/me/progress/" + _segment(edition_id, "edition_id")
        return self._get(
            "GET /me/progress/{editionId}", path, P.progress, user=True, none_on_404=True
        )

    def set_progress(
        self,
        edition_id: str,
        chapter_id: str,
        locator: Locator,
        percent: Optional[float] = None,
    ) -> None:
        """Stores the reading position in a catalog edition (``PUT /me/progress/{id}``).

        Always sends ``percentUnit: "book"`` (without it the server drops the percent).

        Args:
            edition_id: The edition's id.
            chapter_id: The chapter's id.
            locator: The reader's locator (text, or an object sent as JSON text).
            percent: Position in the whole book, 0 to 100.

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            InvalidArgument: An argument is empty or out of range.
            ApiError: The server refused.
            TransportError: The network failed.
        """
        payload: dict[str, Any] = {
            "chapterId": _id_arg(chapter_id, "chapter_id"),
            "locator": _json_text(locator, "locator"),
            "percentUnit": "book",
        }
        number = _percent(percent)
        if number is not None:
            payload["percent"] = number
        path = "/me/progress/" + _segment(edition_id, "edition_id")
        self._send_no_result("PUT", "PUT /me/progress/{editionId}", path, payload)

    def get_my_book_progress(self, book_id: str) -> Optional[MyBookProgress]:
        """Reading position in an uploaded book; None if never opened.

        Args:
            book_id: The uploaded book's id.

        Returns:
            The position, or None when the person never opened the book (404).

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: Any failure other than 404.
            TransportError: The network failed.
        """
        path = f"/me/books/{_segment(book_id, 'book_id')}/progress"
        return self._get(
            "GET /me/books/{bookId}/progress",
            path,
            P.my_book_progress,
            user=True,
            none_on_404=True,
        )

    def set_my_book_progress(
        self,
        book_id: str,
        locator: Locator,
        chapter_slug: Optional[str] = None,
        percent: Optional[float] = None,
        locator_kind: Optional[str] = None,
    ) -> None:
        """Stores the reading position in an uploaded book (``PUT .../progress``).

        Always sends ``percentUnit: "book"``.

        Args:
            book_id: The uploaded book's id.
            locator: The reader's locator (text, or an object sent as JSON text).
            chapter_slug: The chapter the position is in.
            percent: Position in the whole book, 0 to 100.
            locator_kind: The kind of locator, as the reader names it.

        Raises:
            AuthorizationRequired: No usable token; nothing was sent.
            InvalidArgument: An argument is empty or out of range.
            ApiError: The server refused.
            TransportError: The network failed.
        """
        payload: dict[str, Any] = {
            "chapterSlug": _opt_text(chapter_slug, "chapter_slug"),
            "locator": _json_text(locator, "locator"),
            "percentUnit": "book",
            "locatorKind": _opt_text(locator_kind, "locator_kind"),
        }
        number = _percent(percent)
        if number is not None:
            payload["percent"] = number
        path = f"/me/books/{_segment(book_id, 'book_id')}/progress"
        self._send_no_result("PUT", "PUT /me/books/{bookId}/progress", path, payload)

    def get_chapter_review(
        self,
        chapter_slug: str,
        edition_id: Optional[str] = None,
        book_id: Optional[str] = None,
        part: Optional[Union[int, str]] = None,
    ) -> ChapterReview:
        """The review of one chapter (exactly one of edition_id or book_id).

        Args:
            chapter_slug: The chapter.
            edition_id: A catalog edition's id (or give book_id).
            book_id: An uploaded book's id (or give edition_id).
            part: Which part of the review, when the server splits it.

        Returns:
            The review as free-form JSON; ``refused`` tells a refusal apart.

        Raises:
            InvalidArgument: Neither or both ids given.
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: The server refused; ``.message`` and ``.errors`` carry its reasons.
            TransportError: The network failed.
        """
        key, value = _one_book(edition_id, book_id)
        if part is not None and (isinstance(part, bool) or not isinstance(part, (int, str))):
            raise InvalidArgument("part must be an integer or a string")
        path = "/me/chapter-review" + _query(
            ((key, value), ("chapterSlug", _id_arg(chapter_slug, "chapter_slug")), ("part", part))
        )
        return self._required(
            self._get("GET /me/chapter-review", path, P.chapter_review, user=True)
        )

    def save_chapter_review(
        self,
        chapter_slug: str,
        review: Any,
        edition_id: Optional[str] = None,
        book_id: Optional[str] = None,
    ) -> Optional[ChapterReview]:
        """Saves the review of one chapter (``PUT /me/chapter-review``).

        Args:
            chapter_slug: The chapter.
            review: The review, any JSON-serialisable value.
            edition_id: The catalog edition (or give book_id).
            book_id: The uploaded book (or give edition_id).

        Returns:
            The server's answer, or None when it sent no body.

        Raises:
            InvalidArgument: Neither or both ids given, or review is not JSON-serialisable.
            AuthorizationRequired: No usable token; nothing was sent.
            ApiError: The server refused; ``.message`` and ``.errors`` carry its reasons.
            TransportError: The network failed.
        """
        key, value = _one_book(edition_id, book_id)
        payload = {
            key: value,
            "chapterSlug": _id_arg(chapter_slug, "chapter_slug"),
            "review": review,
        }
        return self._send_json(
            "PUT", "PUT /me/chapter-review", "/me/chapter-review", payload, P.chapter_review
        )
