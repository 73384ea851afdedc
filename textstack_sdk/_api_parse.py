"""Pure parsers from TextStack's camelCase JSON to the typed results of ``_api_models``.

Nothing here does I/O. Each ``kind`` function (``book``, ``highlights``...) takes a
decoded JSON value and the path that names it, and returns a frozen result; ``parse``
runs one and turns a shape problem into a ``ProtocolError`` naming the route and the
field (``items[2].edition.id``). ``decode_json`` and ``api_error`` turn raw bodies into
values or errors without ever letting a ``JSONDecodeError``, a ``UnicodeDecodeError`` or
a ``RecursionError`` escape.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any, Callable, Optional, TypeVar, Union

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
from ._errors import ApiError, FieldError, ProtocolError
from ._text import for_terminal, snippet

__all__ = [
    "ShapeError",
    "api_error",
    "ask_answer",
    "book",
    "chapter",
    "chapter_review",
    "decode_json",
    "highlight",
    "highlights",
    "insight",
    "insights",
    "library_hits",
    "my_book_detail",
    "my_book_progress",
    "my_books",
    "my_chapter",
    "parse",
    "parse_timestamp",
    "progress",
    "search_results",
    "shelves",
    "user",
    "vocabulary_page",
]

T = TypeVar("T")

_MAX_FIELD_ERRORS = 50


class ShapeError(ValueError):
    """A JSON value does not have the shape a result needs. Internal to parsing.

    Attributes:
        path: Where, e.g. ``items[2].id`` (empty for the whole body).
        problem: What is wrong, e.g. ``is missing``.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        where = f"field '{path}'" if path else "the response body"
        super().__init__(f"{where} {problem}")


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------- timestamps

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,15}))?)?)?"
    r"\s*(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)


def parse_timestamp(text: str) -> datetime:
    """Parses an ISO 8601 timestamp into a timezone-aware datetime.

    Accepts ``Z``, ``+hh:mm``/``+hhmm`` offsets and any number of fraction digits
    (.NET writes seven); a timestamp without an offset is taken as UTC.

    Raises:
        ValueError: Not an ISO 8601 date or date-time, or out of range.
    """
    match = _TIMESTAMP.fullmatch(text.strip()) if len(text) <= 64 else None
    if match is None:
        raise ValueError("not an ISO 8601 timestamp")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if zulu or not sign:
        tz = timezone.utc
    else:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
        tzinfo=tz,
    )


# ---------------------------------------------------------------- field readers


class _Obj:
    """A JSON object being read, with the path that names it in errors."""

    __slots__ = ("data", "path")

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise ShapeError(path, f"should be a JSON object, got {_kind_of(value)}")
        self.data: dict[str, Any] = value
        self.path = path

    def _bad(self, key: str, problem: str) -> ShapeError:
        return ShapeError(_join(self.path, key), problem)

    def id(self, key: str) -> str:
        """A required id (GUID string; a number is accepted and kept as a string)."""
        value = self.data.get(key)
        if value is None:
            raise self._bad(key, "is missing")
        text = self._id_text(key, value)
        if not text:
            raise self._bad(key, "is empty")
        return text

    def opt_id(self, key: str) -> Optional[str]:
        value = self.data.get(key)
        if value is None:
            return None
        return self._id_text(key, value) or None

    def _id_text(self, key: str, value: Any) -> str:
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise self._bad(key, f"should be an id string, got {_kind_of(value)}")

    def req_str(self, key: str, *, allow_empty: bool = False) -> str:
        value = self.data.get(key)
        if value is None:
            raise self._bad(key, "is missing")
        if not isinstance(value, str):
            raise self._bad(key, f"should be a string, got {_kind_of(value)}")
        if not allow_empty and not value.strip():
            raise self._bad(key, "is empty")
        return value

    def text(self, key: str) -> Optional[str]:
        value = self.data.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self._bad(key, f"should be a string, got {_kind_of(value)}")

    def integer(self, key: str) -> Optional[int]:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise self._bad(key, f"should be an integer, got {_kind_of(value)}")

    def number(self, key: str) -> Optional[float]:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # a JSON integer beyond float range
                number = math.inf
            if math.isfinite(number):
                return number
        raise self._bad(key, f"should be a finite number, got {_kind_of(value)}")

    def flag(self, key: str) -> Optional[bool]:
        value = self.data.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise self._bad(key, f"should be true or false, got {_kind_of(value)}")

    def scalar(self, key: str) -> Union[str, int, None]:
        """A value the server sends either as a name or as a number (enums, markers)."""
        value = self.data.get(key)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._bad(key, f"should be a string or an integer, got {_kind_of(value)}")

    def time(self, key: str) -> Optional[datetime]:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(key, f"should be an ISO 8601 timestamp, got {_kind_of(value)}")
        if not value.strip():
            return None
        try:
            return parse_timestamp(value)
        except (ValueError, OverflowError):
            shown = for_terminal(value, 40)
            raise self._bad(key, f"is not an ISO 8601 timestamp: {shown!r}") from None

    def many(self, key: str, item: Callable[[Any, str], T]) -> tuple[T, ...]:
        """A list field (missing or null means empty), each element read by ``item``."""
        value = self.data.get(key)
        if value is None:
            return ()
        return _items(value, _join(self.path, key), item)

    def one(self, key: str, item: Callable[[Any, str], T]) -> Optional[T]:
        value = self.data.get(key)
        if value is None:
            return None
        return item(value, _join(self.path, key))


def _items(value: Any, path: str, item: Callable[[Any, str], T]) -> tuple[T, ...]:
    if not isinstance(value, list):
        raise ShapeError(path, f"should be a JSON list, got {_kind_of(value)}")
    return tuple(item(element, f"{path}[{index}]") for index, element in enumerate(value))


def _string_item(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ShapeError(path, f"should be a string, got {_kind_of(value)}")
    return value


# ---------------------------------------------------------------- public catalog


def _edition_authors(o: _Obj) -> Optional[str]:
    value = o.data.get("authors")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        names: list[str] = []
        for index, element in enumerate(value):
            if isinstance(element, str):
                names.append(element)
            else:
                names.append(_author(element, f"{_join(o.path, 'authors')}[{index}]").name)
        return ", ".join(names)
    raise o._bad("authors", f"should be a string or a list, got {_kind_of(value)}")


def _edition(value: Any, path: str) -> EditionSummary:
    o = _Obj(value, path)
    return EditionSummary(
        id=o.id("id"),
        slug=o.text("slug"),
        title=o.text("title"),
        language=o.text("language"),
        authors=_edition_authors(o),
        cover_path=o.text("coverPath"),
    )


def _search_hit(value: Any, path: str) -> SearchHit:
    o = _Obj(value, path)
    edition = o.one("edition", _edition)
    if edition is None:
        raise o._bad("edition", "is missing")
    return SearchHit(
        chapter_id=o.id("chapterId"),
        chapter_slug=o.text("chapterSlug"),
        edition=edition,
        chapter_title=o.text("chapterTitle"),
        chapter_number=o.integer("chapterNumber"),
        highlights=o.many("highlights", _string_item),
    )


def _total(o: _Obj, count: int) -> int:
    total = o.integer("total")
    if total is None:
        return count
    if total < 0:
        raise o._bad("total", "is negative")
    return total


def search_results(value: Any, path: str = "") -> SearchResults:
    """``GET /search``: ``{total, items: [...]}``; ``items`` is required."""
    o = _Obj(value, path)
    if o.data.get("items") is None:
        raise o._bad("items", "is missing")
    items = o.many("items", _search_hit)
    return SearchResults(total=_total(o, len(items)), items=items)


def _author(value: Any, path: str) -> Author:
    if isinstance(value, str):
        return Author(name=value)
    return Author(name=_Obj(value, path).req_str("name", allow_empty=True))


def _genre(value: Any, path: str) -> Genre:
    if isinstance(value, str):
        return Genre(name=value)
    return Genre(name=_Obj(value, path).req_str("name", allow_empty=True))


def _chapter_summary(value: Any, path: str) -> ChapterSummary:
    o = _Obj(value, path)
    return ChapterSummary(
        id=o.id("id"),
        slug=o.text("slug"),
        chapter_number=o.integer("chapterNumber"),
        title=o.text("title"),
        word_count=o.integer("wordCount"),
    )


def book(value: Any, path: str = "") -> Book:
    """``GET /books/{slug}``; ``id`` and ``slug`` are required."""
    o = _Obj(value, path)
    return Book(
        id=o.id("id"),
        slug=o.req_str("slug"),
        title=o.text("title"),
        language=o.text("language"),
        description=o.text("description"),
        authors=o.many("authors", _author),
        genres=o.many("genres", _genre),
        chapters=o.many("chapters", _chapter_summary),
    )


def _chapter_link(value: Any, path: str) -> ChapterLink:
    o = _Obj(value, path)
    return ChapterLink(
        slug=o.text("slug"),
        title=o.text("title"),
        chapter_number=o.integer("chapterNumber"),
    )


def chapter(value: Any, path: str = "") -> Chapter:
    """``GET /books/{slug}/chapters/{chapterSlug}``; ``slug`` and ``html`` are required."""
    o = _Obj(value, path)
    return Chapter(
        slug=o.req_str("slug"),
        html=o.req_str("html", allow_empty=True),
        chapter_number=o.integer("chapterNumber"),
        title=o.text("title"),
        prev=o.one("prev", _chapter_link),
        next=o.one("next", _chapter_link),
    )


# ---------------------------------------------------------------- user scoped


def highlight(value: Any, path: str = "") -> Highlight:
    """One highlight; ``id`` is required."""
    o = _Obj(value, path)
    return Highlight(
        id=o.id("id"),
        chapter_id=o.opt_id("chapterId"),
        user_chapter_id=o.opt_id("userChapterId"),
        color=o.text("color"),
        selected_text=o.text("selectedText"),
        note_text=o.text("noteText"),
        created_at=o.time("createdAt"),
    )


def highlights(value: Any, path: str = "") -> tuple[Highlight, ...]:
    """A JSON list of highlights."""
    return _items(value, path, highlight)


def _vocabulary_word(value: Any, path: str) -> VocabularyWord:
    o = _Obj(value, path)
    return VocabularyWord(
        word=o.req_str("word"),
        language=o.text("language"),
        translation=o.text("translation"),
        definition=o.text("definition"),
        stage=o.scalar("stage"),
        book_title=o.text("bookTitle"),
        next_review_at=o.time("nextReviewAt"),
    )


def vocabulary_page(value: Any, path: str = "") -> VocabularyPage:
    """``GET /me/vocabulary/words``: ``{total, items}``; ``items`` is required."""
    o = _Obj(value, path)
    if o.data.get("items") is None:
        raise o._bad("items", "is missing")
    items = o.many("items", _vocabulary_word)
    return VocabularyPage(total=_total(o, len(items)), items=items)


def _citation(value: Any, path: str) -> Citation:
    o = _Obj(value, path)
    return Citation(
        marker=o.scalar("marker"),
        chapter_ord=o.integer("chapterOrd"),
        preview=o.text("preview"),
    )


def ask_answer(value: Any, path: str = "") -> AskAnswer:
    """``POST /books/{editionId}/ask``; ``answer`` is required (it may be empty)."""
    o = _Obj(value, path)
    return AskAnswer(
        answer=o.req_str("answer", allow_empty=True),
        citations=o.many("citations", _citation),
        last_read_ord=o.integer("lastReadOrd"),
        insufficient=bool(o.flag("insufficient")),
    )


def _library_hit(value: Any, path: str) -> LibraryHit:
    o = _Obj(value, path)
    return LibraryHit(
        id=o.id("id"),
        title=o.text("title"),
        author=o.text("author"),
        cover_path=o.text("coverPath"),
        language=o.text("language"),
        rank=o.number("rank"),
        excerpt=o.text("excerpt"),
        chapter_slug=o.text("chapterSlug"),
    )


def library_hits(value: Any, path: str = "") -> tuple[LibraryHit, ...]:
    """``GET /me/library/search``: a JSON list."""
    return _items(value, path, _library_hit)


def _my_book(value: Any, path: str) -> MyBook:
    o = _Obj(value, path)
    return MyBook(
        id=o.id("id"),
        title=o.text("title"),
        slug=o.text("slug"),
        author=o.text("author"),
        status=o.scalar("status"),
        chapter_count=o.integer("chapterCount"),
        progress_percent=o.number("progressPercent"),
        progress_chapter_slug=o.text("progressChapterSlug"),
        completed_at=o.time("completedAt"),
    )


def my_books(value: Any, path: str = "") -> tuple[MyBook, ...]:
    """``GET /me/books``: a JSON list."""
    return _items(value, path, _my_book)


def my_book_detail(value: Any, path: str = "") -> MyBookDetail:
    """``GET /me/books/{bookId}``; ``id`` is required."""
    o = _Obj(value, path)
    return MyBookDetail(
        id=o.id("id"),
        title=o.text("title"),
        slug=o.text("slug"),
        language=o.text("language"),
        author=o.text("author"),
        description=o.text("description"),
        genre=o.text("genre"),
        published_year=o.integer("publishedYear"),
        total_word_count=o.integer("totalWordCount"),
        status=o.scalar("status"),
        has_original_pdf=o.flag("hasOriginalPdf"),
        chapters=o.many("chapters", _chapter_summary),
    )


def my_chapter(value: Any, path: str = "") -> MyChapter:
    """``GET /me/books/{bookId}/chapters/{chapterSlug}``; ``id``, ``slug``, ``html``
    are required."""
    o = _Obj(value, path)
    return MyChapter(
        id=o.id("id"),
        slug=o.req_str("slug"),
        html=o.req_str("html", allow_empty=True),
        chapter_number=o.integer("chapterNumber"),
        title=o.text("title"),
        word_count=o.integer("wordCount"),
        previous=o.one("previous", _chapter_link),
        next=o.one("next", _chapter_link),
    )


def insight(value: Any, path: str = "") -> Insight:
    """One insight; ``id`` is required."""
    o = _Obj(value, path)
    return Insight(
        id=o.id("id"),
        text=o.text("text"),
        edition_id=o.opt_id("editionId"),
        user_book_id=o.opt_id("userBookId"),
        chapter_slug=o.text("chapterSlug"),
        chapter_number=o.integer("chapterNumber"),
        chapter_title=o.text("chapterTitle"),
        question=o.text("question"),
        source=o.scalar("source"),
        created_at=o.time("createdAt"),
        updated_at=o.time("updatedAt"),
    )


def insights(value: Any, path: str = "") -> tuple[Insight, ...]:
    """``GET /me/insights``: a JSON list."""
    return _items(value, path, insight)


def _shelf_item(value: Any, path: str) -> ShelfItem:
    o = _Obj(value, path)
    return ShelfItem(
        id=o.id("id"),
        type=o.text("type"),
        title=o.text("title"),
        author=o.text("author"),
        slug=o.text("slug"),
        progress_percent=o.number("progressPercent"),
        last_opened_at=o.time("lastOpenedAt"),
        chapter_slug=o.text("chapterSlug"),
    )


def shelves(value: Any, path: str = "") -> Shelves:
    """``GET /me/library/shelves``: three lists (a missing shelf is empty)."""
    o = _Obj(value, path)
    return Shelves(
        continue_reading=o.many("continueReading", _shelf_item),
        recently_added=o.many("recentlyAdded", _shelf_item),
        finished_this_month=o.many("finishedThisMonth", _shelf_item),
    )


def _locator(o: _Obj) -> Optional[str]:
    value = o.data.get("locator")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        # Some readers store a structured locator; keep it as the JSON text it was sent as.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    raise o._bad("locator", f"should be a string, got {_kind_of(value)}")


def progress(value: Any, path: str = "") -> Progress:
    """``GET /me/progress/{editionId}``: every field optional."""
    o = _Obj(value, path)
    return Progress(
        edition_id=o.opt_id("editionId"),
        chapter_id=o.opt_id("chapterId"),
        chapter_slug=o.text("chapterSlug"),
        locator=_locator(o),
        percent=o.number("percent"),
        updated_at=o.time("updatedAt"),
        completed_at=o.time("completedAt"),
    )


def my_book_progress(value: Any, path: str = "") -> MyBookProgress:
    """``GET /me/books/{bookId}/progress``: every field optional."""
    o = _Obj(value, path)
    return MyBookProgress(
        chapter_slug=o.text("chapterSlug"),
        locator=_locator(o),
        percent=o.number("percent"),
        updated_at=o.time("updatedAt"),
    )


def _lenient(o: _Obj, read: Callable[[str], T], key: str) -> Optional[T]:
    try:
        return read(key)
    except ShapeError:
        return None


def chapter_review(value: Any, path: str = "") -> ChapterReview:
    """``/me/chapter-review``: any JSON object, kept read-only; well-known fields and a
    refusal's ``error``/``message``/``errors`` are lifted out leniently."""
    o = _Obj(value, path)
    data = JsonObject(o.data)
    error = o.data.get("error")
    message = o.data.get("message")
    updated = _lenient(o, o.time, "reviewUpdatedAt") or _lenient(o, o.time, "updatedAt")
    return ChapterReview(
        data=data,
        review=data.get("review"),
        text=_lenient(o, o.text, "text"),
        part=_lenient(o, o.integer, "part"),
        total_parts=_lenient(o, o.integer, "totalParts"),
        edition_id=_lenient(o, o.opt_id, "editionId"),
        user_book_id=_lenient(o, o.opt_id, "userBookId"),
        chapter_slug=_lenient(o, o.text, "chapterSlug"),
        chapter_number=_lenient(o, o.integer, "chapterNumber"),
        chapter_title=_lenient(o, o.text, "chapterTitle"),
        updated_at=updated,
        error=error if isinstance(error, str) and error else None,
        message=for_terminal(message) if isinstance(message, str) else None,
        errors=field_errors(o.data.get("errors")),
    )


def user(value: Any, path: str = "") -> User:
    """The ``user`` object of the auth endpoints; ``id`` is required."""
    o = _Obj(value, path)
    return User(
        id=o.id("id"),
        email=o.text("email"),
        name=o.text("name"),
        picture=o.text("picture"),
        is_guest=o.flag("isGuest"),
        created_at=o.time("createdAt"),
        native_language=o.text("nativeLanguage"),
    )


# ---------------------------------------------------------------- bodies and errors


def parse(kind: Callable[[Any, str], T], data: Any, *, route: str = "", status: int = 200) -> T:
    """Runs one kind parser over decoded JSON.

    Raises:
        ProtocolError: The value has the wrong shape; the message names the field.
    """
    try:
        return kind(data, "")
    except ShapeError as exc:
        raise ProtocolError(status, str(exc), route=route) from exc
    except RecursionError as exc:
        # Free-form answers (chapter review) are frozen recursively.
        raise ProtocolError(status, "the response is nested too deeply", route=route) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads() with options would build a decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(
    body: bytes, *, route: str = "", status: int = 200, content_type: Optional[str] = None
) -> Any:
    """Decodes a UTF-8 JSON body (a leading BOM tolerated; NaN/Infinity refused).

    Raises:
        ProtocolError: The body is empty, not UTF-8, not JSON (an HTML page from a
            proxy), or nested deeper than the parser can go. The message carries a
            short sanitised snippet, never the raw body.
    """
    if not body.strip():
        raise ProtocolError(status, "expected a JSON body, got an empty body", route=route)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            status, "expected a JSON body, got bytes that are not UTF-8", route=route
        ) from exc
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        what = f" ({for_terminal(content_type, 60)})" if content_type else ""
        raise ProtocolError(
            status, f"expected a JSON body, got{what}: {snippet(text)}", route=route
        ) from exc


def field_errors(value: Any) -> tuple[FieldError, ...]:
    """Field-level refusals from ``errors``: TextStack's ``[{path, code, message}]``
    list or ASP.NET's ProblemDetails ``{field: [messages]}`` map. Never raises."""
    found: list[FieldError] = []
    if isinstance(value, list):
        for element in value[:_MAX_FIELD_ERRORS]:
            if isinstance(element, dict):
                found.append(
                    FieldError(
                        _clean(element.get("path")),
                        _clean(element.get("code")),
                        _clean(element.get("message")),
                    )
                )
            elif isinstance(element, str):
                found.append(FieldError("", "", for_terminal(element)))
    elif isinstance(value, dict):
        for key, messages in list(value.items())[:_MAX_FIELD_ERRORS]:
            texts = messages if isinstance(messages, list) else [messages]
            for text in texts[:_MAX_FIELD_ERRORS]:
                if isinstance(text, str):
                    found.append(FieldError(for_terminal(str(key), 200), "", for_terminal(text)))
    return tuple(found[:_MAX_FIELD_ERRORS])


def _clean(value: Any) -> str:
    return for_terminal(value, 500) if isinstance(value, str) else ""


def _text(data: Mapping[str, Any], key: str) -> Optional[str]:
    value = data.get(key)
    if isinstance(value, str) and value.strip():
        return for_terminal(value)
    return None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unexpected status"


def api_error(status: int, headers: Mapping[str, str], body: bytes, *, route: str = "") -> ApiError:
    """Builds the ApiError for a non-2xx answer. Never raises.

    The message is the server's JSON ``message``, ``detail``, ``title`` or ``error``
    (TextStack and ASP.NET ProblemDetails shapes), else a sanitised snippet of the body
    (an HTML page from a proxy), else the status's reason phrase.
    """
    if 300 <= status < 400:
        location = headers.get("location")
        where = f" to {for_terminal(location, 200)}" if location else ""
        return ApiError(status, f"unexpected redirect{where}", route=route)
    data: Any = None
    stripped = body.lstrip()
    if stripped[:1] in (b"{", b'"', b"\xef"):
        try:
            data = json.loads(body.decode("utf-8-sig"))
        except (ValueError, RecursionError):
            data = None
    if isinstance(data, str) and data.strip():
        # ASP.NET's Results.BadRequest("...") answers a bare JSON string.
        return ApiError(status, for_terminal(data, 500), route=route)
    if isinstance(data, dict):
        code = _text(data, "error")
        message = (
            _text(data, "message")
            or _text(data, "detail")
            or _text(data, "title")
            or _text(data, "error_description")
            or code
            or _reason(status)
        )
        return ApiError(
            status,
            message,
            route=route,
            error=code if code and len(code) <= 100 else None,
            errors=field_errors(data.get("errors")),
        )
    message = snippet(body) if stripped else _reason(status)
    return ApiError(status, message, route=route)
