"""The ``instructions`` sent to the host's model (``initialize`` and ``server/discover``).

The workflow of the .NET tool's instructions (catalog state B), naming only tools this
server lists; a test checks every ``snake_case`` name here against ``tools/list``.
"""

from __future__ import annotations

__all__ = ["INSTRUCTIONS"]

INSTRUCTIONS = (
    "TextStack is the user's reading library: catalog books everyone can read, and books "
    "the user uploaded. Find the book first. A message may carry an id line such as "
    "(TextStack: book <bookId>, chapter <slug>); use those ids as given. Without ids, "
    "use search_my_library for the user's uploads or get_my_reading for what they are "
    "reading; search_books searches the public catalog. Before discussing a book, call "
    "get_my_insights for it. Read uploaded books with get_my_book and get_my_chapter, "
    "catalog books with get_book and get_chapter. Save conclusions with save_insight. "
    "For a chapter review, call get_chapter_review, then save_chapter_review. Never run "
    "ahead of the reader's position: check get_book_progress before revealing later "
    "chapters."
)
