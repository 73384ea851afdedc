"""Pure tests of the API result parsers: dicts in, frozen dataclasses or ProtocolError out."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

from textstack_sdk import _api_parse as P
from textstack_sdk._api_models import (
    AskAnswer,
    Author,
    Book,
    ChapterLink,
    Highlight,
    JsonObject,
    SearchResults,
)
from textstack_sdk._errors import ApiError, FieldError, ProtocolError

G1 = "3f1c2a9e-0000-4000-8000-000000000001"
G2 = "3f1c2a9e-0000-4000-8000-000000000002"
UTC = timezone.utc


def load(kind: Callable[[Any, str], Any], data: Any, route: str = "GET /x") -> Any:
    return P.parse(kind, data, route=route, status=200)


def protocol_error(kind: Callable[[Any, str], Any], data: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        load(kind, data, route="GET /route/{id}")
    assert info.value.status == 200
    assert info.value.route == "GET /route/{id}"
    assert "GET /route/{id}" in str(info.value)
    return info.value


# ------------------------------------------------------------------ timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T10:15:00Z", datetime(2026, 11, 28, 10, 15, tzinfo=UTC)),
        ("2026-11-28T10:15:00z", datetime(2026, 11, 28, 10, 15, tzinfo=UTC)),
        ("2026-11-28T10:15:00+00:00", datetime(2026, 11, 28, 10, 15, tzinfo=UTC)),
        (
            "2026-11-28T10:15:00.1234567+02:00",
            datetime(2026, 11, 28, 10, 15, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "2026-11-28T10:15:00.5-0530",
            datetime(
                2026, 11, 28, 10, 15, 0, 500000, tzinfo=timezone(-timedelta(hours=5, minutes=30))
            ),
        ),
        ("2026-11-28T10:15:00.123Z", datetime(2026, 11, 28, 10, 15, 0, 123000, tzinfo=UTC)),
        ("2026-11-28 10:15", datetime(2026, 11, 28, 10, 15, tzinfo=UTC)),
        ("2026-11-28T10:15:00", datetime(2026, 11, 28, 10, 15, tzinfo=UTC)),
        ("2026-11-28", datetime(2026, 11, 28, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_accepts_iso_variants(text: str, expected: datetime) -> None:
    parsed = P.parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()
    assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-28T25:00:00Z",
        "2026-11-28T10:15:00+24:00",
        "2026-11-28T10:15:00Zjunk",
        "1" * 100,
        "2026-11-28T10:15:00\n+00:00x",
    ],
)
def test_parse_timestamp_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        P.parse_timestamp(text)


def test_unparseable_timestamp_is_a_protocol_error_naming_the_field() -> None:
    err = protocol_error(P.highlight, {"id": G1, "createdAt": "last tuesday"})
    assert "createdAt" in err.message
    err = protocol_error(P.highlight, {"id": G1, "createdAt": 1700000000})
    assert "createdAt" in err.message


def test_timestamp_field_error_is_sanitised() -> None:
    err = protocol_error(P.highlight, {"id": G1, "createdAt": "\x1b[31mred\x1b[0m"})
    assert "\x1b" not in str(err)


# ------------------------------------------------------------------ wrong shapes


KINDS = [
    P.search_results,
    P.book,
    P.chapter,
    P.highlight,
    P.highlights,
    P.vocabulary_page,
    P.ask_answer,
    P.library_hits,
    P.my_books,
    P.my_book_detail,
    P.my_chapter,
    P.insight,
    P.insights,
    P.shelves,
    P.progress,
    P.my_book_progress,
    P.chapter_review,
    P.user,
]
LIST_KINDS = {P.highlights, P.library_hits, P.my_books, P.insights}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("value", [None, "x", 3, True, [], {}], ids=repr)
def test_wrong_json_type_is_a_protocol_error(kind: Any, value: Any) -> None:
    expects_list = kind in LIST_KINDS
    if (expects_list and value == []) or (not expects_list and value == {}):
        return  # the right container type; covered by the per-model tests
    err = protocol_error(kind, value)
    assert "response body" in err.message
    assert ("list" if expects_list else "object") in err.message


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        (P.book, {"slug": "s"}, "id"),
        (P.book, {"id": G1}, "slug"),
        (P.book, {"id": "", "slug": "s"}, "id"),
        (P.book, {"id": G1, "slug": "s", "chapters": [{"slug": "c"}]}, "chapters[0].id"),
        (P.book, {"id": G1, "slug": "s", "authors": [{"nom": "x"}]}, "authors[0].name"),
        (P.book, {"id": G1, "slug": "s", "chapters": {}}, "chapters"),
        (P.chapter, {"slug": "c"}, "html"),
        (P.chapter, {"slug": "c", "html": "", "prev": {"slug": 7}}, "prev.slug"),
        (P.chapter, {"slug": "c", "html": "", "next": "c2"}, "next"),
        (P.search_results, {"total": 1}, "items"),
        (
            P.search_results,
            {"total": 1, "items": [{"chapterId": G1, "chapterSlug": 3, "edition": {"id": G2}}]},
            "items[0].chapterSlug",
        ),
        (
            P.search_results,
            {"total": 1, "items": [{"chapterId": G1, "chapterSlug": "c", "edition": {}}]},
            "items[0].edition.id",
        ),
        (
            P.search_results,
            {"items": [{"chapterId": G1, "chapterSlug": "c"}]},
            "items[0].edition",
        ),
        (P.highlights, [{"id": G1}, {"color": "yellow"}], "[1].id"),
        (P.highlight, {"id": {"guid": G1}}, "id"),
        (P.vocabulary_page, {"items": [{"language": "en"}]}, "items[0].word"),
        (P.vocabulary_page, {"items": [{"word": "w", "stage": 1.5}]}, "items[0].stage"),
        (P.ask_answer, {"citations": []}, "answer"),
        (P.ask_answer, {"answer": "a", "insufficient": "no"}, "insufficient"),
        (
            P.ask_answer,
            {"answer": "a", "citations": [{"chapterOrd": "one"}]},
            "citations[0].chapterOrd",
        ),
        (P.library_hits, [{"title": "t"}], "[0].id"),
        (P.library_hits, [{"id": G1, "rank": "high"}], "[0].rank"),
        (P.my_books, [{"id": G1, "chapterCount": 2.5}], "[0].chapterCount"),
        (P.my_books, [{"id": G1, "progressPercent": True}], "[0].progressPercent"),
        (P.my_book_detail, {"title": "t"}, "id"),
        (P.my_book_detail, {"id": G1, "hasOriginalPdf": "yes"}, "hasOriginalPdf"),
        (P.my_chapter, {"slug": "c", "html": ""}, "id"),
        (
            P.my_chapter,
            {"id": G1, "slug": "c", "html": "", "previous": {"slug": []}},
            "previous.slug",
        ),
        (P.insights, [{"text": "t"}], "[0].id"),
        (P.shelves, {"continueReading": [{"title": "t"}]}, "continueReading[0].id"),
        (P.shelves, {"recentlyAdded": "none"}, "recentlyAdded"),
        (P.progress, {"percent": "45"}, "percent"),
        (P.progress, {"locator": 5}, "locator"),
        (P.my_book_progress, {"updatedAt": "soon"}, "updatedAt"),
        (P.user, {"email": "a@b"}, "id"),
    ],
)
def test_missing_or_mistyped_field_is_named(kind: Any, data: Any, field: str) -> None:
    err = protocol_error(kind, data)
    assert f"'{field}'" in err.message


def test_nan_and_infinity_are_not_numbers() -> None:
    err = protocol_error(P.progress, {"percent": float("nan")})
    assert "percent" in err.message
    err = protocol_error(P.library_hits, [{"id": G1, "rank": float("inf")}])
    assert "rank" in err.message


# ------------------------------------------------------------------ happy paths


def test_search_results() -> None:
    data = {
        "total": 7,
        "items": [
            {
                "chapterId": G1,
                "chapterSlug": "chapter-1",
                "chapterTitle": "Chapter 1",
                "chapterNumber": 1,
                "edition": {
                    "id": G2,
                    "slug": "pride-and-prejudice",
                    "title": "Pride and Prejudice",
                    "language": "en",
                    "authors": "Jane Austen",
                    "coverPath": "/covers/p.jpg",
                    "futureField": {"x": 1},
                },
                "highlights": ["a <b>truth</b>"],
                "score": 0.9,
            }
        ],
        "facets": [],
    }
    result = load(P.search_results, data)
    assert isinstance(result, SearchResults)
    assert result.total == 7
    hit = result.items[0]
    assert (hit.chapter_id, hit.chapter_slug, hit.chapter_title, hit.chapter_number) == (
        G1,
        "chapter-1",
        "Chapter 1",
        1,
    )
    assert hit.edition.id == G2
    assert hit.edition.authors == "Jane Austen"
    assert hit.edition.cover_path == "/covers/p.jpg"
    assert hit.highlights == ("a <b>truth</b>",)
    assert isinstance(result.items, tuple)


def test_search_edition_authors_as_list_is_joined() -> None:
    base = {"chapterId": G1, "chapterSlug": "c"}
    for authors in (["A", "B"], [{"name": "A"}, {"name": "B"}]):
        data = {"items": [dict(base, edition={"id": G2, "authors": authors})]}
        assert load(P.search_results, data).items[0].edition.authors == "A, B"


def test_search_total_defaults_to_item_count_and_rejects_negative() -> None:
    assert load(P.search_results, {"items": []}).total == 0
    err = protocol_error(P.search_results, {"total": -1, "items": []})
    assert "total" in err.message


def test_book_happy_and_minimal() -> None:
    data = {
        "id": G1,
        "slug": "moby-dick",
        "title": "Moby Dick",
        "language": "en",
        "description": "A whale.",
        "authors": [{"name": "Herman Melville", "born": 1819}],
        "genres": [{"name": "Adventure"}],
        "chapters": [
            {"id": G2, "chapterNumber": 1, "slug": "loomings", "title": "Loomings", "wordCount": 10}
        ],
    }
    b = load(P.book, data)
    assert isinstance(b, Book)
    assert b.authors == (Author("Herman Melville"),)
    assert b.genres[0].name == "Adventure"
    assert b.chapters[0].word_count == 10
    assert b.chapters[0].chapter_number == 1
    minimal = load(P.book, {"id": G1, "slug": "s"})
    assert minimal.title is None and minimal.chapters == () and minimal.authors == ()


def test_ids_are_strings_even_when_numeric() -> None:
    assert load(P.book, {"id": 42, "slug": "s"}).id == "42"
    assert load(P.highlight, {"id": G1, "chapterId": 7}).chapter_id == "7"


def test_integral_float_counts_as_integer() -> None:
    assert (
        load(
            P.book,
            {"id": G1, "slug": "s", "chapters": [{"id": G2, "slug": "c", "chapterNumber": 3.0}]},
        )
        .chapters[0]
        .chapter_number
        == 3
    )


def test_chapter_prev_next() -> None:
    c = load(
        P.chapter,
        {
            "chapterNumber": 2,
            "slug": "c2",
            "title": "Two",
            "html": "<p>x</p>",
            "prev": {"slug": "c1", "title": "One"},
            "next": None,
        },
    )
    assert c.prev == ChapterLink("c1", "One")
    assert c.next is None
    assert c.html == "<p>x</p>"


def test_highlight() -> None:
    h = load(
        P.highlight,
        {
            "id": G1,
            "chapterId": G2,
            "userChapterId": None,
            "color": "yellow",
            "selectedText": "It is a truth",
            "noteText": None,
            "createdAt": "2026-01-02T03:04:05.678+00:00",
            "anchorJson": "{}",
        },
    )
    assert isinstance(h, Highlight)
    assert h.created_at == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert h.user_chapter_id is None and h.note_text is None
    assert load(P.highlights, []) == ()
    assert load(P.highlights, [{"id": G1}, {"id": G2}])[1].id == G2


def test_vocabulary_page() -> None:
    page = load(
        P.vocabulary_page,
        {
            "total": 2,
            "items": [
                {
                    "word": "purse",
                    "language": "en",
                    "translation": "Geldbeutel",
                    "definition": "A bag.",
                    "stage": "new",
                    "bookTitle": "Moby Dick",
                    "nextReviewAt": None,
                },
                {"word": "fortune", "stage": 2, "nextReviewAt": "2026-01-01T00:00:00Z"},
            ],
        },
    )
    assert page.total == 2
    assert page.items[0].stage == "new" and page.items[0].book_title == "Moby Dick"
    assert page.items[1].stage == 2
    assert page.items[1].next_review_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_ask_answer() -> None:
    a = load(
        P.ask_answer,
        {
            "answer": "Because. [1]",
            "citations": [{"marker": "[1]", "chapterOrd": 3, "preview": "p"}],
            "lastReadOrd": 2,
            "insufficient": False,
        },
    )
    assert isinstance(a, AskAnswer)
    assert a.citations[0].marker == "[1]" and a.citations[0].chapter_ord == 3
    assert a.last_read_ord == 2 and a.insufficient is False
    assert load(P.ask_answer, {"answer": ""}).insufficient is False


def test_library_hits() -> None:
    hits = load(
        P.library_hits,
        [
            {
                "id": G1,
                "title": "T",
                "author": "A",
                "coverPath": None,
                "language": "en",
                "rank": 1,
                "excerpt": "…x…",
                "chapterSlug": "c",
            }
        ],
    )
    assert hits[0].rank == 1.0 and isinstance(hits[0].rank, float)
    assert hits[0].chapter_slug == "c"


def test_my_books_and_detail() -> None:
    books = load(
        P.my_books,
        [
            {
                "id": G1,
                "title": "War",
                "slug": "the-art-of-war",
                "author": "Sun Tzu",
                "status": "ready",
                "chapterCount": 13,
                "progressPercent": 30,
                "progressChapterSlug": "c1",
                "completedAt": None,
            }
        ],
    )
    assert books[0].chapter_count == 13 and books[0].progress_percent == 30.0
    detail = load(
        P.my_book_detail,
        {
            "id": G1,
            "title": "War",
            "publishedYear": 1910,
            "totalWordCount": 1000,
            "hasOriginalPdf": False,
            "genre": "Strategy",
            "chapters": [{"id": G2, "slug": "c1", "chapterNumber": 1}],
        },
    )
    assert detail.published_year == 1910 and detail.has_original_pdf is False
    assert detail.chapters[0].slug == "c1"


def test_my_chapter_uses_previous() -> None:
    c = load(
        P.my_chapter,
        {
            "id": G1,
            "chapterNumber": 2,
            "slug": "c2",
            "title": "Two",
            "html": "<p/>",
            "wordCount": 5,
            "previous": {"chapterNumber": 1, "slug": "c1", "title": "One"},
            "next": None,
            "prev": {"slug": "ignored"},
        },
    )
    assert c.previous == ChapterLink("c1", "One", 1)
    assert c.next is None and c.word_count == 5


def test_insights() -> None:
    items = load(
        P.insights,
        [
            {
                "id": G1,
                "editionId": G2,
                "userBookId": None,
                "chapterSlug": None,
                "chapterNumber": None,
                "chapterTitle": None,
                "text": "t",
                "question": "q",
                "source": "mcp",
                "createdAt": "2026-01-01T00:00:00Z",
                "updatedAt": "2026-01-02T00:00:00.0000000+00:00",
            }
        ],
    )
    i = items[0]
    assert i.edition_id == G2 and i.user_book_id is None and i.chapter_slug is None
    assert i.updated_at == datetime(2026, 1, 2, tzinfo=UTC)


def test_shelves() -> None:
    item = {
        "id": G1,
        "type": "userbook",
        "title": "T",
        "author": "A",
        "slug": "s",
        "progressPercent": 12.5,
        "lastOpenedAt": "2026-01-01T00:00:00Z",
        "chapterSlug": "c",
    }
    s = load(P.shelves, {"continueReading": [item], "recentlyAdded": [item, item]})
    assert s.continue_reading[0].type == "userbook"
    assert len(s.recently_added) == 2
    assert s.finished_this_month == ()


def test_progress_and_my_book_progress() -> None:
    p = load(
        P.progress,
        {
            "editionId": G1,
            "chapterId": G2,
            "chapterSlug": "c",
            "locator": "epubcfi(/6/6)",
            "percent": 45,
            "updatedAt": "2026-01-01T00:00:00+01:00",
            "completedAt": None,
        },
    )
    assert p.percent == 45.0 and p.locator == "epubcfi(/6/6)"
    assert p.updated_at == datetime(2025, 12, 31, 23, tzinfo=UTC)
    assert load(P.progress, {"locator": {"p": 2}}).locator == '{"p":2}'
    mp = load(P.my_book_progress, {"chapterSlug": "c", "locator": "p:2", "percent": 30.0})
    assert mp.chapter_slug == "c" and mp.updated_at is None


def test_user() -> None:
    u = load(
        P.user,
        {
            "id": G1,
            "email": "reader@example.com",
            "name": "Reader",
            "picture": None,
            "isGuest": False,
            "createdAt": "2025-01-01T00:00:00Z",
            "nativeLanguage": "de",
        },
    )
    assert u.is_guest is False and u.native_language == "de"


def test_empty_timestamp_string_is_none() -> None:
    assert load(P.highlight, {"id": G1, "createdAt": ""}).created_at is None


# ------------------------------------------------------------------ chapter review


def test_chapter_review_is_read_only_and_copyable() -> None:
    data = {
        "editionId": G1,
        "chapterSlug": "c1",
        "chapterNumber": 1,
        "part": 1,
        "totalParts": 3,
        "text": "words",
        "review": {"summary": "s", "points": ["a", {"b": 1}]},
        "reviewUpdatedAt": "2026-01-01T00:00:00Z",
        "extra": [1, 2],
    }
    r = load(P.chapter_review, data)
    assert r.part == 1 and r.total_parts == 3 and r.edition_id == G1 and r.text == "words"
    assert r.updated_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert not r.refused
    assert r["chapterSlug"] == "c1" and r.get("missing", 5) == 5
    assert isinstance(r.data, JsonObject)
    with pytest.raises(TypeError):
        r.data["x"] = 1  # type: ignore[index]
    assert r.review["points"][1]["b"] == 1
    assert isinstance(r.review["points"], tuple)
    # Deep copies are plain and mutable; the original stays as it was.
    plain = r.data.to_dict()
    plain["review"]["points"].append("c")
    assert len(r.review["points"]) == 2
    assert json.loads(json.dumps(dataclasses.asdict(r)["data"])) == data
    assert copy.deepcopy(r.data) == data
    assert r.data == data
    data["chapterSlug"] = "mutated"
    assert r["chapterSlug"] == "c1"


def test_chapter_review_well_known_fields_are_lenient() -> None:
    r = load(P.chapter_review, {"part": "one", "updatedAt": "never", "text": 5})
    assert r.part is None and r.updated_at is None and r.text is None


def test_chapter_review_refusal_fields() -> None:
    r = load(
        P.chapter_review,
        {
            "error": "review_not_ready",
            "message": "Read\x1b[2J the chapter first.",
            "errors": [{"path": "chapterSlug", "code": "unread", "message": "Not read yet."}],
        },
    )
    assert r.refused and r.error == "review_not_ready"
    assert r.message == "Read [2J the chapter first."
    assert r.errors == (FieldError("chapterSlug", "unread", "Not read yet."),)


# ------------------------------------------------------------------ frozen values


def test_results_are_frozen() -> None:
    b = load(P.book, {"id": G1, "slug": "s"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(b, "id", "other")  # noqa: B010 - a plain assignment would not type-check
    assert hash(b) == hash(load(P.book, {"id": G1, "slug": "s"}))


# ------------------------------------------------------------------ decode_json


def test_decode_json_ok_and_bom() -> None:
    assert P.decode_json(b'{"a":1}') == {"a": 1}
    assert P.decode_json(b'\xef\xbb\xbf{"a":1}') == {"a": 1}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "502 Bad Gateway"),
        (b"\xff\xfe\x00garbage", "UTF-8"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": 1', "expected a JSON body"),
        (b"[" * 100_000 + b"]" * 100_000, "expected a JSON body"),
    ],
)
def test_decode_json_failures_are_protocol_errors(body: bytes, needle: str) -> None:
    with pytest.raises(ProtocolError) as info:
        P.decode_json(body, route="GET /search", status=200, content_type="text/html")
    err = info.value
    assert err.status == 200 and err.route == "GET /search"
    assert needle in str(err)
    assert "<h1>" not in str(err)
    assert len(str(err)) < 400


# ------------------------------------------------------------------ api_error


def test_api_error_textstack_refusal_with_field_errors() -> None:
    body = json.dumps(
        {
            "error": "validation_failed",
            "message": "'review' must not be empty.",
            "errors": [
                {"path": "review", "code": "required", "message": "'review' must not be empty."},
                {"path": "chapterSlug", "code": "x", "message": "bad\x07slug"},
            ],
        }
    ).encode()
    err = P.api_error(400, {}, body, route="PUT /me/chapter-review")
    assert type(err) is ApiError
    assert err.status == 400 and err.error == "validation_failed"
    assert err.message == "'review' must not be empty."
    assert err.errors[0] == FieldError("review", "required", "'review' must not be empty.")
    assert err.errors[1].message == "bad slug"
    assert "chapterSlug: bad slug" in str(err)
    assert err.retryable is False


def test_api_error_problem_details() -> None:
    body = json.dumps(
        {
            "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
            "title": "One or more validation errors occurred.",
            "status": 400,
            "errors": {"Percent": ["The field Percent must be between 0 and 100."]},
        }
    ).encode()
    err = P.api_error(400, {"content-type": "application/problem+json"}, body)
    assert err.message == "One or more validation errors occurred."
    assert err.errors == (
        FieldError("Percent", "", "The field Percent must be between 0 and 100."),
    )
    body = json.dumps({"title": "Forbidden", "detail": "Not your book."}).encode()
    assert P.api_error(403, {}, body).message == "Not your book."


def test_api_error_error_code_only_and_empty_body() -> None:
    err = P.api_error(429, {}, b'{"error":"rate_limited"}')
    assert err.message == "rate_limited" and err.error == "rate_limited" and err.retryable
    err = P.api_error(503, {}, b"")
    assert err.message == "Service Unavailable" and err.retryable
    assert P.api_error(599, {}, b"").message == "unexpected status"


def test_api_error_html_snippet() -> None:
    page = b"<html><head><title>502</title></head><body><h1>Bad Gateway</h1>\x1b[0m" + b"x" * 5000
    err = P.api_error(502, {"content-type": "text/html"}, page, route="GET /books/{slug}")
    assert "Bad Gateway" in err.message
    assert "<h1>" not in err.message and "\x1b" not in err.message
    assert len(err.message) <= 200


def test_api_error_redirect() -> None:
    err = P.api_error(302, {"location": "https://evil.example/\r\nX: y"}, b"")
    assert err.status == 302 and "redirect" in err.message
    assert "\r" not in err.message and "\n" not in err.message


def test_api_error_bad_json_and_deep_json_fall_back_to_snippet() -> None:
    assert "oops" in P.api_error(500, {}, b"{oops").message
    deep = b"{" + b'"a":[' * 50_000
    assert P.api_error(500, {}, deep).status == 500


def test_field_errors_are_bounded() -> None:
    many = [{"path": str(i), "code": "c", "message": "m"} for i in range(1000)]
    assert len(P.field_errors(many)) == 50
    assert P.field_errors("nope") == ()
    assert P.field_errors([1, None, "plain"]) == (FieldError("", "", "plain"),)


def test_parsers_ignore_unknown_fields_everywhere() -> None:
    extra: dict[str, Any] = {"zzz": {"nested": [1, 2]}, "id2": None}
    assert load(P.user, dict(extra, id=G1)).id == G1
    assert load(P.progress, extra).edition_id is None


def test_deeply_nested_free_form_answer_is_a_protocol_error() -> None:
    nested: Any = "leaf"
    for _ in range(5000):
        nested = {"a": nested}
    err = protocol_error(P.chapter_review, {"review": nested})
    assert "nested too deeply" in err.message
