"""The fake server's seed data: two public-domain catalog books and two uploads.

Ids are stable UUIDv5 values, so tests and benchmarks can name them without asking.
Texts are short excerpts of public-domain works.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from typing import Optional

__all__ = ["SAMPLE_IDS", "USER", "Chapter", "Edition", "UserBook", "editions", "user_books"]

_NS = uuid.UUID("6f1d2b8e-3c1a-4e4f-9a57-2f4c0b7d9e10")


def stable_id(name: str) -> str:
    """A GUID string derived from a name."""
    return str(uuid.uuid5(_NS, name))


@dataclass(frozen=True)
class Chapter:
    """One chapter of a catalog book or an upload. Immutable."""

    id: str
    number: int
    slug: str
    title: str
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.paragraphs)

    @property
    def html(self) -> str:
        return "".join(f"<p>{html.escape(p)}</p>" for p in self.paragraphs)

    @property
    def word_count(self) -> int:
        return len(self.text.split())

    def summary(self) -> dict[str, object]:
        return {
            "id": self.id,
            "chapterNumber": self.number,
            "slug": self.slug,
            "title": self.title,
            "wordCount": self.word_count,
        }


@dataclass(frozen=True)
class Edition:
    """A public catalog edition. Immutable."""

    id: str
    slug: str
    title: str
    language: str
    description: str
    authors: tuple[str, ...]
    genres: tuple[str, ...]
    cover_path: str
    chapters: tuple[Chapter, ...]

    def chapter(self, slug: str) -> Optional[Chapter]:
        return next((c for c in self.chapters if c.slug == slug), None)

    def chapter_by_id(self, chapter_id: str) -> Optional[Chapter]:
        return next((c for c in self.chapters if c.id == chapter_id), None)


@dataclass(frozen=True)
class UserBook:
    """A book the user uploaded. Immutable."""

    id: str
    slug: str
    title: str
    author: str
    language: str
    description: str
    genre: str
    published_year: Optional[int]
    tags: tuple[str, ...]
    cover_path: Optional[str]
    added_days_ago: int
    chapters: tuple[Chapter, ...]

    def chapter(self, slug: str) -> Optional[Chapter]:
        return next((c for c in self.chapters if c.slug == slug), None)

    def chapter_by_id(self, chapter_id: str) -> Optional[Chapter]:
        return next((c for c in self.chapters if c.id == chapter_id), None)


def _chapters(
    book: str, items: tuple[tuple[str, str, tuple[str, ...]], ...]
) -> tuple[Chapter, ...]:
    return tuple(
        Chapter(stable_id(f"{book}/{slug}"), number, slug, title, paragraphs)
        for number, (slug, title, paragraphs) in enumerate(items, start=1)
    )


def editions() -> tuple[Edition, ...]:
    """The public catalog."""
    return (
        Edition(
            id=stable_id("edition/pride-and-prejudice"),
            slug="pride-and-prejudice",
            title="Pride and Prejudice",
            language="en",
            description="Elizabeth Bennet meets the proud Mr. Darcy.",
            authors=("Jane Austen",),
            genres=("Romance", "Classics"),
            cover_path="/covers/pride-and-prejudice.jpg",
            chapters=_chapters(
                "pride-and-prejudice",
                (
                    (
                        "chapter-1",
                        "Chapter 1",
                        (
                            "It is a truth universally acknowledged, that a single man in "
                            "possession of a good fortune, must be in want of a wife.",
                            "However little known the feelings or views of such a man may be "
                            "on his first entering a neighbourhood, this truth is so well "
                            "fixed in the minds of the surrounding families, that he is "
                            "considered the rightful property of some one or other of their "
                            "daughters.",
                        ),
                    ),
                    (
                        "chapter-2",
                        "Chapter 2",
                        (
                            "Mr. Bennet was among the earliest of those who waited on "
                            "Mr. Bingley. He had always intended to visit him, though to the "
                            "last always assuring his wife that he should not go.",
                        ),
                    ),
                    (
                        "chapter-3",
                        "Chapter 3",
                        (
                            "Not all that Mrs. Bennet, however, with the assistance of her "
                            "five daughters, could ask on the subject, was sufficient to draw "
                            "from her husband any satisfactory description of Mr. Bingley.",
                        ),
                    ),
                ),
            ),
        ),
        Edition(
            id=stable_id("edition/moby-dick"),
            slug="moby-dick",
            title="Moby-Dick; or, The Whale",
            language="en",
            description="Ishmael sails with Captain Ahab in pursuit of the white whale.",
            authors=("Herman Melville",),
            genres=("Adventure", "Classics"),
            cover_path="/covers/moby-dick.jpg",
            chapters=_chapters(
                "moby-dick",
                (
                    (
                        "loomings",
                        "Loomings",
                        (
                            "Call me Ishmael. Some years ago, never mind how long precisely, "
                            "having little or no money in my purse, and nothing particular to "
                            "interest me on shore, I thought I would sail about a little and "
                            "see the watery part of the world.",
                        ),
                    ),
                    (
                        "the-carpet-bag",
                        "The Carpet-Bag",
                        (
                            "I stuffed a shirt or two into my old carpet-bag, tucked it under "
                            "my arm, and started for Cape Horn and the Pacific.",
                        ),
                    ),
                    (
                        "the-spouter-inn",
                        "The Spouter-Inn",
                        (
                            "Entering that gable-ended Spouter-Inn, you found yourself in a "
                            "wide, low, straggling entry with old-fashioned wainscots, "
                            "reminding one of the bulwarks of some condemned old craft.",
                        ),
                    ),
                ),
            ),
        ),
    )


def user_books() -> tuple[UserBook, ...]:
    """The user's two uploads."""
    return (
        UserBook(
            id=stable_id("userbook/the-art-of-war"),
            slug="the-art-of-war",
            title="The Art of War",
            author="Sun Tzu",
            language="en",
            description="Lionel Giles's 1910 translation.",
            genre="Strategy",
            published_year=1910,
            tags=("strategy", "classics"),
            cover_path=None,
            added_days_ago=12,
            chapters=_chapters(
                "the-art-of-war",
                (
                    (
                        "laying-plans",
                        "Laying Plans",
                        (
                            "Sun Tzu said: The art of war is of vital importance to the State.",
                            "It is a matter of life and death, a road either to safety or to "
                            "ruin. Hence it is a subject of inquiry which can on no account "
                            "be neglected.",
                        ),
                    ),
                    (
                        "waging-war",
                        "Waging War",
                        (
                            "Sun Tzu said: In the operations of war, where there are in the "
                            "field a thousand swift chariots, as many heavy chariots, and a "
                            "hundred thousand mail-clad soldiers, the expenditure at home and "
                            "at the front will reach the total of a thousand ounces of silver "
                            "per day.",
                        ),
                    ),
                ),
            ),
        ),
        UserBook(
            id=stable_id("userbook/meditations"),
            slug="meditations",
            title="Meditations",
            author="Marcus Aurelius",
            language="en",
            description="George Long's translation.",
            genre="Philosophy",
            published_year=1862,
            tags=("philosophy", "classics"),
            cover_path=None,
            added_days_ago=2,
            chapters=_chapters(
                "meditations",
                (
                    (
                        "book-one",
                        "Book One",
                        (
                            "From my grandfather Verus I learned good morals and the "
                            "government of my temper.",
                        ),
                    ),
                    (
                        "book-two",
                        "Book Two",
                        (
                            "Begin the morning by saying to thyself, I shall meet with the "
                            "busy-body, the ungrateful, arrogant, deceitful, envious, "
                            "unsocial.",
                        ),
                    ),
                ),
            ),
        ),
    )


USER: dict[str, object] = {
    "id": stable_id("user/ada"),
    "email": "ada.reader@example.com",
    "name": "Ada Reader",
    "picture": "https://textstack.app/avatars/ada.png",
    "isGuest": False,
    "nativeLanguage": "de",
}

SAMPLE_IDS: dict[str, str] = {
    "user": stable_id("user/ada"),
    **{e.slug: e.id for e in editions()},
    **{b.slug: b.id for b in user_books()},
    **{f"{e.slug}/{c.slug}": c.id for e in editions() for c in e.chapters},
    **{f"{b.slug}/{c.slug}": c.id for b in user_books() for c in b.chapters},
}
"""Well-known ids: the user, each edition and upload by slug, each chapter as ``book/chapter``."""
