"""Read commands of ``textstack``: tables by default, JSON with ``--json``.

User-scoped commands never wait for a sign-in: without a usable token the client
raises ``AuthorizationRequired`` (the Pending message) and the command exits 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from .._errors import TextStackError
from .._text import for_terminal
from ._context import Context
from ._format import (
    clean_lines,
    html_to_text,
    render_fields,
    render_table,
    to_json,
)

if TYPE_CHECKING:
    from .._api_models import Shelves

__all__ = ["NotFound", "register"]


class NotFound(TextStackError):
    """The server has no such resource (or it is not yours): exit code 1."""


def _emit(ctx: Context, result: Any, table: Callable[[], str]) -> int:
    ctx.out(to_json(result) if ctx.json else table())
    return 0


def _found(value: Optional[Any], what: str) -> Any:
    if value is None:
        raise NotFound(f"not found: {for_terminal(what)}")
    return value


def _width() -> int:
    import shutil

    return max(40, min(100, shutil.get_terminal_size((100, 24)).columns))


def cmd_search(ctx: Context) -> int:
    results = ctx.client().search_books(ctx.args.query, limit=ctx.args.limit)

    def table() -> str:
        rows = [
            (
                hit.edition.title,
                hit.edition.slug,
                hit.chapter_slug,
                hit.chapter_title,
                " ".join(html_to_text(h) for h in hit.highlights[:1]),
            )
            for hit in results.items
        ]
        head = render_table(("book", "slug", "chapter", "title", "match"), rows)
        return f"{head}\n{len(results.items)} of {results.total} matching chapters"

    return _emit(ctx, results, table)


def cmd_book(ctx: Context) -> int:
    book = _found(ctx.client().get_book(ctx.args.slug), f"book {ctx.args.slug}")

    def table() -> str:
        fields = render_fields(
            [
                ("title", book.title),
                ("slug", book.slug),
                ("id", book.id),
                ("language", book.language),
                ("authors", ", ".join(a.name for a in book.authors)),
                ("genres", ", ".join(g.name for g in book.genres)),
                ("description", book.description),
            ]
        )
        chapters = render_table(
            ("#", "slug", "title", "words"),
            [(c.chapter_number, c.slug, c.title, c.word_count) for c in book.chapters],
        )
        return f"{fields}\n\n{chapters}"

    return _emit(ctx, book, table)


def cmd_chapter(ctx: Context) -> int:
    args = ctx.args
    chapter = _found(
        ctx.client().get_chapter(args.slug, args.chapter_slug),
        f"chapter {args.chapter_slug} of {args.slug}",
    )

    def text() -> str:
        title = for_terminal(chapter.title or chapter.slug)
        number = f"{chapter.chapter_number}. " if chapter.chapter_number is not None else ""
        body = (
            clean_lines(chapter.html)
            if args.html
            else clean_lines(html_to_text(chapter.html), width=_width())
        )
        links = []
        if chapter.prev is not None:
            links.append(f"previous: {for_terminal(chapter.prev.slug)}")
        if chapter.next is not None:
            links.append(f"next: {for_terminal(chapter.next.slug)}")
        footer = f"\n\n({'; '.join(links)})" if links else ""
        return f"{number}{title}\n\n{body}{footer}"

    return _emit(ctx, chapter, text)


def cmd_highlights(ctx: Context) -> int:
    items = _found(
        ctx.client().list_my_highlights(ctx.args.edition_id), f"edition {ctx.args.edition_id}"
    )
    return _emit(
        ctx,
        items,
        lambda: render_table(
            ("created", "color", "text", "note", "chapter id"),
            [(h.created_at, h.color, h.selected_text, h.note_text, h.chapter_id) for h in items],
        ),
    )


def cmd_vocabulary(ctx: Context) -> int:
    args = ctx.args
    page = ctx.client().list_my_vocabulary(
        stage=args.stage, search=args.search, limit=args.limit, offset=args.offset
    )

    def table() -> str:
        rows = [
            (w.word, w.translation, w.stage, w.book_title, w.next_review_at) for w in page.items
        ]
        head = render_table(("word", "translation", "stage", "book", "next review"), rows)
        return f"{head}\n{len(page.items)} of {page.total} words"

    return _emit(ctx, page, table)


def cmd_library(ctx: Context) -> int:
    hits = ctx.client().search_my_library(ctx.args.query, tags=ctx.args.tags)
    return _emit(
        ctx,
        hits,
        lambda: render_table(
            ("title", "author", "chapter", "excerpt", "id"),
            [
                (h.title, h.author, h.chapter_slug, html_to_text(h.excerpt or ""), h.id)
                for h in hits
            ],
        ),
    )


def cmd_books(ctx: Context) -> int:
    books = ctx.client().list_my_books()
    return _emit(
        ctx,
        books,
        lambda: render_table(
            ("title", "author", "status", "chapters", "progress %", "id"),
            [
                (b.title, b.author, b.status, b.chapter_count, b.progress_percent, b.id)
                for b in books
            ],
        ),
    )


def _shelves_table(shelves: Shelves) -> str:
    parts = []
    for name, items in (
        ("Continue reading", shelves.continue_reading),
        ("Recently added", shelves.recently_added),
        ("Finished this month", shelves.finished_this_month),
    ):
        rows = [(i.title, i.author, i.type, i.progress_percent, i.last_opened_at) for i in items]
        table = (
            render_table(("title", "author", "type", "progress %", "last opened"), rows)
            if rows
            else "(empty)"
        )
        parts.append(f"{name}\n{table}")
    return "\n\n".join(parts)


def cmd_shelves(ctx: Context) -> int:
    shelves = ctx.client().get_shelves()
    return _emit(ctx, shelves, lambda: _shelves_table(shelves))


def cmd_insights(ctx: Context) -> int:
    args = ctx.args
    items = _found(
        ctx.client().get_my_insights(edition_id=args.edition_id, book_id=args.book_id),
        f"book {args.edition_id or args.book_id}",
    )
    return _emit(
        ctx,
        items,
        lambda: render_table(
            ("created", "chapter", "question", "insight"),
            [(i.created_at, i.chapter_slug or "(book)", i.question, i.text) for i in items],
        ),
    )


def cmd_progress(ctx: Context) -> int:
    progress = _found(
        ctx.client().get_progress(ctx.args.edition_id), f"progress in {ctx.args.edition_id}"
    )
    return _emit(
        ctx,
        progress,
        lambda: render_fields(
            [
                ("edition id", progress.edition_id),
                ("chapter", progress.chapter_slug),
                ("chapter id", progress.chapter_id),
                ("percent", progress.percent),
                ("locator", progress.locator),
                ("updated", progress.updated_at),
                ("completed", progress.completed_at),
            ]
        ),
    )


def register(add: Callable[..., Any]) -> None:
    """Adds the read commands to the parser."""

    def with_json(name: str, func: Callable[[Context], int], help_: str) -> Any:
        sub = add(name, func, help_)
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return sub

    search = with_json("search", cmd_search, "search the public catalog")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=None)
    book = with_json("book", cmd_book, "show a catalog book and its chapters")
    book.add_argument("slug")
    chapter = with_json("chapter", cmd_chapter, "show a catalog chapter as text")
    chapter.add_argument("slug")
    chapter.add_argument("chapter_slug")
    chapter.add_argument("--html", action="store_true", help="print the HTML, not text")
    highlights = with_json("highlights", cmd_highlights, "your highlights in an edition")
    highlights.add_argument("edition_id")
    vocabulary = with_json("vocabulary", cmd_vocabulary, "your vocabulary words")
    vocabulary.add_argument("--stage", default=None)
    vocabulary.add_argument("--search", default=None)
    vocabulary.add_argument("--limit", type=int, default=None)
    vocabulary.add_argument("--offset", type=int, default=None)
    library = with_json("library", cmd_library, "search your own library")
    library.add_argument("query")
    library.add_argument("--tags", default=None, help="comma-separated tags")
    with_json("books", cmd_books, "your uploaded books")
    with_json("shelves", cmd_shelves, "your library shelves")
    insights = with_json("insights", cmd_insights, "your insights about a book")
    which = insights.add_mutually_exclusive_group(required=True)
    which.add_argument("--edition-id", default=None, help="a catalog edition")
    which.add_argument("--book-id", default=None, help="an uploaded book")
    progress = with_json("progress", cmd_progress, "your reading position in an edition")
    progress.add_argument("edition_id")
