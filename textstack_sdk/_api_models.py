"""Typed, immutable results of the TextStack API (one dataclass per response shape).

Every class here is a frozen dataclass with snake_case fields; lists are tuples and
timestamps are timezone-aware ``datetime`` values, so results are safe to share between
threads and to cache. Ids are GUID strings, kept as ``str``. Fields the server may omit
are ``Optional`` and default to None. The JSON parsers live in ``_api_parse``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, Union

from ._errors import FieldError

__all__ = [
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
]


class JsonObject(Mapping[str, Any]):
    """A read-only JSON object: nested objects are JsonObjects, arrays are tuples.

    Immutable, so safe to share between threads. ``to_dict()`` (and ``copy.deepcopy``,
    hence ``dataclasses.asdict``) gives back plain, mutable ``dict``/``list`` values.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data: dict[str, Any] = {str(k): _freeze(v) for k, v in data.items()}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"JsonObject({self.to_dict()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JsonObject):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """Returns a mutable deep copy made of plain dicts and lists."""
        return {k: _thaw(v) for k, v in self._data.items()}

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return self.to_dict()

    def __copy__(self) -> JsonObject:
        return self


def _freeze(value: Any) -> Any:
    if isinstance(value, JsonObject):
        return value
    if isinstance(value, Mapping):
        return JsonObject(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, JsonObject):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


# ---------------------------------------------------------------- public catalog


@dataclass(frozen=True)
class EditionSummary:
    """The edition a search hit belongs to. Immutable; thread-safe.

    ``authors`` is the server's display string (a list from the server is joined
    with ", ").
    """

    id: str
    slug: Optional[str] = None
    title: Optional[str] = None
    language: Optional[str] = None
    authors: Optional[str] = None
    cover_path: Optional[str] = None


@dataclass(frozen=True)
class SearchHit:
    """One chapter matching a catalog search. Immutable; thread-safe."""

    chapter_id: str
    chapter_slug: Optional[str]  # the server allows chapters without a slug
    edition: EditionSummary
    chapter_title: Optional[str] = None
    chapter_number: Optional[int] = None
    highlights: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchResults:
    """A page of catalog search hits (``GET /search``). Immutable; thread-safe."""

    total: int
    items: tuple[SearchHit, ...] = ()


@dataclass(frozen=True)
class Author:
    """A book's author. Immutable; thread-safe."""

    name: str


@dataclass(frozen=True)
class Genre:
    """A book's genre. Immutable; thread-safe."""

    name: str


@dataclass(frozen=True)
class ChapterSummary:
    """A chapter in a book's table of contents. Immutable; thread-safe."""

    id: str
    slug: Optional[str]  # the server allows chapters without a slug
    chapter_number: Optional[int] = None
    title: Optional[str] = None
    word_count: Optional[int] = None


@dataclass(frozen=True)
class Book:
    """A catalog edition (``GET /books/{slug}``). Immutable; thread-safe."""

    id: str
    slug: str
    title: Optional[str] = None
    language: Optional[str] = None
    description: Optional[str] = None
    authors: tuple[Author, ...] = ()
    genres: tuple[Genre, ...] = ()
    chapters: tuple[ChapterSummary, ...] = ()


@dataclass(frozen=True)
class ChapterLink:
    """A link to the previous or next chapter. Immutable; thread-safe.

    ``chapter_number`` is only given by the user-book routes.
    """

    slug: Optional[str]
    title: Optional[str] = None
    chapter_number: Optional[int] = None


@dataclass(frozen=True)
class Chapter:
    """A catalog chapter with its HTML (``GET /books/{slug}/chapters/{chapterSlug}``).

    Immutable; thread-safe.
    """

    slug: str
    html: str
    chapter_number: Optional[int] = None
    title: Optional[str] = None
    prev: Optional[ChapterLink] = None
    next: Optional[ChapterLink] = None


# ---------------------------------------------------------------- user scoped


@dataclass(frozen=True)
class Highlight:
    """A saved highlight (catalog or own upload). Immutable; thread-safe."""

    id: str
    chapter_id: Optional[str] = None
    user_chapter_id: Optional[str] = None
    color: Optional[str] = None
    selected_text: Optional[str] = None
    note_text: Optional[str] = None
    created_at: Optional[datetime] = None


@dataclass(frozen=True)
class VocabularyWord:
    """One word of the person's vocabulary. Immutable; thread-safe.

    ``stage`` is kept as the server sent it (a name or a number).
    """

    word: str
    language: Optional[str] = None
    translation: Optional[str] = None
    definition: Optional[str] = None
    stage: Union[str, int, None] = None
    book_title: Optional[str] = None
    next_review_at: Optional[datetime] = None


@dataclass(frozen=True)
class VocabularyPage:
    """A page of vocabulary words (``GET /me/vocabulary/words``). Immutable; thread-safe."""

    total: int
    items: tuple[VocabularyWord, ...] = ()


@dataclass(frozen=True)
class Citation:
    """A chapter cited by an answer. Immutable; thread-safe."""

    marker: Union[str, int, None] = None
    chapter_ord: Optional[int] = None
    preview: Optional[str] = None


@dataclass(frozen=True)
class AskAnswer:
    """The answer to a question about a book (``POST /books/{editionId}/ask``).

    Immutable; thread-safe. ``insufficient`` is True when the book (up to
    ``last_read_ord``) did not hold enough to answer.
    """

    answer: str
    citations: tuple[Citation, ...] = ()
    last_read_ord: Optional[int] = None
    insufficient: bool = False


@dataclass(frozen=True)
class LibraryHit:
    """A match in the person's own library (``GET /me/library/search``).

    Immutable; thread-safe.
    """

    id: str
    title: Optional[str] = None
    author: Optional[str] = None
    cover_path: Optional[str] = None
    language: Optional[str] = None
    rank: Optional[float] = None
    excerpt: Optional[str] = None
    chapter_slug: Optional[str] = None


@dataclass(frozen=True)
class MyBook:
    """A book the person uploaded (``GET /me/books``). Immutable; thread-safe."""

    id: str
    title: Optional[str] = None
    slug: Optional[str] = None
    author: Optional[str] = None
    status: Union[str, int, None] = None
    chapter_count: Optional[int] = None
    progress_percent: Optional[float] = None
    progress_chapter_slug: Optional[str] = None
    completed_at: Optional[datetime] = None


@dataclass(frozen=True)
class MyBookDetail:
    """One uploaded book with its chapters (``GET /me/books/{bookId}``).

    Immutable; thread-safe.
    """

    id: str
    title: Optional[str] = None
    slug: Optional[str] = None
    language: Optional[str] = None
    author: Optional[str] = None
    description: Optional[str] = None
    genre: Optional[str] = None
    published_year: Optional[int] = None
    total_word_count: Optional[int] = None
    status: Union[str, int, None] = None
    has_original_pdf: Optional[bool] = None
    chapters: tuple[ChapterSummary, ...] = ()


@dataclass(frozen=True)
class MyChapter:
    """A chapter of an uploaded book (``GET /me/books/{bookId}/chapters/{chapterSlug}``).

    Immutable; thread-safe. Note the server's ``previous`` (not ``prev``).
    """

    id: str
    slug: str
    html: str
    chapter_number: Optional[int] = None
    title: Optional[str] = None
    word_count: Optional[int] = None
    previous: Optional[ChapterLink] = None
    next: Optional[ChapterLink] = None


@dataclass(frozen=True)
class Insight:
    """A saved insight about a book or chapter (``/me/insights``). Immutable; thread-safe.

    ``chapter_slug`` None means the insight is about the whole book.
    """

    id: str
    text: Optional[str] = None
    edition_id: Optional[str] = None
    user_book_id: Optional[str] = None
    chapter_slug: Optional[str] = None
    chapter_number: Optional[int] = None
    chapter_title: Optional[str] = None
    question: Optional[str] = None
    source: Union[str, int, None] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None


@dataclass(frozen=True)
class ShelfItem:
    """A book on one of the library shelves. Immutable; thread-safe.

    ``type`` is ``"userbook"`` (own upload) or ``"savedbook"`` (catalog edition).
    """

    id: str
    type: Optional[str] = None
    title: Optional[str] = None
    author: Optional[str] = None
    slug: Optional[str] = None
    progress_percent: Optional[float] = None
    last_opened_at: Optional[datetime] = None
    chapter_slug: Optional[str] = None


@dataclass(frozen=True)
class Shelves:
    """The person's library shelves (``GET /me/library/shelves``). Immutable; thread-safe."""

    continue_reading: tuple[ShelfItem, ...] = ()
    recently_added: tuple[ShelfItem, ...] = ()
    finished_this_month: tuple[ShelfItem, ...] = ()


@dataclass(frozen=True)
class Progress:
    """Reading position in a catalog edition (``GET /me/progress/{editionId}``).

    Immutable; thread-safe.
    """

    edition_id: Optional[str] = None
    chapter_id: Optional[str] = None
    chapter_slug: Optional[str] = None
    locator: Optional[str] = None
    percent: Optional[float] = None
    updated_at: Optional[datetime] = None
    completed_at: Optional[datetime] = None


@dataclass(frozen=True)
class MyBookProgress:
    """Reading position in an uploaded book (``GET /me/books/{bookId}/progress``).

    Immutable; thread-safe.
    """

    chapter_slug: Optional[str] = None
    locator: Optional[str] = None
    percent: Optional[float] = None
    updated_at: Optional[datetime] = None


@dataclass(frozen=True, eq=False)
class ChapterReview:
    """A chapter review (``/me/chapter-review``): free-form JSON. Immutable; thread-safe.

    The wire contract leaves the shape open, so ``data`` keeps the whole answer and the
    well-known fields below are read leniently: a field of an unexpected type is None.

    Attributes:
        data: The whole JSON answer, read-only (``data.to_dict()`` for a mutable copy).
        review: The saved review (text, or read-only JSON), None when there is none.
        text: The chapter text of this part, when the server sends it.
        part: Which part of the chapter this is (1-based), when given.
        total_parts: How many parts the chapter has, when given.
        edition_id: The catalog edition, for a catalog chapter.
        user_book_id: The uploaded book, for an upload's chapter.
        chapter_slug: The chapter.
        chapter_number: The chapter's number.
        chapter_title: The chapter's title.
        updated_at: When the review was last saved (``reviewUpdatedAt``/``updatedAt``).
        error: The server's refusal code when the answer is a refusal, else None.
        message: The server's refusal message, when it gave one.
        errors: Field-level refusals, when the server gave them.
    """

    data: JsonObject
    review: Any = None
    text: Optional[str] = None
    part: Optional[int] = None
    total_parts: Optional[int] = None
    edition_id: Optional[str] = None
    user_book_id: Optional[str] = None
    chapter_slug: Optional[str] = None
    chapter_number: Optional[int] = None
    chapter_title: Optional[str] = None
    updated_at: Optional[datetime] = None
    error: Optional[str] = None
    message: Optional[str] = None
    errors: tuple[FieldError, ...] = ()

    @property
    def refused(self) -> bool:
        """True when the server answered with a refusal instead of a review."""
        return self.error is not None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Returns ``data[key]``, or default when absent."""
        return self.data.get(key, default)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChapterReview):
            return NotImplemented
        return (self.data, self.error, self.message, self.errors) == (
            other.data,
            other.error,
            other.message,
            other.errors,
        )  # every other field is derived from data

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class User:
    """The signed-in person, as the auth endpoints describe them. Immutable; thread-safe."""

    id: str
    email: Optional[str] = None
    name: Optional[str] = None
    picture: Optional[str] = None
    is_guest: Optional[bool] = None
    created_at: Optional[datetime] = None
    native_language: Optional[str] = None
