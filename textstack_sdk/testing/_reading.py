"""The reader's own notes on a book: insights, reading progress and chapter reviews.

Handlers over the Library's state, with the same conventions (a Call and the wall
time in, a Reply out or a Problem raised).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional

from ._library import Book, Library, public
from ._library_data import Chapter, Edition, UserBook
from ._reply import (
    Call,
    FieldProblem,
    Reply,
    int_arg,
    iso,
    json_object,
    json_reply,
    not_found,
    optional_text,
    require_text,
    validation,
)

__all__ = ["Reading"]

_WORDS_PER_PART = 40
_MAX_REVIEW = 10_000


class Reading:
    """Insights, progress and reviews. Not thread-safe: the server calls it under its lock."""

    def __init__(self, library: Library) -> None:
        self._lib = library

    # -- insights ----------------------------------------------------------------------

    def list_insights(self, call: Call, now: float) -> Reply:
        book = self._lib.target(
            call.arg("editionId"), call.arg("userBookId"), names=("editionId", "userBookId")
        )
        key = "editionId" if isinstance(book, Edition) else "userBookId"
        return json_reply([i for i in self._lib.insights if i[key] == book.id])

    def save_insight(self, call: Call, now: float) -> Reply:
        body = json_object(call.body)
        book = self._lib.target(
            body.get("editionId"), body.get("userBookId"), names=("editionId", "userBookId")
        )
        slug = optional_text(body, "chapterSlug", max_length=200) or None
        chapter = book.chapter(slug) if slug else None
        if slug and chapter is None:
            raise validation(
                FieldProblem("chapterSlug", "not_found", "'chapterSlug' is not in this book.")
            )
        text = require_text(body, "text", max_length=20_000)
        question = optional_text(body, "question", max_length=2000)
        key = "editionId" if isinstance(book, Edition) else "userBookId"
        for record in self._lib.insights:
            if record[key] == book.id and record["chapterSlug"] == slug:
                record.update(text=text, question=question, updatedAt=iso(now))
                return json_reply(record, 200)
        record = {
            "id": str(uuid.uuid4()),
            "editionId": book.id if key == "editionId" else None,
            "userBookId": book.id if key == "userBookId" else None,
            "chapterSlug": slug,
            "chapterNumber": chapter.number if chapter else None,
            "chapterTitle": chapter.title if chapter else None,
            "text": text,
            "question": question,
            "source": "mcp",
            "createdAt": iso(now),
            "updatedAt": iso(now),
        }
        self._lib.insights.append(record)
        return json_reply(record, 201)

    # -- progress ----------------------------------------------------------------------

    @staticmethod
    def _percent(body: dict[str, Any], previous: Optional[dict[str, Any]]) -> Optional[float]:
        """The percent to store: without ``percentUnit: "book"`` the server drops it."""
        keep = previous["percent"] if previous else None
        value = body.get("percent")
        if value is None:
            return keep
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise validation(FieldProblem("percent", "range", "'percent' must be 0 to 100."))
        if body.get("percentUnit") != "book":
            return keep
        return float(value)

    def get_progress(self, call: Call, now: float) -> Reply:
        edition = self._lib.edition(call.params["editionId"])
        progress = self._lib.edition_progress.get(edition.id)
        if progress is None:
            raise not_found("Progress")
        return json_reply(public(progress))

    def put_progress(self, call: Call, now: float) -> Reply:
        edition = self._lib.edition(call.params["editionId"])
        body = json_object(call.body)
        chapter_id = body.get("chapterId")
        chapter = edition.chapter_by_id(chapter_id) if isinstance(chapter_id, str) else None
        if chapter is None:
            raise validation(
                FieldProblem("chapterId", "not_found", "'chapterId' is not in this edition.")
            )
        locator = require_text(body, "locator", max_length=2000)
        previous = self._lib.edition_progress.get(edition.id)
        percent = self._percent(body, previous)
        self._lib.edition_progress[edition.id] = {
            "editionId": edition.id,
            "chapterId": chapter.id,
            "chapterSlug": chapter.slug,
            "locator": locator,
            "percent": percent,
            "updatedAt": iso(now),
            "completedAt": self._completed(percent, previous, now),
            "_at": now,
        }
        return Reply(204)

    def get_book_progress(self, call: Call, now: float) -> Reply:
        book = self._lib.book(call.params["bookId"])
        progress = self._lib.book_progress.get(book.id)
        if progress is None:
            raise not_found("Progress")
        fields = ("chapterSlug", "locator", "percent", "updatedAt")
        return json_reply({k: progress[k] for k in fields})

    def put_book_progress(self, call: Call, now: float) -> Reply:
        book = self._lib.book(call.params["bookId"])
        body = json_object(call.body)
        previous = self._lib.book_progress.get(book.id)
        slug = optional_text(body, "chapterSlug", max_length=200)
        if slug is None:
            slug = previous["chapterSlug"] if previous else book.chapters[0].slug
        if book.chapter(slug) is None:
            raise validation(
                FieldProblem("chapterSlug", "not_found", "'chapterSlug' is not in this book.")
            )
        locator = require_text(body, "locator", max_length=2000)
        kind = optional_text(body, "locatorKind", max_length=50)
        percent = self._percent(body, previous)
        self._lib.book_progress[book.id] = {
            "chapterSlug": slug,
            "locator": locator,
            "locatorKind": kind,
            "percent": percent,
            "updatedAt": iso(now),
            "completedAt": self._completed(percent, previous, now),
            "_at": now,
        }
        return Reply(204)

    @staticmethod
    def _completed(
        percent: Optional[float], previous: Optional[dict[str, Any]], now: float
    ) -> Optional[str]:
        if percent is None or percent < 100:
            return None
        earlier = previous["completedAt"] if previous else None
        return earlier if isinstance(earlier, str) else iso(now)

    # -- chapter review ----------------------------------------------------------------

    def _review_target(self, edition_id: Any, book_id: Any, slug: Any) -> tuple[Book, Chapter]:
        book = self._lib.target(edition_id, book_id, names=("editionId", "userBookId"))
        if not isinstance(slug, str) or not slug:
            raise validation(FieldProblem("chapterSlug", "required", "'chapterSlug' is required."))
        chapter = book.chapter(slug)
        if chapter is None:
            raise not_found("Chapter")
        return book, chapter

    def _review_key(self, book: Book, chapter: Chapter) -> tuple[str, str, str]:
        return ("edition" if isinstance(book, Edition) else "userbook", book.id, chapter.slug)

    def get_review(self, call: Call, now: float) -> Reply:
        book, chapter = self._review_target(
            call.arg("editionId"), call.arg("userBookId"), call.arg("chapterSlug")
        )
        words = chapter.text.split()
        total = max(1, -(-len(words) // _WORDS_PER_PART))
        part = int_arg(call, "part", default=1, low=1, high=1000)
        if part > total:
            raise validation(
                FieldProblem(
                    "part", "range", f"This chapter has {total} part(s); 'part' is {part}."
                )
            )
        text = " ".join(words[(part - 1) * _WORDS_PER_PART : part * _WORDS_PER_PART])
        saved = self._lib.reviews.get(self._review_key(book, chapter))
        return json_reply(
            {
                "editionId": book.id if isinstance(book, Edition) else None,
                "userBookId": book.id if isinstance(book, UserBook) else None,
                "chapterSlug": chapter.slug,
                "chapterNumber": chapter.number,
                "chapterTitle": chapter.title,
                "part": part,
                "totalParts": total,
                "text": text,
                "review": saved["review"] if saved else None,
                "reviewUpdatedAt": saved["updatedAt"] if saved else None,
            }
        )

    @staticmethod
    def _review(body: dict[str, Any]) -> Any:
        # Reviews are structured (TextStack's own MCP tool sends an object); text is kept
        # for older callers. Either way the size is bounded as the server bounds it.
        review = body.get("review")
        if not isinstance(review, dict):
            return require_text(body, "review", max_length=_MAX_REVIEW)
        if not review:
            raise validation(FieldProblem("review", "required", "'review' must not be empty."))
        if len(json.dumps(review)) > _MAX_REVIEW:
            raise validation(
                FieldProblem(
                    "review", "max_length", f"'review' must be at most {_MAX_REVIEW} characters."
                )
            )
        return review

    def put_review(self, call: Call, now: float) -> Reply:
        body = json_object(call.body)
        book, chapter = self._review_target(
            body.get("editionId"), body.get("userBookId"), body.get("chapterSlug")
        )
        review = self._review(body)
        saved = {"review": review, "updatedAt": iso(now)}
        self._lib.reviews[self._review_key(book, chapter)] = saved
        return json_reply(
            {
                "editionId": book.id if isinstance(book, Edition) else None,
                "userBookId": book.id if isinstance(book, UserBook) else None,
                "chapterSlug": chapter.slug,
                "review": review,
                "updatedAt": saved["updatedAt"],
            }
        )

    def __repr__(self) -> str:
        return "Reading()"
