"""TextStackApiClient: auth logic and request building over MockTransport, then every
method over real sockets against FakeTextStackServer."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Iterator, Optional
from urllib.parse import parse_qsl, urlsplit

import pytest

from textstack_sdk._api_models import (
    AskAnswer,
    Book,
    Chapter,
    ChapterReview,
    Highlight,
    Insight,
    MyBookDetail,
    MyBookProgress,
    MyChapter,
    Progress,
    SearchResults,
    Shelves,
    VocabularyPage,
)
from textstack_sdk._client import DEFAULT_HIGHLIGHT_COLOR, InvalidArgument, TextStackApiClient
from textstack_sdk._errors import (
    ApiError,
    AuthorizationRequired,
    ConfigurationError,
    FieldError,
    ProtocolError,
    TextStackError,
    TransportError,
)
from textstack_sdk._http import Request, Response
from textstack_sdk._models import Authorized, Failed, Pending, TokenResult
from textstack_sdk._providers import StaticTokenProvider
from textstack_sdk.testing import FakeTextStackServer, MockTransport

API = "https://api.example.test/api"
HOST = "textstack.app"
E1 = "9969ec9b-4b5c-5a83-a5d1-afb52e6eba54"
JSON_HEADERS = {"content-type": "application/json"}


# ------------------------------------------------------------------ helpers


class Provider:
    """A scripted token provider that records calls. Thread-safe enough for the tests."""

    def __init__(self, *results: TokenResult) -> None:
        self.results: list[TokenResult] = list(results)
        self.calls = 0
        self.invalidated: list[str] = []
        self.closed = False

    def get_token(self) -> TokenResult:
        self.calls += 1
        return self.results[0]

    def invalidate(self, access_token: str) -> None:
        self.invalidated.append(access_token)
        current = self.results[0]
        if (
            isinstance(current, Authorized)
            and current.access_token == access_token
            and len(self.results) > 1
        ):
            self.results.pop(0)

    def close(self) -> None:
        self.closed = True


def _constant(response: Response) -> Callable[[Request], Response]:
    return lambda request: response


def ok(payload: Any = None, status: int = 200) -> Response:
    body = b"" if payload is None else json.dumps(payload).encode()
    return Response(status, dict(JSON_HEADERS), body)


def make(
    handler: Callable[[Request], Response],
    provider: Any = None,
    api_url: str = API,
) -> tuple[TextStackApiClient, MockTransport]:
    transport = MockTransport(handler)
    client = TextStackApiClient(
        api_url,
        site_host=HOST,
        token_provider=provider if provider is not None else Provider(Authorized("tok-1")),
        transport=transport,
        environ={},
    )
    return client, transport


def bearer(request: Request) -> Optional[str]:
    return request.header("Authorization")


BOOK = {"id": E1, "slug": "pride-and-prejudice", "title": "P&P"}
HIGHLIGHT = {"id": "h1", "chapterId": "c1", "color": "yellow", "selectedText": "x"}
INSIGHT = {"id": "i1", "text": "t"}
REVIEW = {"review": "r", "chapterSlug": "c"}


def answer_for(request: Request) -> Response:
    """A plausible 200 for any route, so every method can run over MockTransport."""
    route = request.route
    table: dict[str, Any] = {
        "GET /search": {"total": 0, "items": []},
        "GET /books/{slug}": BOOK,
        "GET /books/{slug}/chapters/{chapterSlug}": {"slug": "c", "html": "<p/>"},
        "POST /books/{editionId}/ask": {"answer": "a", "citations": []},
        "GET /me/highlights/{editionId}": [HIGHLIGHT],
        "POST /me/highlights": HIGHLIGHT,
        "GET /me/vocabulary/words": {"total": 0, "items": []},
        "GET /me/library/search": [],
        "GET /me/books": [],
        "GET /me/books/{bookId}": {"id": "b1"},
        "GET /me/books/{bookId}/chapters/{chapterSlug}": {"id": "c", "slug": "c", "html": ""},
        "GET /me/highlights/userbook/{bookId}": [],
        "GET /me/insights": [INSIGHT],
        "POST /me/insights": INSIGHT,
        "GET /me/library/shelves": {},
        "GET /me/progress/{editionId}": {"editionId": E1},
        "GET /me/books/{bookId}/progress": {"locator": "p:1"},
        "GET /me/chapter-review": REVIEW,
        "PUT /me/chapter-review": REVIEW,
    }
    if route in table:
        return ok(table[route])
    return Response(204, {}, b"")


# Every user-scoped method with arguments that make a valid request.
USER_CALLS: list[tuple[str, Callable[[TextStackApiClient], Any]]] = [
    ("ask_book", lambda c: c.ask_book(E1, "why?")),
    ("list_my_highlights", lambda c: c.list_my_highlights(E1)),
    ("save_highlight", lambda c: c.save_highlight(E1, "c1", "text")),
    ("list_my_vocabulary", lambda c: c.list_my_vocabulary()),
    ("search_my_library", lambda c: c.search_my_library("q")),
    ("list_my_books", lambda c: c.list_my_books()),
    ("get_my_book", lambda c: c.get_my_book("b1")),
    ("get_my_chapter", lambda c: c.get_my_chapter("b1", "c1")),
    ("list_my_book_highlights", lambda c: c.list_my_book_highlights("b1")),
    ("save_my_highlight", lambda c: c.save_my_highlight("b1", "uc1", "text")),
    ("get_my_insights", lambda c: c.get_my_insights(edition_id=E1)),
    ("save_insight", lambda c: c.save_insight("t", edition_id=E1)),
    ("get_shelves", lambda c: c.get_shelves()),
    ("get_progress", lambda c: c.get_progress(E1)),
    ("set_progress", lambda c: c.set_progress(E1, "c1", "loc", 10)),
    ("get_my_book_progress", lambda c: c.get_my_book_progress("b1")),
    ("set_my_book_progress", lambda c: c.set_my_book_progress("b1", "loc")),
    ("get_chapter_review", lambda c: c.get_chapter_review("c1", edition_id=E1)),
    ("save_chapter_review", lambda c: c.save_chapter_review("c1", "r", book_id="b1")),
]
PUBLIC_CALLS: list[tuple[str, Callable[[TextStackApiClient], Any]]] = [
    ("search_books", lambda c: c.search_books("q")),
    ("get_book", lambda c: c.get_book("s")),
    ("get_chapter", lambda c: c.get_chapter("s", "c")),
]
USER_IDS = [name for name, _ in USER_CALLS]


# ------------------------------------------------------------------ auth over MockTransport


@pytest.mark.parametrize(("name", "call"), USER_CALLS, ids=USER_IDS)
def test_failed_token_sends_nothing(name: str, call: Callable[[TextStackApiClient], Any]) -> None:
    client, transport = make(answer_for, Provider(Failed("no TEXTSTACK_MCP_TOKEN configured")))
    with pytest.raises(AuthorizationRequired) as info:
        call(client)
    assert str(info.value) == "authentication required — no TEXTSTACK_MCP_TOKEN configured"
    assert info.value.reason == "no TEXTSTACK_MCP_TOKEN configured"
    assert info.value.user_code is None
    assert transport.requests == []


@pytest.mark.parametrize(("name", "call"), USER_CALLS, ids=USER_IDS)
def test_pending_token_raises_contract_message_and_sends_nothing(
    name: str, call: Callable[[TextStackApiClient], Any]
) -> None:
    pending = Pending(
        "https://textstack.app/device", "WDJB-MQXR", "https://textstack.app/device?code=WDJB-MQXR"
    )
    client, transport = make(answer_for, Provider(pending))
    with pytest.raises(AuthorizationRequired) as info:
        call(client)
    err = info.value
    assert str(err) == (
        "authentication required — open https://textstack.app/device and enter code "
        "WDJB-MQXR to connect TextStack, then retry."
    )
    assert err.verification_uri == "https://textstack.app/device"
    assert err.user_code == "WDJB-MQXR"
    assert err.verification_uri_complete == "https://textstack.app/device?code=WDJB-MQXR"
    assert transport.requests == []


@pytest.mark.parametrize(("name", "call"), USER_CALLS, ids=USER_IDS)
def test_user_routes_carry_bearer(name: str, call: Callable[[TextStackApiClient], Any]) -> None:
    client, transport = make(answer_for)
    call(client)
    (request,) = transport.requests
    assert bearer(request) == "Bearer tok-1"
    assert request.header("Host") == HOST


@pytest.mark.parametrize(("name", "call"), PUBLIC_CALLS, ids=[n for n, _ in PUBLIC_CALLS])
def test_public_routes_never_carry_authorization(
    name: str, call: Callable[[TextStackApiClient], Any]
) -> None:
    provider = Provider(Failed("nope"))
    client, transport = make(answer_for, provider)
    call(client)
    (request,) = transport.requests
    assert bearer(request) is None
    assert provider.calls == 0
    assert request.header("Host") == HOST
    assert request.header("Accept") == "application/json"


def _401_then(ok_route: Callable[[Request], Response]) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        if bearer(request) == "Bearer tok-1":
            return Response(401, {"www-authenticate": "Bearer"}, b"")
        return ok_route(request)

    return handler


@pytest.mark.parametrize(("name", "call"), USER_CALLS, ids=USER_IDS)
def test_401_invalidates_refreshes_and_replays_once(
    name: str, call: Callable[[TextStackApiClient], Any]
) -> None:
    provider = Provider(Authorized("tok-1"), Authorized("tok-2"))
    client, transport = make(_401_then(answer_for), provider)
    call(client)
    first, second = transport.requests
    assert provider.invalidated == ["tok-1"]
    assert bearer(first) == "Bearer tok-1" and bearer(second) == "Bearer tok-2"
    assert (first.method, first.url, first.body) == (second.method, second.url, second.body)


def test_second_401_is_authorization_required() -> None:
    provider = Provider(Authorized("tok-1"), Authorized("tok-2"), Authorized("tok-3"))
    client, transport = make(lambda r: Response(401, {}, b""), provider)
    with pytest.raises(AuthorizationRequired) as info:
        client.save_highlight(E1, "c1", "text")
    assert len(transport.requests) == 2
    assert provider.invalidated == ["tok-1", "tok-2"]
    assert "HTTP 401" in str(info.value)
    assert "tok-" not in str(info.value) and "tok-" not in repr(info.value)


def test_401_without_a_new_token_is_authorization_required_after_one_request() -> None:
    client, transport = make(lambda r: Response(401, {}, b""), StaticTokenProvider("tok-1"))
    with pytest.raises(AuthorizationRequired) as info:
        client.list_my_books()
    assert len(transport.requests) == 1
    assert str(info.value).startswith("authentication required — ")


def test_401_then_pending_surfaces_the_login() -> None:
    pending = Pending("https://textstack.app/device", "ABCD-EFGH")
    provider = Provider(Authorized("tok-1"), pending)
    client, transport = make(lambda r: Response(401, {}, b""), provider)
    with pytest.raises(AuthorizationRequired) as info:
        client.list_my_books()
    assert info.value.user_code == "ABCD-EFGH"
    assert len(transport.requests) == 1


def test_401_on_a_public_route_is_an_api_error() -> None:
    provider = Provider(Authorized("tok-1"))
    client, _ = make(lambda r: Response(401, {}, b""), provider)
    with pytest.raises(ApiError) as info:
        client.get_book("s")
    assert info.value.status == 401
    assert provider.invalidated == [] and provider.calls == 0


@pytest.mark.parametrize(
    "failure",
    [
        lambda r: ok({"error": "forbidden", "message": "Not allowed."}, 403),
        lambda r: ok({"message": "boom"}, 500),
        lambda r: Response(503, {}, b""),
    ],
    ids=["403", "500", "503"],
)
def test_403_and_5xx_never_invalidate(failure: Callable[[Request], Response]) -> None:
    provider = Provider(Authorized("tok-1"), Authorized("tok-2"))
    client, transport = make(failure, provider)
    with pytest.raises(ApiError):
        client.get_my_book("b1")
    assert provider.invalidated == []
    assert len(transport.requests) == 1


def test_network_error_never_invalidates() -> None:
    def handler(request: Request) -> Response:
        raise TransportError("connection reset", route=request.route)

    provider = Provider(Authorized("tok-1"), Authorized("tok-2"))
    client, _ = make(handler, provider)
    with pytest.raises(TransportError):
        client.save_insight("t", edition_id=E1)
    assert provider.invalidated == []


@pytest.mark.parametrize("token", ["tok\r\nX-Evil: 1", "tok en", "", "ä"])
def test_unsafe_token_is_never_sent(token: str) -> None:
    client, transport = make(answer_for, Provider(Authorized(token)))
    with pytest.raises(AuthorizationRequired) as info:
        client.list_my_books()
    assert transport.requests == []
    if token:
        assert token not in str(info.value)


def test_provider_returning_garbage_is_authorization_required() -> None:
    class Weird:
        def get_token(self) -> Any:
            return "tok"

    client, transport = make(answer_for, Weird())
    with pytest.raises(AuthorizationRequired):
        client.list_my_books()
    assert transport.requests == []


# ------------------------------------------------------------------ request building


def test_paths_join_under_the_base_prefix() -> None:
    for base in ("https://h.example/prefix/api", "https://h.example/prefix/api/"):
        client, transport = make(answer_for, api_url=base)
        client.get_book("moby-dick")
        assert transport.requests[0].url == "https://h.example/prefix/api/books/moby-dick"


@pytest.mark.parametrize(
    ("slug", "encoded"),
    [
        ("../me/books", "..%2Fme%2Fbooks"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a?b#c", "a%3Fb%23c"),
        ("50%", "50%25"),
        ("ünï code", "%C3%BCn%C3%AF%20code"),
        ("a/b", "a%2Fb"),
    ],
)
def test_path_segments_cannot_change_the_route(slug: str, encoded: str) -> None:
    client, transport = make(answer_for)
    client.get_chapter(slug, slug)
    client.get_my_book(slug)
    first, second = transport.requests
    assert first.url == f"{API}/books/{encoded}/chapters/{encoded}"
    assert second.url == f"{API}/me/books/{encoded}"
    assert first.route == "GET /books/{slug}/chapters/{chapterSlug}"


@pytest.mark.parametrize("bad", ["", "   ", None, 5])
def test_empty_or_wrong_path_values_are_refused_before_sending(bad: Any) -> None:
    client, transport = make(answer_for)
    with pytest.raises(InvalidArgument):
        client.get_book(bad)
    with pytest.raises(InvalidArgument):
        client.get_my_book(bad)
    assert transport.requests == []


def test_query_strings_omit_unset_params_and_encode_values() -> None:
    client, transport = make(answer_for)
    client.list_my_vocabulary()
    client.list_my_vocabulary(stage="new", offset=0)
    client.list_my_vocabulary(stage="new", search="a&b=c", limit=5, offset=10)
    client.search_books("truth & lies?", limit=3)
    client.search_books("x")
    client.search_my_library("war", tags=["strategy", "classic"])
    client.get_chapter_review("c 1", book_id="b1", part=2)
    urls = [r.url for r in transport.requests]
    assert urls[0] == f"{API}/me/vocabulary/words"
    assert urls[1] == f"{API}/me/vocabulary/words?stage=new&offset=0"
    query = dict(parse_qsl(urlsplit(urls[2]).query))
    assert query == {"stage": "new", "search": "a&b=c", "limit": "5", "offset": "10"}
    assert dict(parse_qsl(urlsplit(urls[3]).query)) == {"q": "truth & lies?", "limit": "3"}
    assert urls[4] == f"{API}/search?q=x"
    assert dict(parse_qsl(urlsplit(urls[5]).query)) == {"q": "war", "tags": "strategy,classic"}
    assert dict(parse_qsl(urlsplit(urls[6]).query)) == {
        "userBookId": "b1",
        "chapterSlug": "c 1",
        "part": "2",
    }


def test_request_metadata() -> None:
    client, transport = make(answer_for)
    client.get_my_book("b1")
    client.save_insight("t", edition_id=E1)
    client.set_progress(E1, "c1", "loc")
    get, post, put = transport.requests
    assert (get.method, get.retry_safe, get.route) == ("GET", True, "GET /me/books/{bookId}")
    assert (post.method, post.retry_safe, post.route) == ("POST", False, "POST /me/insights")
    assert (put.method, put.retry_safe) == ("PUT", False)
    assert get.timeout == 15.0
    assert get.header("Content-Type") is None and get.body is None
    assert post.header("Content-Type") == "application/json"
    for request in (get, post, put):
        hosts = [v for k, v in request.headers if k.lower() == "host"]
        assert hosts == [HOST]
        assert request.header("Accept") == "application/json"


def test_write_bodies_are_camel_case_and_progress_is_book_percent() -> None:
    client, transport = make(answer_for)
    client.save_highlight(E1, "c1", "sel", note_text="n", anchor_json={"start": 1})
    client.save_my_highlight("b1", "uc1", "sel", color="green")
    client.set_progress(E1, "c1", "epubcfi(/6/2)", 45)
    client.set_progress(E1, "c1", "epubcfi(/6/2)")
    client.set_my_book_progress("b1", "p:2", chapter_slug="c1", percent=30.5, locator_kind="para")
    client.save_insight("t", book_id="b1", chapter_slug="c1", question="q")
    client.save_insight("t", edition_id=E1)
    client.ask_book(E1, "why?", k=3)
    client.ask_book(E1, "why?")
    client.save_chapter_review("c1", {"summary": "s"}, edition_id=E1)
    bodies = [json.loads(r.body or b"") for r in transport.requests]
    assert bodies[0] == {
        "editionId": E1,
        "chapterId": "c1",
        "anchorJson": '{"start":1}',
        "color": DEFAULT_HIGHLIGHT_COLOR,
        "selectedText": "sel",
        "noteText": "n",
    }
    assert bodies[1] == {
        "userBookId": "b1",
        "userChapterId": "uc1",
        # No anchor given: the selection is quoted (the server requires an anchor).
        "anchorJson": '{"type":"TextQuoteSelector","exact":"sel","source":"sdk"}',
        "color": "green",
        "selectedText": "sel",
        "noteText": None,
    }
    assert bodies[2] == {
        "chapterId": "c1",
        "locator": "epubcfi(/6/2)",
        "percent": 45.0,
        "percentUnit": "book",
    }
    assert bodies[3] == {"chapterId": "c1", "locator": "epubcfi(/6/2)", "percentUnit": "book"}
    assert bodies[4] == {
        "chapterSlug": "c1",
        "locator": "p:2",
        "percent": 30.5,
        "percentUnit": "book",
        "locatorKind": "para",
    }
    assert bodies[5] == {"userBookId": "b1", "chapterSlug": "c1", "text": "t", "question": "q"}
    assert bodies[6] == {"editionId": E1, "chapterSlug": None, "text": "t", "question": None}
    assert bodies[7] == {"question": "why?", "k": 3}
    assert bodies[8] == {"question": "why?"}
    assert bodies[9] == {"editionId": E1, "chapterSlug": "c1", "review": {"summary": "s"}}
    assert transport.requests[2].url == f"{API}/me/progress/{E1}"
    assert transport.requests[4].url == f"{API}/me/books/b1/progress"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_my_insights(),
        lambda c: c.get_my_insights(edition_id=E1, book_id="b1"),
        lambda c: c.save_insight("t"),
        lambda c: c.save_insight("t", edition_id=E1, book_id="b1"),
        lambda c: c.get_chapter_review("c1"),
        lambda c: c.save_chapter_review("c1", "r", edition_id=E1, book_id="b1"),
        lambda c: c.set_progress(E1, "c1", "loc", percent=101),
        lambda c: c.set_progress(E1, "c1", "loc", percent=float("nan")),
        lambda c: c.set_progress(E1, "c1", "loc", percent=True),
        lambda c: c.ask_book(E1, "q", k=0),
        lambda c: c.search_books("q", limit=True),
        lambda c: c.search_books(None),
        lambda c: c.list_my_vocabulary(offset=-1),
        lambda c: c.search_my_library("q", tags=[1, 2]),
        lambda c: c.save_chapter_review("c1", {1, 2}, edition_id=E1),
        lambda c: c.save_highlight(E1, "", "text"),
    ],
)
def test_invalid_arguments_are_refused_before_sending(call: Callable[[Any], Any]) -> None:
    client, transport = make(answer_for)
    with pytest.raises(InvalidArgument) as info:
        call(client)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TextStackError)
    assert transport.requests == []


# ------------------------------------------------------------------ answers over MockTransport


NONE_ON_404: list[tuple[str, Callable[[TextStackApiClient], Any]]] = [
    ("get_book", lambda c: c.get_book("s")),
    ("get_chapter", lambda c: c.get_chapter("s", "c")),
    ("get_my_book", lambda c: c.get_my_book("b")),
    ("get_my_chapter", lambda c: c.get_my_chapter("b", "c")),
    ("list_my_book_highlights", lambda c: c.list_my_book_highlights("b")),
    ("get_my_insights", lambda c: c.get_my_insights(book_id="b")),
    ("get_progress", lambda c: c.get_progress(E1)),
    ("get_my_book_progress", lambda c: c.get_my_book_progress("b")),
]


@pytest.mark.parametrize(("name", "call"), NONE_ON_404, ids=[n for n, _ in NONE_ON_404])
def test_404_is_none_where_the_contract_says(
    name: str, call: Callable[[TextStackApiClient], Any]
) -> None:
    for response in (
        ok({"error": "not_found", "message": "Book was not found."}, 404),
        Response(404, {}, b""),
    ):
        client, _ = make(_constant(response))
        assert call(client) is None
    html = Response(404, {"content-type": "text/html"}, b"<html><h1>Not Found</h1></html>")
    client, _ = make(lambda r: html)
    with pytest.raises(ApiError) as info:
        call(client)
    assert info.value.status == 404 and "Not Found" in info.value.message


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.list_my_books(),
        lambda c: c.search_books("q"),
        lambda c: c.get_shelves(),
        lambda c: c.list_my_vocabulary(),
        lambda c: c.ask_book(E1, "q"),
        lambda c: c.get_chapter_review("c", edition_id=E1),
    ],
)
def test_404_raises_elsewhere(call: Callable[[TextStackApiClient], Any]) -> None:
    client, _ = make(lambda r: ok({"error": "not_found", "message": "Edition was not found."}, 404))
    with pytest.raises(ApiError) as info:
        call(client)
    assert info.value.status == 404
    assert info.value.message == "Edition was not found."
    assert info.value.error == "not_found"


def test_server_failure_is_never_an_empty_result() -> None:
    client, _ = make(lambda r: ok({"message": "database down"}, 500))
    with pytest.raises(ApiError) as info:
        client.list_my_books()
    assert info.value.status == 500 and info.value.retryable
    assert info.value.route == "GET /me/books"
    assert "database down" in str(info.value)


def test_redirect_returned_by_the_transport_is_an_api_error() -> None:
    client, _ = make(lambda r: Response(302, {"location": "https://elsewhere.example/x"}, b""))
    with pytest.raises(ApiError) as info:
        client.get_book("s")
    assert info.value.status == 302
    assert "redirect" in info.value.message


def test_html_200_is_a_protocol_error_with_a_snippet() -> None:
    page = b"<!doctype html><html><body><p>Please enable JavaScript</p></body></html>"
    client, _ = make(lambda r: Response(200, {"content-type": "text/html"}, page))
    with pytest.raises(ProtocolError) as info:
        client.search_books("q")
    assert "Please enable JavaScript" in str(info.value)
    assert "<p>" not in str(info.value)
    assert info.value.route == "GET /search"


def test_wrong_shape_200_is_a_protocol_error_naming_route_and_field() -> None:
    client, _ = make(lambda r: ok([{"title": "no id"}]))
    with pytest.raises(ProtocolError) as info:
        client.list_my_books()
    assert "GET /me/books" in str(info.value) and "'[0].id'" in str(info.value)
    client, _ = make(lambda r: ok(None))
    with pytest.raises(ProtocolError):
        client.get_book("s")  # an empty 200 is not a book
    client, _ = make(lambda r: Response(200, {}, b"null"))
    with pytest.raises(ProtocolError):
        client.get_shelves()


def test_writes_with_empty_2xx_return_none() -> None:
    client, _ = make(lambda r: Response(204, {}, b""))
    assert client.save_highlight(E1, "c1", "t") is None
    assert client.save_insight("t", edition_id=E1) is None
    assert client.save_chapter_review("c", "r", edition_id=E1) is None
    client.set_progress(E1, "c1", "loc")
    client.set_my_book_progress("b", "loc")
    with pytest.raises(ProtocolError):
        client.ask_book(E1, "q")  # a read: no answer is a broken contract


def test_set_progress_failure_raises() -> None:
    client, _ = make(
        lambda r: ok(
            {
                "error": "validation_failed",
                "message": "'percent' must be 0 to 100.",
                "errors": [{"path": "percent", "code": "range", "message": "0 to 100"}],
            },
            400,
        )
    )
    with pytest.raises(ApiError) as info:
        client.set_progress(E1, "c1", "loc")
    assert info.value.errors == (FieldError("percent", "range", "0 to 100"),)


def test_typed_results_from_mock() -> None:
    client, _ = make(answer_for)
    book = client.get_book("s")
    assert isinstance(book, Book) and book.title == "P&P"
    highlights = client.list_my_highlights(E1)
    assert isinstance(highlights, tuple) and isinstance(highlights[0], Highlight)
    assert client.list_my_books() == ()


# ------------------------------------------------------------------ construction


def test_settings_from_environment() -> None:
    env = {
        "TEXTSTACK_API_URL": "http://127.0.0.1:9/api/",
        "TEXTSTACK_SITE_HOST": "reader.example",
        "TEXTSTACK_MCP_TIMEOUT_SECONDS": "2.5",
        "TEXTSTACK_MCP_TOKEN": "env-token",
    }
    with TextStackApiClient(environ=env) as client:
        assert client.api_url == "http://127.0.0.1:9/api"
        assert client.site_host == "reader.example"
        assert client.timeout == 2.5
        assert isinstance(client.token_provider, StaticTokenProvider)
        assert repr(client) == (
            "TextStackApiClient(api_url='http://127.0.0.1:9/api', site_host='reader.example')"
        )
        assert "env-token" not in repr(client)
    with TextStackApiClient.from_env({"TEXTSTACK_MCP_TOKEN": "t"}) as client:
        assert client.api_url == "https://textstack.app/api"
        assert client.site_host == "textstack.app"
        assert client.timeout == 15.0


@pytest.mark.parametrize("value", ["abc", "0", "-1", "601", "nan", "inf"])
def test_bad_timeout_variable_is_named(value: str) -> None:
    env = {"TEXTSTACK_MCP_TIMEOUT_SECONDS": value, "TEXTSTACK_MCP_TOKEN": "t"}
    with pytest.raises(ConfigurationError) as info:
        TextStackApiClient(environ=env, transport=MockTransport(answer_for))
    assert "TEXTSTACK_MCP_TIMEOUT_SECONDS" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"api_url": "http://api.example.com/api"}, "http"),
        ({"api_url": "ftp://x/api"}, ""),
        ({"api_url": "https://user:pw@x.example/api"}, ""),
        ({"api_url": "not a url"}, ""),
        ({"site_host": "https://textstack.app"}, "site host"),
        ({"site_host": "textstack.app:443"}, "site host"),
        ({"site_host": "textstack.app\r\nX-Evil: 1"}, "site host"),
        ({"site_host": "text stack"}, "site host"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": 10_000}, "timeout"),
        ({"max_response_bytes": 0}, "max_response_bytes"),
        ({"token_provider": object()}, "get_token"),
        ({"user_agent": "a\r\nb"}, "user_agent"),
    ],
)
def test_bad_settings_are_configuration_errors(kwargs: dict[str, Any], needle: str) -> None:
    options: dict[str, Any] = {
        "token_provider": StaticTokenProvider("t"),
        "transport": MockTransport(answer_for),
        "environ": {},
    }
    options.update(kwargs)
    api_url = options.pop("api_url", API)
    with pytest.raises(ConfigurationError) as info:
        TextStackApiClient(api_url, **options)
    assert needle in str(info.value)


def test_close_closes_only_what_the_client_created() -> None:
    transport = MockTransport(answer_for)
    provider = Provider(Authorized("t"))
    client = TextStackApiClient(
        API, site_host=HOST, token_provider=provider, transport=transport, environ={}
    )
    client.close()
    client.close()
    assert not transport.closed and not provider.closed
    with pytest.raises(ConfigurationError):
        client.get_book("s")


def test_close_closes_a_created_transport_and_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[Provider] = []

    def fake_provider_from_env(environ: Any = None) -> Provider:
        created.append(Provider(Authorized("t")))
        return created[0]

    monkeypatch.setattr("textstack_sdk._providers.provider_from_env", fake_provider_from_env)
    with TextStackApiClient(API, site_host=HOST, environ={}) as client:
        transport = client._transport
    assert created[0].closed
    with pytest.raises(TransportError):
        transport.handle_request(Request("GET", API + "/books/x", route="GET /books/{slug}"))


def test_debug_log_has_route_and_status_but_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    provider = Provider(Authorized("tok-1"), Authorized("tok-2"))
    client, _ = make(_401_then(answer_for), provider)
    with caplog.at_level(logging.DEBUG, logger="textstack_sdk.client"):
        client.list_my_books()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /me/books -> 401" in text and "GET /me/books -> 200" in text
    assert "tok-" not in text and "Bearer" not in text


def test_concurrent_calls_share_one_client() -> None:
    barrier = threading.Barrier(8)
    client, transport = make(answer_for)
    results: list[Any] = []
    lock = threading.Lock()

    def work() -> None:
        barrier.wait()
        for _ in range(20):
            book = client.get_my_book("b1")
            with lock:
                results.append(book)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 160 and all(isinstance(r, MyBookDetail) for r in results)
    assert len(transport.requests) == 160


# ------------------------------------------------------------------ real sockets


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeTextStackServer) -> Iterator[TextStackApiClient]:
    provider = StaticTokenProvider(server.issue_tokens()[0])
    with TextStackApiClient(
        server.api_url, site_host=server.site_host, token_provider=provider, timeout=5, environ={}
    ) as api:
        yield api


def last(server: FakeTextStackServer) -> Any:
    return server.requests[-1]


def check_request(
    server: FakeTextStackServer,
    method: str,
    path: str,
    *,
    auth: bool,
    query: Optional[dict[str, str]] = None,
) -> Any:
    recorded = last(server)
    assert recorded.method == method
    assert recorded.path == "/api" + path
    assert dict(recorded.query) == (query or {})
    assert recorded.headers["host"] == server.site_host
    assert ("authorization" in recorded.headers) is auth
    if auth:
        assert recorded.headers["authorization"].startswith("Bearer ")
    return recorded


def test_public_catalog_over_sockets(server: FakeTextStackServer, client: Any) -> None:
    results = client.search_books("truth universally", limit=2)
    check_request(
        server, "GET", "/search", auth=False, query={"q": "truth universally", "limit": "2"}
    )
    assert isinstance(results, SearchResults) and results.total >= 1
    assert results.items[0].edition.slug == "pride-and-prejudice"
    assert len(results.items) <= 2

    book = client.get_book("pride-and-prejudice")
    check_request(server, "GET", "/books/pride-and-prejudice", auth=False)
    assert isinstance(book, Book) and book.id == server.sample_ids["pride-and-prejudice"]
    assert book.authors[0].name and book.chapters[0].slug == "chapter-1"

    chapter = client.get_chapter("pride-and-prejudice", "chapter-2")
    check_request(server, "GET", "/books/pride-and-prejudice/chapters/chapter-2", auth=False)
    assert isinstance(chapter, Chapter)
    assert chapter.prev is not None and chapter.prev.slug == "chapter-1"
    assert chapter.html

    assert client.get_book("no-such-book") is None
    assert client.get_chapter("pride-and-prejudice", "no-such-chapter") is None
    assert client.get_book("../me/books") is None
    assert check_request(server, "GET", "/books/..%2Fme%2Fbooks", auth=False).route == (
        "GET /books/{slug}"
    )
    assert client.get_book("..") is None
    assert check_request(server, "GET", "/books/%2E%2E", auth=False).route == "GET /books/{slug}"


def test_user_reads_over_sockets(server: FakeTextStackServer, client: Any) -> None:
    ids = server.sample_ids
    pride, war = ids["pride-and-prejudice"], ids["the-art-of-war"]

    answer = client.ask_book(pride, "What truth is universally acknowledged?", k=2)
    recorded = check_request(server, "POST", f"/books/{pride}/ask", auth=True)
    assert recorded.json() == {"question": "What truth is universally acknowledged?", "k": 2}
    assert recorded.headers["content-type"] == "application/json"
    assert isinstance(answer, AskAnswer) and answer.citations and not answer.insufficient

    highlights = client.list_my_highlights(pride)
    check_request(server, "GET", f"/me/highlights/{pride}", auth=True)
    assert highlights and highlights[0].created_at is not None
    assert highlights[0].created_at.tzinfo is not None

    vocab = client.list_my_vocabulary(stage="new", limit=1)
    check_request(
        server, "GET", "/me/vocabulary/words", auth=True, query={"stage": "new", "limit": "1"}
    )
    assert isinstance(vocab, VocabularyPage) and vocab.total == 2 and len(vocab.items) == 1
    assert vocab.items[0].stage == "new"
    assert client.list_my_vocabulary().total == 6
    check_request(server, "GET", "/me/vocabulary/words", auth=True)

    hits = client.search_my_library("war", tags="strategy")
    check_request(
        server, "GET", "/me/library/search", auth=True, query={"q": "war", "tags": "strategy"}
    )
    assert hits and hits[0].id == war

    books = client.list_my_books()
    check_request(server, "GET", "/me/books", auth=True)
    assert war in {b.id for b in books}

    detail = client.get_my_book(war)
    check_request(server, "GET", f"/me/books/{war}", auth=True)
    assert isinstance(detail, MyBookDetail) and detail.chapters

    chapter = client.get_my_chapter(war, "waging-war")
    check_request(server, "GET", f"/me/books/{war}/chapters/waging-war", auth=True)
    assert isinstance(chapter, MyChapter) and chapter.previous is not None
    assert chapter.previous.chapter_number == 1

    book_highlights = client.list_my_book_highlights(war)
    check_request(server, "GET", f"/me/highlights/userbook/{war}", auth=True)
    assert book_highlights and book_highlights[0].user_chapter_id

    insights = client.get_my_insights(edition_id=pride)
    check_request(server, "GET", "/me/insights", auth=True, query={"editionId": pride})
    assert insights and isinstance(insights[0], Insight)
    assert client.get_my_insights(book_id=war) == ()

    shelves = client.get_shelves()
    check_request(server, "GET", "/me/library/shelves", auth=True)
    assert isinstance(shelves, Shelves) and shelves.recently_added

    progress = client.get_progress(pride)
    check_request(server, "GET", f"/me/progress/{pride}", auth=True)
    assert isinstance(progress, Progress) and progress.percent == 45.0

    book_progress = client.get_my_book_progress(war)
    check_request(server, "GET", f"/me/books/{war}/progress", auth=True)
    assert isinstance(book_progress, MyBookProgress) and book_progress.locator == "p:2"

    review = client.get_chapter_review("chapter-1", edition_id=pride, part=1)
    check_request(
        server,
        "GET",
        "/me/chapter-review",
        auth=True,
        query={"editionId": pride, "chapterSlug": "chapter-1", "part": "1"},
    )
    assert isinstance(review, ChapterReview) and review.part == 1 and review.text


def test_not_found_and_not_yours_over_sockets(server: FakeTextStackServer, client: Any) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert client.get_my_book(unknown) is None
    assert client.get_my_chapter(unknown, "x") is None
    assert client.list_my_book_highlights(unknown) is None
    assert client.get_my_insights(book_id=unknown) is None
    assert client.get_progress(server.sample_ids["moby-dick"]) is None  # never opened
    assert client.get_my_book_progress(server.sample_ids["meditations"]) is None
    assert client.list_my_highlights(unknown) is None  # the contract: 404 means None


def test_writes_over_sockets(server: FakeTextStackServer, client: Any) -> None:
    ids = server.sample_ids
    pride, war = ids["pride-and-prejudice"], ids["the-art-of-war"]
    chapter_id = ids["pride-and-prejudice/chapter-2"]

    saved = client.save_highlight(pride, chapter_id, "a single man", note_text="n")
    recorded = check_request(server, "POST", "/me/highlights", auth=True)
    assert recorded.json() == {
        "editionId": pride,
        "chapterId": chapter_id,
        "anchorJson": '{"type":"TextQuoteSelector","exact":"a single man","source":"sdk"}',
        "color": "yellow",
        "selectedText": "a single man",
        "noteText": "n",
    }
    assert isinstance(saved, Highlight) and saved.chapter_id == chapter_id
    assert saved.id in {h.id for h in client.list_my_highlights(pride)}

    war_chapter = ids["the-art-of-war/waging-war"]
    mine = client.save_my_highlight(war, war_chapter, "cost of war", color="blue")
    recorded = check_request(server, "POST", "/me/highlights", auth=True)
    assert recorded.json()["userBookId"] == war and recorded.json()["userChapterId"] == war_chapter
    assert isinstance(mine, Highlight) and mine.user_chapter_id == war_chapter

    insight = client.save_insight(
        "Ironic.", edition_id=pride, chapter_slug="chapter-2", question="Tone?"
    )
    recorded = check_request(server, "POST", "/me/insights", auth=True)
    assert recorded.json() == {
        "editionId": pride,
        "chapterSlug": "chapter-2",
        "text": "Ironic.",
        "question": "Tone?",
    }
    assert isinstance(insight, Insight) and insight.chapter_number == 2
    whole = client.save_insight("Strategy.", book_id=war)
    assert isinstance(whole, Insight) and whole.chapter_slug is None and whole.user_book_id == war

    client.set_progress(pride, chapter_id, "epubcfi(/6/8)", 55)
    recorded = check_request(server, "PUT", f"/me/progress/{pride}", auth=True)
    assert recorded.json() == {
        "chapterId": chapter_id,
        "locator": "epubcfi(/6/8)",
        "percent": 55.0,
        "percentUnit": "book",
    }
    progress = client.get_progress(pride)
    assert progress is not None and progress.percent == 55.0  # kept: percentUnit was sent
    assert progress.locator == "epubcfi(/6/8)"

    client.set_my_book_progress(
        war, "p:9", chapter_slug="waging-war", percent=70, locator_kind="paragraph"
    )
    recorded = check_request(server, "PUT", f"/me/books/{war}/progress", auth=True)
    assert recorded.json() == {
        "chapterSlug": "waging-war",
        "locator": "p:9",
        "percent": 70.0,
        "percentUnit": "book",
        "locatorKind": "paragraph",
    }
    book_progress = client.get_my_book_progress(war)
    assert book_progress is not None and book_progress.percent == 70.0

    review = client.save_chapter_review("chapter-1", "A fine opening.", edition_id=pride)
    recorded = check_request(server, "PUT", "/me/chapter-review", auth=True)
    assert recorded.json() == {
        "editionId": pride,
        "chapterSlug": "chapter-1",
        "review": "A fine opening.",
    }
    assert isinstance(review, ChapterReview) and review.review == "A fine opening."
    again = client.get_chapter_review("chapter-1", edition_id=pride)
    assert again.review == "A fine opening." and again.updated_at is not None


def test_chapter_review_refusal_reaches_the_caller(
    server: FakeTextStackServer, client: Any
) -> None:
    pride = server.sample_ids["pride-and-prejudice"]
    with pytest.raises(ApiError) as info:
        client.save_chapter_review("chapter-1", "   ", edition_id=pride)
    err = info.value
    assert err.status == 400 and err.error == "validation_failed"
    assert err.message == "'review' must not be empty."
    assert err.errors == (FieldError("review", "required", "'review' must not be empty."),)
    assert "'review' must not be empty." in str(err)
    with pytest.raises(ApiError) as info:
        client.get_chapter_review("chapter-1", edition_id=pride, part=99)
    assert info.value.errors and info.value.errors[0].path == "part"
    assert "part" in info.value.message


def test_injected_failures_over_sockets(server: FakeTextStackServer, client: Any) -> None:
    server.inject("GET /me/books", status=500, json={"error": "internal", "message": "db down"})
    with pytest.raises(ApiError) as info:
        client.list_my_books()
    assert info.value.status == 500 and "db down" in info.value.message

    page = (
        "<html><head><title>502 Bad Gateway</title></head>"
        "<body><h1>502 Bad Gateway</h1></body></html>"
    )
    server.inject("GET /books/{slug}", status=502, body=page, content_type="text/html", times=10)
    with pytest.raises(ApiError) as info:
        client.get_book("moby-dick")
    assert info.value.status == 502 and "Bad Gateway" in info.value.message
    assert "<h1>" not in str(info.value)
    server.clear_faults()

    server.inject(
        "POST /me/insights", status=200, body="<html>oops</html>", content_type="text/html"
    )
    with pytest.raises(ProtocolError) as proto:
        client.save_insight("t", edition_id=server.sample_ids["moby-dick"])
    assert "oops" in str(proto.value)

    server.inject("GET /me/library/shelves", status=200, json=[])
    with pytest.raises(ProtocolError):
        client.get_shelves()


def test_401_refresh_and_replay_over_sockets(server: FakeTextStackServer) -> None:
    first, _ = server.issue_tokens()

    class Refreshing:
        def __init__(self) -> None:
            self.token = first
            self.invalidated: list[str] = []

        def get_token(self) -> TokenResult:
            return Authorized(self.token)

        def invalidate(self, access_token: str) -> None:
            self.invalidated.append(access_token)
            self.token = server.issue_tokens()[0]

    provider = Refreshing()
    with TextStackApiClient(
        server.api_url, site_host=server.site_host, token_provider=provider, environ={}
    ) as api:
        server.revoke_all()
        pride = server.sample_ids["pride-and-prejudice"]
        saved = api.save_insight("after refresh", edition_id=pride)
        assert isinstance(saved, Insight)
        assert provider.invalidated == [first]
        assert server.count("POST /me/insights") == 2

    with TextStackApiClient(
        server.api_url,
        site_host=server.site_host,
        token_provider=StaticTokenProvider(first),
        environ={},
    ) as static:
        server.reset_counters()
        with pytest.raises(AuthorizationRequired):
            static.list_my_books()
        assert server.count("GET /me/books") == 1


def test_no_token_sends_nothing_over_sockets(server: FakeTextStackServer) -> None:
    with TextStackApiClient(
        server.api_url,
        site_host=server.site_host,
        token_provider=StaticTokenProvider(None),
        environ={},
    ) as api:
        with pytest.raises(AuthorizationRequired) as info:
            api.list_my_books()
        assert str(info.value) == "authentication required — no TEXTSTACK_MCP_TOKEN configured"
        assert server.count("*") == 0
        assert api.get_book("moby-dick") is not None


def test_wrong_site_host_is_an_api_error(server: FakeTextStackServer) -> None:
    with TextStackApiClient(
        server.api_url,
        site_host="other.example",
        token_provider=StaticTokenProvider("t"),
        environ={},
    ) as api:
        with pytest.raises(ApiError) as info:
            api.get_book("moby-dick")
        assert info.value.status == 400 and info.value.error == "unknown_site"
