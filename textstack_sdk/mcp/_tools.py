"""The handlers of the 18 tools: arguments checked, then client calls mapped to results.

Each handler reads its arguments (in the .NET tool's order; the first refusal wins) and
returns a ``Job``: the upstream part, run later by the catalog inside its failure
wrapper. A handler never sends anything itself, so a refused call sends nothing.

Where the .NET tool reports a server failure as an empty list, "not opened" or "not
found", these handlers let the ``ApiError`` reach the wrapper, which answers
``<tool> failed: upstream answered <status>``. A 404 that the client returns as None
is the real "not found".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Optional

from .._errors import ApiError, ProtocolError, TextStackError
from ._args import Args, ArgumentRefused, is_dotnet_blank, utf16_len
from ._render import strip_and_cap, to_json

if TYPE_CHECKING:
    from .._api_models import ChapterSummary, Highlight, ShelfItem
    from .._client import TextStackApiClient

__all__ = ["HANDLERS", "CallCancelled", "Job", "Reply", "Upstream"]


@dataclass(frozen=True)
class Reply:
    """One tool result: a text block, and whether it is an error. Immutable."""

    text: str
    is_error: bool = False


class CallCancelled(TextStackError):
    """The caller cancelled the tool call before its next upstream request."""


class Upstream:
    """The client, handed out only while the call is not cancelled. Thread-confined.

    Every request a job makes goes through ``api``, so a cancelled call sends nothing
    more, even between the two requests of a two-step tool.
    """

    def __init__(self, client: TextStackApiClient, cancel: threading.Event) -> None:
        self._client = client
        self._cancel = cancel

    @property
    def api(self) -> TextStackApiClient:
        if self._cancel.is_set():
            raise CallCancelled("the tool call was cancelled")
        return self._client


Job = Callable[[Upstream], Reply]
Handler = Callable[[Args], Job]


def ok(value: Any) -> Reply:
    return Reply(to_json(value))


def error(text: str) -> Reply:
    return Reply(text, is_error=True)


def _blank(text: str) -> bool:
    """A path value the client refuses to send; no book or chapter has such a slug."""
    return not text.strip()


def _refused(exc: ApiError) -> bool:
    """A 4xx refusal (the .NET tool's own failure texts apply), not a server failure."""
    return 400 <= exc.status < 500 and not isinstance(exc, ProtocolError)


def _chapters(items: Sequence[ChapterSummary]) -> list[dict[str, Any]]:
    return [
        {
            "chapterId": c.id,
            "chapterNumber": c.chapter_number,
            "slug": c.slug,
            "title": c.title,
            "wordCount": c.word_count,
        }
        for c in items
    ]


def _highlight(h: Highlight, chapter_id: Optional[str]) -> dict[str, Any]:
    return {
        "id": h.id,
        "chapterId": chapter_id,
        "color": h.color,
        "selectedText": h.selected_text,
        "noteText": h.note_text,
        "createdAt": h.created_at,
    }


def _anchor(chapter_id: str, selected_text: str) -> str:
    # No DOM in an MCP client: a text-quote anchor the reader re-finds by ``exact``.
    return json.dumps(
        {
            "prefix": "",
            "exact": selected_text,
            "suffix": "",
            "startOffset": 0,
            "endOffset": utf16_len(selected_text),
            "chapterId": chapter_id,
            "source": "mcp",
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


# ------------------------------------------------------------------ public catalog


def search_books(a: Args) -> Job:
    query = a.required_string("query", 2, 200)
    limit = a.optional_int("limit", 1, 50)

    def run(up: Upstream) -> Reply:
        page = up.api.search_books(query, limit)
        results = [
            {
                "title": hit.edition.title,
                "author": hit.edition.authors or "",
                "chapterTitle": hit.chapter_title or "",
                "editionSlug": hit.edition.slug,
                "snippet": hit.highlights[0] if hit.highlights else "",
            }
            for hit in page.items
        ]
        return ok({"results": results})

    return run


def get_book(a: Args) -> Job:
    slug = a.required_string("slug", 1, 300)

    def run(up: Upstream) -> Reply:
        book = None if _blank(slug) else up.api.get_book(slug)
        if book is None:
            return error(f"get_book: no book found for slug '{slug}'")
        return ok(
            {
                "editionId": book.id,
                "title": book.title,
                "slug": book.slug,
                "language": book.language,
                "description": book.description or "",
                "authors": [x.name for x in book.authors],
                "genres": [x.name for x in book.genres],
                "chapters": _chapters(book.chapters),
            }
        )

    return run


def get_chapter(a: Args) -> Job:
    slug = a.required_string("slug", 1, 300)
    chapter_slug = a.required_string("chapterSlug", 1, 300)

    def run(up: Upstream) -> Reply:
        blank = _blank(slug) or _blank(chapter_slug)
        chapter = None if blank else up.api.get_chapter(slug, chapter_slug)
        if chapter is None:
            return error(f"get_chapter: no chapter '{chapter_slug}' in book '{slug}'")
        text, truncated = strip_and_cap(chapter.html)
        return ok(
            {
                "chapterNumber": chapter.chapter_number,
                "slug": chapter.slug,
                "title": chapter.title,
                "prevSlug": chapter.prev.slug if chapter.prev else None,
                "nextSlug": chapter.next.slug if chapter.next else None,
                "truncated": truncated,
                "text": text,
            }
        )

    return run


# ------------------------------------------------------------------ uploaded books


def search_my_library(a: Args) -> Job:
    query = a.required_string("query", 2, 200)
    tags = a.optional_string("tags", 200)

    def run(up: Upstream) -> Reply:
        try:
            hits = up.api.search_my_library(query, None if is_dotnet_blank(tags) else tags)
        except ProtocolError:
            raise
        except ApiError:
            return error("search_my_library failed: the library search is unavailable")
        results = [
            {
                "source": "userbook",
                "bookId": h.id,
                "title": h.title,
                "author": h.author or "",
                "language": h.language,
                "chapterSlug": h.chapter_slug,
                "excerpt": h.excerpt or "",
            }
            for h in hits
        ]
        return ok({"results": results})

    return run


def get_my_book(a: Args) -> Job:
    book_id = a.required_uuid("bookId")

    def run(up: Upstream) -> Reply:
        book = up.api.get_my_book(book_id)
        if book is None:
            return error(f"get_my_book: no uploaded book found with id '{book_id}'")
        return ok(
            {
                "source": "userbook",
                "bookId": book.id,
                "title": book.title,
                "slug": book.slug,
                "language": book.language,
                "author": book.author or "",
                "description": book.description or "",
                "genre": book.genre,
                "publishedYear": book.published_year,
                "totalWordCount": book.total_word_count,
                "status": book.status,
                "rendersAsOriginalPdf": book.has_original_pdf,
                "chapters": _chapters(book.chapters),
            }
        )

    return run


def get_my_chapter(a: Args) -> Job:
    book_id = a.required_uuid("bookId")
    chapter_slug = a.required_string("chapterSlug", 1, 300)

    def run(up: Upstream) -> Reply:
        blank = _blank(chapter_slug)
        chapter = None if blank else up.api.get_my_chapter(book_id, chapter_slug)
        if chapter is None:
            return error(
                f"get_my_chapter: no chapter '{chapter_slug}' in uploaded book '{book_id}'"
            )
        text, truncated = strip_and_cap(chapter.html)
        return ok(
            {
                "source": "userbook",
                "bookId": book_id,
                "chapterId": chapter.id,
                "chapterNumber": chapter.chapter_number,
                "slug": chapter.slug,
                "title": chapter.title,
                "prevSlug": chapter.previous.slug if chapter.previous else None,
                "nextSlug": chapter.next.slug if chapter.next else None,
                "truncated": truncated,
                "text": text,
            }
        )

    return run


# ------------------------------------------------------------------ highlights, vocabulary


def list_my_highlights(a: Args) -> Job:
    edition_id = a.required_uuid("editionId")

    def run(up: Upstream) -> Reply:
        found = up.api.list_my_highlights(edition_id)
        if found is None:
            # The .NET tool shows an empty list here; a 404 is not "no highlights".
            return error("list_my_highlights failed: upstream answered 404")
        return ok({"highlights": [_highlight(h, h.chapter_id) for h in found]})

    return run


def list_my_vocabulary(a: Args) -> Job:
    stage = a.optional_int("stage", 0, 4)
    search = a.optional_string("search", 100)
    limit = a.optional_int("limit", 1, 100)
    offset = a.optional_int("offset", 0, 2**31 - 1)

    def run(up: Upstream) -> Reply:
        page = up.api.list_my_vocabulary(stage, search or None, limit, offset)
        items = [
            {
                "word": w.word,
                "language": w.language,
                "translation": w.translation,
                "definition": w.definition,
                "stage": w.stage,
                "bookTitle": w.book_title,
                "nextReviewAt": w.next_review_at,
            }
            for w in page.items
        ]
        return ok({"total": page.total, "items": items})

    return run


def _save_highlight(a: Args, book_arg: str, *, upload: bool) -> Job:
    """``save_highlight`` (a catalog edition) and ``save_my_highlight`` (an upload)."""
    book_id = a.required_uuid(book_arg)
    chapter_id = a.required_uuid("chapterId")
    selected = a.required_string("selectedText", 1, 5000)
    note = a.optional_string("noteText", 2000)
    color = a.color()
    tool = "save_my_highlight" if upload else "save_highlight"

    def run(up: Upstream) -> Reply:
        save = up.api.save_my_highlight if upload else up.api.save_highlight
        try:
            saved = save(book_id, chapter_id, selected, color, note, _anchor(chapter_id, selected))
        except ApiError as exc:
            if not _refused(exc):
                raise
            return error(
                f"{tool} failed: the book or chapter was not found, or the save was rejected"
            )
        if saved is None:
            # An empty 2xx: saved, but the server sent nothing to echo (no id, no time).
            shown: dict[str, Any] = {
                "id": None,
                "chapterId": chapter_id,
                "color": color,
                "selectedText": selected,
                "noteText": note,
                "createdAt": None,
            }
        else:
            # An upload's highlight names its chapter in userChapterId; show the input then.
            shown = _highlight(saved, saved.chapter_id or (chapter_id if upload else None))
        if upload:
            shown = {"id": shown.pop("id"), "source": "userbook", "bookId": book_id, **shown}
        return ok({**shown, "saved": True})

    return run


def save_highlight(a: Args) -> Job:
    return _save_highlight(a, "editionId", upload=False)


def save_my_highlight(a: Args) -> Job:
    return _save_highlight(a, "bookId", upload=True)


def list_my_book_highlights(a: Args) -> Job:
    book_id = a.required_uuid("bookId")

    def run(up: Upstream) -> Reply:
        found = up.api.list_my_book_highlights(book_id)
        if found is None:
            return error(f"list_my_book_highlights: no uploaded book found with id '{book_id}'")
        highlights = [_highlight(h, h.user_chapter_id or h.chapter_id) for h in found]
        return ok({"source": "userbook", "bookId": book_id, "highlights": highlights})

    return run


# ------------------------------------------------------------------ insights


def save_insight(a: Args) -> Job:
    edition_id, book_id = a.one_book()
    text = a.required_string("text", 1, 20000)
    chapter_slug = a.optional_string("chapterSlug", 300)
    question = a.optional_string("question", 1000)

    def run(up: Upstream) -> Reply:
        try:
            saved = up.api.save_insight(text, edition_id, book_id, chapter_slug, question)
        except ApiError as exc:
            if not _refused(exc):
                raise
            return error(
                "save_insight failed: the book was not found, that chapter slug does not "
                "exist in it, or the chapter has a structured review (replace that with "
                "save_chapter_review)"
            )
        body: dict[str, Any]
        if saved is None:
            body = {
                "id": None,
                "editionId": edition_id,
                "bookId": book_id,
                "chapterSlug": chapter_slug,
                "question": question,
                "updatedAt": None,
            }
        else:
            body = {
                "id": saved.id,
                "editionId": saved.edition_id,
                "bookId": saved.user_book_id,
                "chapterSlug": saved.chapter_slug,
                "question": saved.question,
                "updatedAt": saved.updated_at,
            }
        return ok({**body, "saved": True})

    return run


def get_my_insights(a: Args) -> Job:
    edition_id, book_id = a.one_book()

    def run(up: Upstream) -> Reply:
        found = up.api.get_my_insights(edition_id, book_id)
        if found is None:
            if book_id is not None:
                return error(f"get_my_insights: no uploaded book found with id '{book_id}'")
            return error(f"get_my_insights: no catalog book found with editionId '{edition_id}'")
        insights = [
            {
                "id": i.id,
                "chapterSlug": i.chapter_slug,
                "chapterNumber": i.chapter_number,
                "chapterTitle": i.chapter_title,
                "question": i.question,
                "text": i.text,
                "updatedAt": i.updated_at,
            }
            for i in found
        ]
        return ok({"insights": insights})

    return run


# ------------------------------------------------------------------ reading position


def _shelf_item(item: ShelfItem) -> dict[str, Any]:
    return {
        "source": item.type,
        "bookId": item.id if item.type == "userbook" else None,
        "editionId": item.id if item.type == "savedbook" else None,
        "slug": item.slug,
        "title": item.title,
        "author": item.author or "",
        "progressPercent": item.progress_percent,
        "chapterSlug": item.chapter_slug,
        "lastOpenedAt": item.last_opened_at,
    }


def get_my_reading(a: Args) -> Job:
    del a  # takes no arguments; Args already refused any

    def run(up: Upstream) -> Reply:
        try:
            shelves = up.api.get_shelves()
        except ProtocolError:
            raise
        except ApiError:
            return error("get_my_reading failed: the shelf is unavailable")
        # The .NET tool drops a failed /me/books silently; here it fails the call.
        books = up.api.list_my_books()
        all_books = [
            {
                "source": "userbook",
                "bookId": b.id,
                "title": b.title,
                "author": b.author or "",
                "status": b.status,
                "chapterCount": b.chapter_count,
                "progressPercent": b.progress_percent,
                "chapterSlug": b.progress_chapter_slug,
                "finishedAt": b.completed_at,
            }
            for b in books
        ]
        return ok(
            {
                "reading": [_shelf_item(i) for i in shelves.continue_reading],
                "finishedRecently": [_shelf_item(i) for i in shelves.finished_this_month],
                "allBooks": all_books,
            }
        )

    return run


def get_book_progress(a: Args) -> Job:
    edition_id, book_id = a.one_book()

    def run(up: Upstream) -> Reply:
        if book_id is not None:
            mine = up.api.get_my_book_progress(book_id)
            if mine is None:
                return ok({"source": "userbook", "bookId": book_id, "opened": False})
            return ok(
                {
                    "source": "userbook",
                    "bookId": book_id,
                    "opened": True,
                    "chapterSlug": mine.chapter_slug,
                    "progressPercent": mine.percent,
                    "lastReadAt": mine.updated_at,
                }
            )
        assert edition_id is not None
        progress = up.api.get_progress(edition_id)
        if progress is None:
            return ok({"source": "edition", "editionId": edition_id, "opened": False})
        return ok(
            {
                "source": "edition",
                "editionId": edition_id,
                "opened": True,
                "chapterSlug": progress.chapter_slug,
                "progressPercent": progress.percent,
                "lastReadAt": progress.updated_at,
                "finishedAt": progress.completed_at,
            }
        )

    return run


def after_finishing(index: int, total: int) -> tuple[int, float, bool]:
    """Where the reader resumes after finishing chapter ``index`` of ``total``.

    Returns:
        ``(resume index, fraction of the book done, whether the book is finished)``:
        the start of the next chapter, or the last chapter again once it is done.
        The fraction (0..1) is what the .NET tool sends with ``percentUnit: "book"``,
        the server's one stored unit ("fraction of the whole book"); upstream's tests
        pin 0.5 and 1. The client's own 0..100 bound lets it through unchanged.
    """
    done = index + 1
    finished = done >= total
    return (index if finished else done), (done / total if total > 0 else 0.0), finished


def _index_of(chapters: Sequence[ChapterSummary], slug: str) -> int:
    return next((i for i, c in enumerate(chapters) if c.slug == slug), -1)


def set_book_progress(a: Args) -> Job:
    chapter_slug = a.required_string("chapterSlug", 1, 300)
    book_id = a.optional_uuid("bookId")
    slug = a.optional_string("slug", 300)
    if (book_id is None) == (slug is None):
        raise ArgumentRefused(
            "Pass either 'bookId' (an uploaded book) or 'slug' (a catalog book), not both."
        )

    def upload(up: Upstream, book_id: str) -> Reply:
        book = up.api.get_my_book(book_id)
        if book is None:
            return error(f"set_book_progress failed: no uploaded book '{book_id}'")
        at = _index_of(book.chapters, chapter_slug)
        if at < 0:
            return error(f"set_book_progress failed: no chapter '{chapter_slug}' in '{book.title}'")
        resume, percent, finished = after_finishing(at, len(book.chapters))
        resume_slug = book.chapters[resume].slug
        try:
            up.api.set_my_book_progress(
                book_id,
                f"scroll:{resume_slug}:0",
                chapter_slug=resume_slug,
                percent=percent,
                locator_kind="scroll",
            )
        except ApiError as exc:
            if not _refused(exc):
                raise
            return error(
                "set_book_progress failed: the position was refused. The book's stored "
                "position may be in a coordinate space this write cannot replace."
            )
        return ok(
            {
                "bookId": book_id,
                "finishedChapterSlug": chapter_slug,
                "resumeChapterSlug": resume_slug,
                "progressPercent": percent,
                "bookFinished": finished,
                "saved": True,
            }
        )

    def catalog(up: Upstream, slug: str) -> Reply:
        edition = None if _blank(slug) else up.api.get_book(slug)
        if edition is None:
            return error(f"set_book_progress failed: no catalog book '{slug}'")
        at = _index_of(edition.chapters, chapter_slug)
        if at < 0:
            return error(f"set_book_progress failed: no chapter '{chapter_slug}' in '{slug}'")
        resume, percent, finished = after_finishing(at, len(edition.chapters))
        target = edition.chapters[resume]
        # The app's own sentinels: "mark as read" writes end, the next chapter opens at start.
        locator = '{"type":"end"}' if finished else '{"type":"start"}'
        try:
            up.api.set_progress(edition.id, target.id, locator, percent)
        except ApiError as exc:
            if not _refused(exc):
                raise
            return error("set_book_progress failed: the position could not be saved")
        return ok(
            {
                "editionId": edition.id,
                "finishedChapterSlug": chapter_slug,
                "resumeChapterSlug": target.slug,
                "progressPercent": percent,
                "bookFinished": finished,
                "saved": True,
            }
        )

    if book_id is not None:
        return lambda up: upload(up, book_id)
    assert slug is not None
    return lambda up: catalog(up, slug)


# ------------------------------------------------------------------ chapter reviews


def _refusal_text(exc: ApiError) -> Optional[str]:
    """The server's refusal message and its field errors, one per line, when it sent them.

    Like .NET, only a TextStack refusal that carries a message of its own counts: one whose
    message is just its error code or the status's phrase (what the client falls back to)
    gets the status line instead.
    """
    if isinstance(exc, ProtocolError) or (exc.error is None and not exc.errors):
        return None
    if exc.message in (exc.error, _phrase(exc.status)):
        return None
    lines = [exc.message] + [f"{fe.path}: {fe.message}" for fe in exc.errors]
    return "\n".join(lines)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unexpected status"


def get_chapter_review(a: Args) -> Job:
    edition_id, book_id = a.one_book()
    chapter_slug = a.required_string("chapterSlug", 1, 300)
    part = a.optional_int("part", 1, 20)

    def run(up: Upstream) -> Reply:
        if _blank(chapter_slug):
            return error(f"get_chapter_review: no chapter '{chapter_slug}' in this book")
        try:
            review = up.api.get_chapter_review(chapter_slug, edition_id, book_id, part)
        except ApiError as exc:
            if isinstance(exc, ProtocolError):
                raise
            refusal = _refusal_text(exc)
            return error(f"get_chapter_review: {refusal or f'upstream answered {exc.status}'}")
        return ok(review.data)

    return run


def save_chapter_review(a: Args) -> Job:
    edition_id, book_id = a.one_book()
    chapter_slug = a.required_string("chapterSlug", 1, 300)
    review = a.raw("review")
    if not isinstance(review, dict):
        raise ArgumentRefused("'review' is required and must be an object.")

    def run(up: Upstream) -> Reply:
        if _blank(chapter_slug):
            return error(f"save_chapter_review refused: no chapter '{chapter_slug}' in this book")
        try:
            saved = up.api.save_chapter_review(chapter_slug, review, edition_id, book_id)
        except ApiError as exc:
            if isinstance(exc, ProtocolError):
                raise
            refusal = _refusal_text(exc)
            return error(
                f"save_chapter_review refused: {refusal or f'upstream answered {exc.status}'}"
            )
        return ok(saved.data if saved is not None else {"saved": True})

    return run


HANDLERS: dict[str, Handler] = {
    "search_books": search_books,
    "get_book": get_book,
    "get_chapter": get_chapter,
    "search_my_library": search_my_library,
    "get_my_book": get_my_book,
    "get_my_chapter": get_my_chapter,
    "list_my_highlights": list_my_highlights,
    "list_my_vocabulary": list_my_vocabulary,
    "save_highlight": save_highlight,
    "save_my_highlight": save_my_highlight,
    "list_my_book_highlights": list_my_book_highlights,
    "save_insight": save_insight,
    "get_my_insights": get_my_insights,
    "get_my_reading": get_my_reading,
    "get_book_progress": get_book_progress,
    "set_book_progress": set_book_progress,
    "get_chapter_review": get_chapter_review,
    "save_chapter_review": save_chapter_review,
}
"""Tool name -> handler, in catalog order."""
