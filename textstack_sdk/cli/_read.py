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
    EMPTY,
    clean_lines,
    html_to_text,
    page_footer,
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
        return f"{head}\n{page_footer(len(results.items), results.total, 'matching chapters')}"

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
        stage=_stage(args.stage), search=args.search, limit=args.limit, offset=args.offset
    )

    def table() -> str:
        rows = [
            (w.word, w.translation, w.stage, w.book_title, w.next_review_at) for w in page.items
        ]
        head = render_table(("word", "translation", "stage", "book", "next review"), rows)
        footer = page_footer(len(page.items), page.total, "words", offset=args.offset or 0)
        return f"{head}\n{footer}"

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
            else EMPTY
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
    progress = ctx.client().get_progress(ctx.args.edition_id)
    if progress is None:
        # The API answers the same for an edition never opened and one that is not
        # yours; either way there is no position, which is a result, not an error.
        if ctx.json:
            ctx.out("null")
        else:
            ctx.out(
                f"No reading position in edition {for_terminal(ctx.args.edition_id)}: "
                "you have not opened it yet (or no such edition is yours)."
            )
        return 0
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


STAGES = ("new", "learning", "known", "0", "1", "2", "3", "4")


def _stage(value: Optional[str]) -> Optional[object]:
    return int(value) if value is not None and value.isdigit() else value


def register(add: Callable[..., Any]) -> None:
    """Adds the read commands to the parser."""

    def with_json(
        name: str, func: Callable[[Context], int], help_: str, examples: list[tuple[str, str]]
    ) -> Any:
        sub = add(name, func, help_, examples=examples)
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return sub

    search = with_json(
        "search",
        cmd_search,
        "search the public catalog (no sign-in needed)",
        [
            ("chapters that mention a phrase", 'textstack search "call me Ishmael"'),
            ("the first three hits as JSON", "textstack search whale --limit 3 --json"),
        ],
    )
    search.add_argument("query", help="words to look for in book chapters")
    search.add_argument("--limit", type=int, default=None, metavar="N", help="show at most N hits")
    book = with_json(
        "book",
        cmd_book,
        "show a catalog book and its chapters",
        [
            ("a book by its slug (from search)", "textstack book moby-dick"),
            ("its edition id, for highlights and progress", "textstack book moby-dick --json"),
        ],
    )
    book.add_argument("slug", help="the book's slug, e.g. moby-dick (see `textstack search`)")
    chapter = with_json(
        "chapter",
        cmd_chapter,
        "show a catalog chapter as text",
        [
            ("read a chapter", "textstack chapter moby-dick loomings"),
            ("the chapter's HTML", "textstack chapter moby-dick loomings --html"),
        ],
    )
    chapter.add_argument("slug", help="the book's slug")
    chapter.add_argument("chapter_slug", help="the chapter's slug (see `textstack book SLUG`)")
    chapter.add_argument("--html", action="store_true", help="print the HTML, not text")
    highlights = with_json(
        "highlights",
        cmd_highlights,
        "your highlights in an edition",
        [
            ("your highlights in a book", "textstack highlights EDITION_ID"),
            ("as JSON", "textstack highlights EDITION_ID --json"),
        ],
    )
    highlights.add_argument("edition_id", help="the edition's id (the id in `textstack book`)")
    vocabulary = with_json(
        "vocabulary",
        cmd_vocabulary,
        "your vocabulary words, a page at a time",
        [
            ("words you are learning", "textstack vocabulary --stage learning"),
            ("the second page of 20", "textstack vocabulary --limit 20 --offset 20"),
        ],
    )
    vocabulary.add_argument(
        "--stage",
        default=None,
        choices=STAGES,
        metavar="STAGE",
        help=f"only words at this stage: one of {', '.join(STAGES)}",
    )
    vocabulary.add_argument(
        "--search", default=None, metavar="TEXT", help="only words or translations with TEXT"
    )
    vocabulary.add_argument(
        "--limit", type=int, default=None, metavar="N", help="at most N words (a page)"
    )
    vocabulary.add_argument(
        "--offset", type=int, default=None, metavar="N", help="skip the first N words"
    )
    library = with_json(
        "library",
        cmd_library,
        "search your own library",
        [
            ("your books and notes about a subject", "textstack library stoicism"),
            ("only what carries some tags", "textstack library war --tags strategy,history"),
        ],
    )
    library.add_argument("query", help="words to look for in your library")
    library.add_argument("--tags", default=None, metavar="TAGS", help="comma-separated tags")
    with_json(
        "books",
        cmd_books,
        "your uploaded books",
        [("your uploads", "textstack books"), ("as JSON", "textstack books --json")],
    )
    with_json(
        "shelves",
        cmd_shelves,
        "your library shelves",
        [("what you are reading", "textstack shelves"), ("as JSON", "textstack shelves --json")],
    )
    insights = with_json(
        "insights",
        cmd_insights,
        "your insights about a book",
        [
            ("about a catalog book", "textstack insights --edition-id EDITION_ID"),
            ("about one of your uploads", "textstack insights --book-id BOOK_ID"),
        ],
    )
    which = insights.add_mutually_exclusive_group(required=True)
    which.add_argument("--edition-id", default=None, metavar="ID", help="a catalog edition")
    which.add_argument("--book-id", default=None, metavar="ID", help="an uploaded book")
    progress = with_json(
        "progress",
        cmd_progress,
        "your reading position in an edition",
        [
            ("where you stopped", "textstack progress EDITION_ID"),
            ("as JSON (null when never opened)", "textstack progress EDITION_ID --json"),
        ],
    )
    progress.add_argument("edition_id", help="the edition's id (the id in `textstack book`)")
