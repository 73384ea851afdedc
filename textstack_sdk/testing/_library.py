"""The fake server's in-memory library: the catalog and one user's data, with handlers.

Each handler takes a parsed Call and the wall time and returns a Reply or raises a
Problem; field names, ids and status codes follow TEXTSTACK_API.md.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Optional, Union

from ._library_data import USER, Chapter, Edition, UserBook, editions, user_books
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

__all__ = ["Book", "Library", "public"]

_DAY = 86_400.0
_COLORS = ("yellow", "green", "blue", "pink", "purple")
_STAGES = ("new", "learning", "known")
_STOPWORDS = frozenset(
    (  # noqa: SIM905
        "the a an and or of to in on at is it was what who why how does did do with for "
        "from by that this as be are his her he she i my me"
    ).split()
)
Book = Union[Edition, UserBook]


def _terms(text: str) -> list[str]:
    return [t for t in re.findall(r"[\w']+", text.lower()) if len(t) > 1]


def _fragments(text: str, terms: list[str], limit: int = 3, width: int = 60) -> list[str]:
    """Escaped excerpts around matches, each match wrapped in <b>, like ts_headline."""
    if not terms:
        return []
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")\b", re.IGNORECASE)
    out: list[str] = []
    end_of_last = -1
    for match in pattern.finditer(text):
        if match.start() < end_of_last or len(out) >= limit:
            continue
        start, stop = max(0, match.start() - width), min(len(text), match.end() + width)
        window = text[start:stop]
        marked = pattern.sub(lambda m: f"\x00{m.group(0)}\x01", window)
        escaped = html.escape(marked).replace("\x00", "<b>").replace("\x01", "</b>")
        out.append(("…" if start else "") + escaped + ("…" if stop < len(text) else ""))
        end_of_last = stop
    return out


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record without its private (underscore) bookkeeping keys."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


class Library:
    """One user's view of TextStack. Not thread-safe: the server calls it under its lock."""

    def __init__(self, now: float) -> None:
        self.user: dict[str, Any] = dict(USER, createdAt=iso(now - 400 * _DAY))
        self.editions = {e.id: e for e in editions()}
        self.by_slug = {e.slug: e for e in self.editions.values()}
        self.books = {b.id: b for b in user_books()}
        self._book_added = {b.id: now - b.added_days_ago * _DAY for b in self.books.values()}
        pride, moby = self.by_slug["pride-and-prejudice"], self.by_slug["moby-dick"]
        war = next(b for b in self.books.values() if b.slug == "the-art-of-war")
        self._saved = {pride.id: now - 30 * _DAY, moby.id: now - 5 * _DAY}
        self.highlights: list[dict[str, Any]] = [
            self._highlight(
                owner=("edition", pride.id),
                chapter=pride.chapters[0],
                text="It is a truth universally acknowledged",
                color="yellow",
                note="The famous opening.",
                at=now - 20 * _DAY,
            ),
            self._highlight(
                owner=("userbook", war.id),
                chapter=war.chapters[0],
                text="a matter of life and death",
                color="green",
                note=None,
                at=now - 3 * _DAY,
            ),
        ]
        self.vocabulary: list[dict[str, Any]] = [
            self._word(row[:5], now + row[5] * _DAY if row[5] is not None else None)
            for row in (
                (
                    "neighbourhood",
                    "Nachbarschaft",
                    "A district or community.",
                    "learning",
                    pride.title,
                    1,
                ),
                ("fortune", "Vermögen", "A large amount of money.", "known", pride.title, 30),
                ("purse", "Geldbeutel", "A small bag for money.", "new", moby.title, None),
                ("wainscot", "Täfelung", "Wooden panelling on a wall.", "new", moby.title, None),
                ("bulwark", "Bollwerk", "A defensive wall.", "learning", moby.title, 2),
                ("chariot", "Streitwagen", "A two-wheeled war vehicle.", "known", war.title, 60),
            )
        ]
        self.insights: list[dict[str, Any]] = [
            {
                "id": str(uuid.uuid4()),
                "editionId": pride.id,
                "userBookId": None,
                "chapterSlug": "chapter-1",
                "chapterNumber": 1,
                "chapterTitle": "Chapter 1",
                "text": "The opening line is ironic: the families want the rich man.",
                "question": "What is the tone of the opening?",
                "source": "mcp",
                "createdAt": iso(now - 10 * _DAY),
                "updatedAt": iso(now - 10 * _DAY),
            }
        ]
        self.edition_progress: dict[str, dict[str, Any]] = {
            pride.id: {
                "editionId": pride.id,
                "chapterId": pride.chapters[1].id,
                "chapterSlug": pride.chapters[1].slug,
                "locator": "epubcfi(/6/6!/4/2/1:0)",
                "percent": 45.0,
                "updatedAt": iso(now - _DAY),
                "completedAt": None,
                "_at": now - _DAY,
            }
        }
        self.book_progress: dict[str, dict[str, Any]] = {
            war.id: {
                "chapterSlug": war.chapters[0].slug,
                "locator": "p:2",
                "locatorKind": "paragraph",
                "percent": 30.0,
                "updatedAt": iso(now - 7200),
                "completedAt": None,
                "_at": now - 7200,
            }
        }
        self.reviews: dict[tuple[str, str, str], dict[str, Any]] = {}

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _highlight(
        *,
        owner: tuple[str, str],
        chapter: Chapter,
        text: str,
        color: str,
        note: Optional[str],
        at: float,
        anchor: Optional[str] = None,
    ) -> dict[str, Any]:
        upload = owner[0] == "userbook"
        return {
            "id": str(uuid.uuid4()),
            "chapterId": None if upload else chapter.id,
            "userChapterId": chapter.id if upload else None,
            "color": color,
            "selectedText": text,
            "noteText": note,
            "createdAt": iso(at),
            "_owner": owner,
            "_anchor": anchor,
        }

    @staticmethod
    def _word(row: tuple[Any, ...], due: Optional[float]) -> dict[str, Any]:
        word, translation, definition, stage, book = row
        return {
            "word": word,
            "language": "en",
            "translation": translation,
            "definition": definition,
            "stage": stage,
            "bookTitle": book,
            "nextReviewAt": iso(due) if due is not None else None,
        }

    def edition(self, edition_id: str) -> Edition:
        edition = self.editions.get(edition_id)
        if edition is None:
            raise not_found("Edition")
        return edition

    def book(self, book_id: str) -> UserBook:
        book = self.books.get(book_id)
        if book is None:
            raise not_found("Book")
        return book

    def target(self, edition_id: Any, book_id: Any, *, names: tuple[str, str]) -> Book:
        """Exactly one of an edition id and an upload id, resolved (404 if unknown)."""
        given = [v for v in (edition_id, book_id) if v not in (None, "")]
        if len(given) != 1 or not isinstance(given[0], str):
            raise validation(
                FieldProblem(names[0], "one_of", f"Give exactly one of {names[0]} and {names[1]}.")
            )
        return self.edition(given[0]) if edition_id else self.book(given[0])

    @staticmethod
    def _author(book: Book) -> str:
        return ", ".join(book.authors) if isinstance(book, Edition) else book.author

    def _progress_of(self, book: Book) -> Optional[dict[str, Any]]:
        if isinstance(book, Edition):
            return self.edition_progress.get(book.id)
        return self.book_progress.get(book.id)

    # -- public catalog ----------------------------------------------------------------

    def search(self, call: Call, now: float) -> Reply:
        limit = int_arg(call, "limit", default=20, low=1, high=100)
        terms = _terms(call.arg("q") or "")
        hits: list[tuple[int, Edition, Chapter]] = []
        for edition in self.editions.values():
            for chapter in edition.chapters:
                words = set(_terms(chapter.text))
                score = sum(1 for t in set(terms) if t in words)
                if score:
                    hits.append((score, edition, chapter))
        hits.sort(key=lambda h: (-h[0], h[1].title, h[2].number))
        items = [
            {
                "chapterId": c.id,
                "chapterSlug": c.slug,
                "chapterTitle": c.title,
                "chapterNumber": c.number,
                "edition": {
                    "id": e.id,
                    "slug": e.slug,
                    "title": e.title,
                    "language": e.language,
                    "authors": ", ".join(e.authors),
                    "coverPath": e.cover_path,
                },
                "highlights": _fragments(c.text, terms),
            }
            for _, e, c in hits[:limit]
        ]
        return json_reply({"total": len(hits), "items": items})

    def get_book(self, call: Call, now: float) -> Reply:
        edition = self.by_slug.get(call.params["slug"])
        if edition is None:
            raise not_found("Book")
        return json_reply(
            {
                "id": edition.id,
                "slug": edition.slug,
                "title": edition.title,
                "language": edition.language,
                "description": edition.description,
                "authors": [{"name": a} for a in edition.authors],
                "genres": [{"name": g} for g in edition.genres],
                "chapters": [c.summary() for c in edition.chapters],
            }
        )

    def get_chapter(self, call: Call, now: float) -> Reply:
        edition = self.by_slug.get(call.params["slug"])
        chapter = edition.chapter(call.params["chapterSlug"]) if edition else None
        if edition is None or chapter is None:
            raise not_found("Chapter")
        index = chapter.number - 1
        before = edition.chapters[index - 1] if index > 0 else None
        after = edition.chapters[index + 1] if index + 1 < len(edition.chapters) else None
        return json_reply(
            {
                "chapterNumber": chapter.number,
                "slug": chapter.slug,
                "title": chapter.title,
                "html": chapter.html,
                "prev": {"slug": before.slug, "title": before.title} if before else None,
                "next": {"slug": after.slug, "title": after.title} if after else None,
            }
        )

    def ask(self, call: Call, now: float) -> Reply:
        edition = self.edition(call.params["editionId"])
        body = json_object(call.body)
        question = require_text(body, "question", max_length=2000)
        k = body.get("k", 5)
        if k is None:
            k = 5
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 20:
            raise validation(FieldProblem("k", "range", "'k' must be an integer from 1 to 20."))
        terms = [t for t in _terms(question) if t not in _STOPWORDS]
        scored = []
        for chapter in edition.chapters:
            words = set(_terms(chapter.text))
            score = sum(1 for t in set(terms) if t in words)
            if score:
                scored.append((score, chapter))
        scored.sort(key=lambda s: (-s[0], s[1].number))
        chosen = [c for _, c in scored[:k]]
        citations = [
            {"marker": f"[{i}]", "chapterOrd": c.number, "preview": c.paragraphs[0][:160]}
            for i, c in enumerate(chosen, start=1)
        ]
        if chosen:
            answer = " ".join(
                f"{c.paragraphs[0].split('. ')[0].rstrip('.')}. [{i}]"
                for i, c in enumerate(chosen, start=1)
            )
        else:
            answer = "The book does not say enough to answer that."
        progress = self.edition_progress.get(edition.id)
        last = edition.chapter(progress["chapterSlug"]) if progress else None
        return json_reply(
            {
                "answer": answer,
                "citations": citations,
                "lastReadOrd": last.number if last else None,
                "insufficient": not chosen,
            }
        )

    # -- highlights and vocabulary -----------------------------------------------------

    def list_highlights(self, call: Call, now: float) -> Reply:
        edition = self.edition(call.params["editionId"])
        owner = ("edition", edition.id)
        return json_reply([public(h) for h in self.highlights if h["_owner"] == owner])

    def list_book_highlights(self, call: Call, now: float) -> Reply:
        book = self.book(call.params["bookId"])
        owner = ("userbook", book.id)
        return json_reply([public(h) for h in self.highlights if h["_owner"] == owner])

    def save_highlight(self, call: Call, now: float) -> Reply:
        body = json_object(call.body)
        book = self.target(
            body.get("editionId"), body.get("userBookId"), names=("editionId", "userBookId")
        )
        upload = isinstance(book, UserBook)
        id_field = "userChapterId" if upload else "chapterId"
        chapter_id = body.get(id_field)
        chapter = book.chapter_by_id(chapter_id) if isinstance(chapter_id, str) else None
        if chapter is None:
            raise validation(
                FieldProblem(id_field, "not_found", f"'{id_field}' is not a chapter of this book.")
            )
        text = require_text(body, "selectedText", max_length=5000)
        color = body.get("color") or "yellow"
        if color not in _COLORS:
            raise validation(
                FieldProblem("color", "invalid", f"'color' must be one of {', '.join(_COLORS)}.")
            )
        note = optional_text(body, "noteText", max_length=5000)
        # As the real server: the anchor is required and must be a JSON object's text.
        anchor = require_text(body, "anchorJson", max_length=10_000)
        try:
            parsed_anchor = json.loads(anchor)
        except ValueError:
            parsed_anchor = None
        if not isinstance(parsed_anchor, dict):
            raise validation(
                FieldProblem("anchorJson", "invalid", "'anchorJson' must be a JSON object.")
            )
        owner = ("userbook" if upload else "edition", book.id)
        record = self._highlight(
            owner=owner, chapter=chapter, text=text, color=color, note=note, at=now, anchor=anchor
        )
        self.highlights.append(record)
        return json_reply(public(record), 201)

    def vocabulary_words(self, call: Call, now: float) -> Reply:
        stage = call.arg("stage")
        if stage is not None and stage.isdecimal() and stage.isascii():
            # ASP.NET binds an enum from its number too; a number with no name matches none.
            number = int(stage)
            stage = _STAGES[number] if number < len(_STAGES) else f"#{number}"
        elif stage is not None and stage.lower() not in _STAGES:
            raise validation(
                FieldProblem("stage", "invalid", f"'stage' must be one of {', '.join(_STAGES)}.")
            )
        limit = int_arg(call, "limit", default=50, low=1, high=200)
        offset = int_arg(call, "offset", default=0, low=0, high=1_000_000)
        search = (call.arg("search") or "").lower()
        items = [
            w
            for w in self.vocabulary
            if (stage is None or w["stage"] == stage.lower())
            and (search in w["word"].lower() or search in w["translation"].lower())
        ]
        return json_reply({"total": len(items), "items": items[offset : offset + limit]})

    # -- the user's library ------------------------------------------------------------

    def _library_entries(self) -> list[tuple[Book, float]]:
        entries: list[tuple[Book, float]] = [
            (b, self._book_added[b.id]) for b in self.books.values()
        ]
        entries += [(self.editions[i], at) for i, at in self._saved.items()]
        return entries

    def library_search(self, call: Call, now: float) -> Reply:
        terms = _terms(call.arg("q") or "")
        tags = {t.strip().lower() for t in (call.arg("tags") or "").split(",") if t.strip()}
        results: list[dict[str, Any]] = []
        for book, _ in self._library_entries():
            book_tags = (
                set(book.tags) if isinstance(book, UserBook) else {g.lower() for g in book.genres}
            )
            if not tags <= book_tags:
                continue
            best: Optional[Chapter] = None
            rank = 0.0
            title_hits = sum(1 for t in terms if t in _terms(book.title + " " + self._author(book)))
            for chapter in book.chapters:
                words = _terms(chapter.text)
                hits = sum(words.count(t) for t in terms)
                if hits and hits / len(words) > rank:
                    best, rank = chapter, hits / len(words)
            if terms and best is None and not title_hits:
                continue
            results.append(
                {
                    "id": book.id,
                    "title": book.title,
                    "author": self._author(book),
                    "coverPath": book.cover_path,
                    "language": book.language,
                    "rank": round(rank + title_hits, 4),
                    "excerpt": next(iter(_fragments(best.text, terms, limit=1)), None)
                    if best
                    else None,
                    "chapterSlug": best.slug if best else None,
                }
            )
        results.sort(key=lambda r: (-r["rank"], r["title"]))
        return json_reply(results)

    def my_books(self, call: Call, now: float) -> Reply:
        items = []
        for book in sorted(self.books.values(), key=lambda b: -self._book_added[b.id]):
            progress = self.book_progress.get(book.id)
            items.append(
                {
                    "id": book.id,
                    "title": book.title,
                    "slug": book.slug,
                    "author": book.author,
                    "status": "ready",
                    "chapterCount": len(book.chapters),
                    "progressPercent": progress["percent"] if progress else None,
                    "progressChapterSlug": progress["chapterSlug"] if progress else None,
                    "completedAt": progress["completedAt"] if progress else None,
                }
            )
        return json_reply(items)

    def my_book(self, call: Call, now: float) -> Reply:
        book = self.book(call.params["bookId"])
        return json_reply(
            {
                "id": book.id,
                "title": book.title,
                "slug": book.slug,
                "language": book.language,
                "author": book.author,
                "description": book.description,
                "genre": book.genre,
                "publishedYear": book.published_year,
                "totalWordCount": sum(c.word_count for c in book.chapters),
                "status": "ready",
                "hasOriginalPdf": False,
                "chapters": [c.summary() for c in book.chapters],
            }
        )

    def my_chapter(self, call: Call, now: float) -> Reply:
        book = self.book(call.params["bookId"])
        chapter = book.chapter(call.params["chapterSlug"])
        if chapter is None:
            raise not_found("Chapter")
        index = chapter.number - 1

        def link(c: Optional[Chapter]) -> Optional[dict[str, Any]]:
            return {"chapterNumber": c.number, "slug": c.slug, "title": c.title} if c else None

        return json_reply(
            {
                "id": chapter.id,
                "chapterNumber": chapter.number,
                "slug": chapter.slug,
                "title": chapter.title,
                "html": chapter.html,
                "wordCount": chapter.word_count,
                "previous": link(book.chapters[index - 1] if index > 0 else None),
                "next": link(book.chapters[index + 1] if index + 1 < len(book.chapters) else None),
            }
        )

    def shelves(self, call: Call, now: float) -> Reply:
        this_month = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m")
        reading, finished, added = [], [], []
        for book, added_at in self._library_entries():
            progress = self._progress_of(book)
            item = {
                "id": book.id,
                "type": "userbook" if isinstance(book, UserBook) else "savedbook",
                "title": book.title,
                "author": self._author(book),
                "slug": book.slug,
                "progressPercent": progress["percent"] if progress else None,
                "lastOpenedAt": progress["updatedAt"] if progress else None,
                "chapterSlug": progress["chapterSlug"] if progress else None,
            }
            added.append((added_at, item))
            if progress and progress["completedAt"]:
                if progress["completedAt"].startswith(this_month):
                    finished.append((progress["_at"], item))
            elif progress:
                reading.append((progress["_at"], item))
        return json_reply(
            {
                "continueReading": [i for _, i in sorted(reading, key=lambda p: -p[0])],
                "recentlyAdded": [i for _, i in sorted(added, key=lambda p: -p[0])][:10],
                "finishedThisMonth": [i for _, i in sorted(finished, key=lambda p: -p[0])],
            }
        )

    def __repr__(self) -> str:
        return f"Library(editions={len(self.editions)}, uploads={len(self.books)})"
