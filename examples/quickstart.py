"""Quickstart: search the TextStack catalog, read a chapter, list your books and highlights.

Run it against textstack.app after signing in once::

    textstack login
    python examples/quickstart.py "truth universally acknowledged"

or against a local server: run ``textstack dev-server`` in another shell, paste the
``export`` line it prints, then (approve the code it shows at the server's /device page)::

    python examples/quickstart.py --login

Catalog calls need no sign-in. Calls about *your* library need one: without it they raise
``AuthorizationRequired`` at once (nothing is sent), and this script exits with code 3.
``--login`` instead shows a link and a code and waits here until you approve.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from typing import Optional

from textstack_sdk import (
    AuthorizationRequired,
    TextStackApiClient,
    TextStackError,
    TokenManager,
)

EXIT_SIGN_IN_NEEDED = 3


def plain_text(markup: str, words: int = 24) -> str:
    """The first few words of a chapter's HTML, as plain text."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", markup))
    return " ".join(text.split()[:words]) + " …"


def show_catalog(client: TextStackApiClient, query: str) -> None:
    results = client.search_books(query, limit=3)
    print(f"{results.total} chapter(s) match {query!r}")
    for hit in results.items:
        print(f"  {hit.edition.title} — {hit.chapter_title}")
    if not results.items:
        return

    first = results.items[0]
    slug = first.edition.slug
    if slug is None:
        return
    book = client.get_book(slug)  # None if the book is gone
    chapter = client.get_chapter(slug, first.chapter_slug)
    if book is None or chapter is None:
        return
    authors = ", ".join(author.name for author in book.authors)
    print(f"\n{book.title} by {authors}: {len(book.chapters)} chapters")
    print(f"  {chapter.title}: {plain_text(chapter.html)}")

    for highlight in client.list_my_highlights(book.id) or ():  # needs a sign-in
        print(f"  your highlight: {highlight.selected_text!r}")


def show_my_library(client: TextStackApiClient) -> None:
    books = client.list_my_books()
    print(f"\nYour uploads ({len(books)}):")
    for book in books:
        print(f"  {book.title} by {book.author} ({book.chapter_count} chapters)")
        for highlight in client.list_my_book_highlights(book.id) or ():
            print(f"    highlight: {highlight.selected_text!r}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", nargs="?", default="truth universally acknowledged")
    parser.add_argument(
        "--login", action="store_true", help="sign in here (wait for approval) if needed"
    )
    args = parser.parse_args(argv)

    try:
        with TextStackApiClient.from_env() as client:
            if args.login and isinstance(client.token_provider, TokenManager):
                # Prints the link and code on stderr, then blocks until approved.
                client.token_provider.wait_for_token(timeout=600)
            show_catalog(client, args.query)
            show_my_library(client)
    except AuthorizationRequired as exc:
        print(f"\n{exc}", file=sys.stderr)
        print(
            "Sign in once with `textstack login` (or run this script with --login).",
            file=sys.stderr,
        )
        return EXIT_SIGN_IN_NEEDED
    except TextStackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
