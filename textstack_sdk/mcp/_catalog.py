"""The tool catalog of ``textstack mcp``: TextStack's 18 tools as data, and dispatch.

The catalog is the .NET tool's (state B in shared/MCP_SERVER.md): the same names,
order, titles, input schemas and annotations, so an MCP host sees the same server.
Each record names its handler in ``_tools``; ``ToolCatalog.call`` checks the
arguments, then runs the upstream part inside one failure wrapper whose texts are
the .NET tool's:

==============================  ===============================================
the SDK raised                  the ``isError`` text
==============================  ===============================================
AuthorizationRequired           ``authentication required — ...`` (``str(e)``:
                                the sign-in prompt while a device flow is pending;
                                the .NET 401 text when the API refused the token,
                                and .NET's text when no device flow could start)
TransportError (a timeout)      ``<tool> failed: upstream timed out``
TransportError, ProtocolError   ``<tool> failed: upstream unavailable``
ApiError                        ``<tool> failed: upstream answered <status>``
anything else                   ``<tool> failed: unexpected error``
==============================  ===============================================

No text carries a URL, a traceback or exception text.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .._errors import (
    ApiError,
    AuthorizationRequired,
    ProtocolError,
    TextStackError,
    TransportError,
)
from ._args import ABSENT, COLORS, Args, ArgumentRefused
from ._render import wire_safe
from ._tools import HANDLERS, CallCancelled, Handler, Reply, Upstream

if TYPE_CHECKING:
    from .._client import TextStackApiClient

__all__ = ["ABSENT", "TOOLS", "Tool", "ToolCatalog", "UnknownTool"]

_log = logging.getLogger("textstack_sdk.mcp")


class UnknownTool(TextStackError):
    """``tools/call`` named a tool the catalog does not have.

    ``str(e)`` is the .NET tool's text, ``Unknown tool '<name>'.``.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown tool '{name}'.")
        self.name = name


@dataclass(frozen=True)
class Tool:
    """One catalog record. Immutable; thread-safe.

    ``read_only``, ``destructive`` and ``idempotent`` are the .NET descriptor's flags;
    the listed hints are derived from them as the .NET tool derives them.
    """

    name: str
    title: str
    description: str
    properties: tuple[tuple[str, dict[str, Any]], ...]
    required: tuple[str, ...] = ()
    read_only: bool = True
    destructive: bool = False
    idempotent: bool = False

    @property
    def argument_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.properties)

    def listing(self) -> dict[str, Any]:
        """The tool as ``tools/list`` shows it."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": {
                "type": "object",
                "properties": {name: copy.deepcopy(schema) for name, schema in self.properties},
                "required": list(self.required),
                "additionalProperties": False,
            },
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.read_only,
                "destructiveHint": not self.read_only and self.destructive,
                "idempotentHint": self.read_only or self.idempotent,
                "openWorldHint": False,
            },
        }


def _text(minimum: Optional[int] = None, maximum: Optional[int] = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if minimum is not None:
        schema["minLength"] = minimum
    if maximum is not None:
        schema["maxLength"] = maximum
    return schema


def _int(minimum: int, maximum: Optional[int] = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


_UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
_COLOR: dict[str, Any] = {"type": "string", "enum": list(COLORS)}
_SLUG = _text(1, 300)
_EITHER_BOOK = (("bookId", _UUID), ("editionId", _UUID))

# The server validates a review; this schema tells the model the shape it will accept.
_REVIEW = _obj(
    {
        "recall": _text(maximum=3000),
        "blocks": {
            "type": "array",
            "minItems": 3,
            "maxItems": 6,
            "items": _obj(
                {
                    "title": _text(1, 120),
                    "problem": _text(1, 1200),
                    "rootCause": _text(1, 300),
                    "rule": _text(1, 300),
                    "highlightIds": {"type": "array", "maxItems": 20, "items": _UUID},
                    "question": _obj(
                        {"prompt": _text(1, 500), "answer": _text(1, 1500)},
                        ["prompt", "answer"],
                    ),
                },
                ["title", "problem", "rootCause", "rule", "highlightIds", "question"],
            ),
        },
        "applications": {
            "type": "array",
            "minItems": 1,
            "maxItems": 5,
            "items": _text(1, 400),
        },
        "openThreads": {
            "type": "array",
            "maxItems": 10,
            "items": _obj({"text": _text(1, 300)}, ["text"]),
        },
        "closedThreadIds": {"type": "array", "maxItems": 20, "items": _text(maximum=20)},
    },
    ["blocks", "applications"],
)

_SIGNED_IN = " Needs the person to be signed in to TextStack."

TOOLS: tuple[Tool, ...] = (
    Tool(
        "search_books",
        "Search the catalog",
        "Full-text search of TextStack's public catalog (the shared library of published "
        "books), returning matching chapters with a snippet. It does not search the books "
        "the person uploaded: use search_my_library for those.",
        (("query", _text(2, 200)), ("limit", _int(1, 50))),
        ("query",),
    ),
    Tool(
        "get_book",
        "Get a catalog book",
        "A catalog book by its slug: its editionId, metadata, authors, genres and chapter "
        "list (each chapter with its chapterId and slug).",
        (("slug", _SLUG),),
        ("slug",),
    ),
    Tool(
        "get_chapter",
        "Read a catalog chapter",
        "One chapter of a catalog book as plain text (HTML stripped, length-capped), with "
        "its number, title and the slugs of the previous and next chapters.",
        (("slug", _SLUG), ("chapterSlug", _SLUG)),
        ("slug", "chapterSlug"),
    ),
    Tool(
        "search_my_library",
        "Search my uploaded books",
        "Full-text search of the books the person UPLOADED (their private library, not the "
        "public catalog). Each hit gives a bookId, title, author, the best-matching chapter "
        "slug and an excerpt; pass the bookId to get_my_book or get_my_chapter. A bookId is "
        "not an editionId: list_my_highlights does not take it." + _SIGNED_IN,
        (("query", _text(2, 200)), ("tags", _text(maximum=200))),
        ("query",),
    ),
    Tool(
        "get_my_book",
        "Get one of my uploaded books",
        "One of the person's uploaded books by bookId: its metadata and full chapter list. "
        "A chapter's slug goes to get_my_chapter, its chapterId to save_my_highlight." + _SIGNED_IN,
        (("bookId", _UUID),),
        ("bookId",),
    ),
    Tool(
        "get_my_chapter",
        "Read a chapter of my uploaded book",
        "One chapter of an uploaded book as plain text (HTML stripped, length-capped), with "
        "its chapterId (what save_my_highlight needs), number, title and previous/next slugs."
        + _SIGNED_IN,
        (("bookId", _UUID), ("chapterSlug", _SLUG)),
        ("bookId", "chapterSlug"),
    ),
    Tool(
        "list_my_highlights",
        "List my highlights",
        "The person's highlights in one catalog edition, by editionId." + _SIGNED_IN,
        (("editionId", _UUID),),
        ("editionId",),
    ),
    Tool(
        "list_my_vocabulary",
        "List my vocabulary",
        "The person's saved vocabulary words, optionally filtered by SRS stage or a search "
        "text, a page at a time." + _SIGNED_IN,
        (
            ("stage", _int(0, 4)),
            ("search", _text(maximum=100)),
            ("limit", _int(1, 100)),
            ("offset", _int(0)),
        ),
    ),
    Tool(
        "save_highlight",
        "Save a highlight",
        "Saves a highlight in a catalog book's chapter to the person's account (a write). "
        "Pass the editionId and chapterId (from get_book), the exact selected text, and "
        "optionally a color and a note; list_my_highlights lists it afterwards." + _SIGNED_IN,
        (
            ("editionId", _UUID),
            ("chapterId", _UUID),
            ("selectedText", _text(1, 5000)),
            ("color", _COLOR),
            ("noteText", _text(maximum=2000)),
        ),
        ("editionId", "chapterId", "selectedText"),
        read_only=False,
    ),
    Tool(
        "save_my_highlight",
        "Save a highlight in my uploaded book",
        "Highlights a passage in one of the person's uploaded books (a write). Pass the "
        "bookId, the chapterId of the passage's chapter (from get_my_book or get_my_chapter) "
        "and the passage quoted verbatim: it is matched against the chapter text. Optionally "
        "a color and a note. On a book get_my_book reports as rendersAsOriginalPdf the "
        "highlight is saved and listed but not drawn over the page. Highlight what is worth "
        "coming back to: there is a hard limit of 200 per book." + _SIGNED_IN,
        (
            ("bookId", _UUID),
            ("chapterId", _UUID),
            ("selectedText", _text(1, 5000)),
            ("color", _COLOR),
            ("noteText", _text(maximum=2000)),
        ),
        ("bookId", "chapterId", "selectedText"),
        read_only=False,
    ),
    Tool(
        "list_my_book_highlights",
        "List highlights in my uploaded book",
        "The highlights already saved in one of the person's uploaded books, by bookId; "
        "check them before highlighting. For a catalog book use list_my_highlights with its "
        "editionId." + _SIGNED_IN,
        (("bookId", _UUID),),
        ("bookId",),
    ),
    Tool(
        "save_insight",
        "Save an insight",
        "Writes a conclusion back into a book so the reader finds it there later (a write). "
        "Give either bookId (an uploaded book) or editionId (a catalog book); pass "
        "chapterSlug for a conclusion about one chapter and leave it out for the whole "
        "book. `text` is Markdown; `question` records what was being worked out. Saving "
        "again for the same place replaces the earlier insight. A chapter with a structured "
        "review is changed with save_chapter_review instead." + _SIGNED_IN,
        (
            ("bookId", _UUID),
            ("editionId", _UUID),
            ("chapterSlug", _text(maximum=300)),
            ("text", _text(1, 20000)),
            ("question", _text(maximum=1000)),
        ),
        ("text",),
        read_only=False,
        destructive=True,
        idempotent=True,
    ),
    Tool(
        "get_my_insights",
        "Get my insights",
        "Everything already worked out about a book and saved with save_insight, in "
        "reading order. Give either bookId (an uploaded book) or editionId (a catalog "
        "book). Call it first when resuming work on a book the person discussed before."
        + _SIGNED_IN,
        _EITHER_BOOK,
    ),
    Tool(
        "get_my_reading",
        "Get my reading shelf",
        "What the person is reading now and recently finished, with how far in they are, "
        "plus every uploaded book. Takes no arguments: call it first when you have no "
        'bookId or editionId yet. `source` "userbook" is an upload (use its bookId with '
        'the _my_ tools); "savedbook" is a catalog book (its slug for get_book and '
        "get_chapter, its editionId for the insight tools). `chapterSlug` is where they "
        "stopped." + _SIGNED_IN,
        (),
    ),
    Tool(
        "get_book_progress",
        "Get book progress",
        "How far the person has read in one book and the chapter they stopped in. Give "
        "either bookId (an uploaded book) or editionId (a catalog book). Ask before "
        "discussing a book, so as not to spoil what they have not reached; a book never "
        "opened says so." + _SIGNED_IN,
        _EITHER_BOOK,
    ),
    Tool(
        "set_book_progress",
        "Mark a chapter finished",
        "Records that the person FINISHED a chapter, also one read elsewhere (paper, an "
        "audiobook). Give either bookId (an uploaded book) or slug (a catalog book), and "
        "the chapterSlug finished. The app then resumes at the start of the next chapter, "
        "progress becomes chapters finished over chapters in total, and finishing the last "
        "chapter completes the book. Only when the person says they finished: it replaces "
        "the position their reader stored." + _SIGNED_IN,
        (("bookId", _UUID), ("slug", _SLUG), ("chapterSlug", _SLUG)),
        ("chapterSlug",),
        read_only=False,
        destructive=True,
        idempotent=True,
    ),
    Tool(
        "get_chapter_review",
        "Get a chapter review",
        "Starts a chapter review in one call: give either bookId (an uploaded book) or "
        "editionId (a catalog book), plus chapterSlug. Returns the method to follow, the "
        "chapter text, the person's highlights and words from it, open threads from earlier "
        "chapters and any earlier review of it. A chapter in several parts is read with "
        "part = 2, 3, ... before writing. Save the review with save_chapter_review, and "
        "use nothing from later chapters." + _SIGNED_IN,
        (*_EITHER_BOOK, ("chapterSlug", _SLUG), ("part", _int(1, 20))),
        ("chapterSlug",),
    ),
    Tool(
        "save_chapter_review",
        "Save a chapter review",
        "Saves a finished chapter review (a write), for the same book and chapter ids as "
        "get_chapter_review. `review` follows the method get_chapter_review returned: 3 to "
        "6 blocks, each with a problem, a one-line rootCause, a rule, the ids of the "
        "person's highlights it covers (never invented) and one question with its answer; "
        "plus applications and threads. Saving again replaces the chapter's review. A "
        "refusal lists every problem: fix them all and save again." + _SIGNED_IN,
        (*_EITHER_BOOK, ("chapterSlug", _SLUG), ("review", _REVIEW)),
        ("chapterSlug", "review"),
        read_only=False,
        destructive=True,
        idempotent=True,
    ),
)
"""The catalog, in the order ``tools/list`` shows it."""


def _result(reply: Reply) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": wire_safe(reply.text)}],
        "isError": reply.is_error,
    }


# What the .NET tool answers when the API said 401 (McpUnauthorizedException's text).
UNAUTHORIZED = "authentication required — Unauthorized: no valid TextStack token."
# The client's reasons for a token the API answered 401 to (TextStackApiClient._request).
_REJECTED_BY_API = "(HTTP 401)"
# The .NET device-flow provider's reason when its device-code request fails, and the
# start of the TokenManager's reasons for the same (the cause follows it).
DEVICE_START_FAILED = (
    "authentication required — could not reach TextStack to start device authorization"
)
_START_FAILED = "could not start sign-in"


def _failure(tool: str, exc: BaseException) -> str:
    if isinstance(exc, AuthorizationRequired):
        if exc.verification_uri is None and exc.reason.endswith(_REJECTED_BY_API):
            return UNAUTHORIZED
        if exc.verification_uri is None and exc.reason.startswith(_START_FAILED):
            return DEVICE_START_FAILED
        return str(exc)
    if isinstance(exc, TransportError):
        timed_out = "timed out" in exc.message
        return f"{tool} failed: upstream {'timed out' if timed_out else 'unavailable'}"
    if isinstance(exc, ProtocolError):
        return f"{tool} failed: upstream unavailable"
    if isinstance(exc, ApiError):
        return f"{tool} failed: upstream answered {exc.status}"
    return f"{tool} failed: unexpected error"


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    if tb is None:
        return "an unknown place"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


class ToolCatalog:
    """TextStack's MCP tools over one API client. Thread-safe: calls share nothing mutable.

    Args:
        client: The client every tool calls; its token provider decides sign-in.
    """

    def __init__(self, client: TextStackApiClient) -> None:
        self._client = client
        self._tools = {tool.name: (tool, HANDLERS[tool.name]) for tool in TOOLS}
        # Kept as JSON text: decoding it is the cheapest way to hand out a fresh copy.
        self._listing = json.dumps([tool.listing() for tool in TOOLS], ensure_ascii=False)

    def list_tools(self) -> list[dict[str, Any]]:
        """The ``tools`` of a ``tools/list`` result, in catalog order (a fresh copy)."""
        tools: list[dict[str, Any]] = json.loads(self._listing)
        return tools

    def call(self, name: str, arguments: Any, cancel: threading.Event) -> dict[str, Any]:
        """Runs one tool call and returns its ``CallToolResult``.

        Tool-level failures (refused arguments, sign-in needed, upstream failures) are
        ``isError`` results, never exceptions. Nothing is sent once ``cancel`` is set.

        Args:
            name: The tool's name.
            arguments: ``params.arguments`` as parsed JSON, or ``ABSENT`` when the
                request has no ``arguments`` member (read as ``{}``). None is a JSON
                ``null``: refused with ``Arguments must be an object.``, as .NET does.
            cancel: Set by the caller to cancel; checked before each upstream request.

        Raises:
            UnknownTool: No tool has this name.
        """
        entry = self._tools.get(name) if isinstance(name, str) else None
        if entry is None:
            raise UnknownTool(str(name))
        tool, handler = entry
        return _result(self._run(tool, handler, arguments, cancel))

    def _run(
        self, tool: Tool, handler: Handler, arguments: object, cancel: threading.Event
    ) -> Reply:
        try:
            try:
                job = handler(Args(arguments, tool.argument_names))
            except ArgumentRefused as refused:
                return Reply(refused.text, is_error=True)
            return job(Upstream(self._client, cancel))
        except CallCancelled:
            return Reply(f"{tool.name} failed: cancelled", is_error=True)
        except Exception as exc:  # noqa: BLE001 - the wrapper turns every failure into a text
            # Reading the arguments is inside too: a defect there must not escape call()
            # as an exception (the protocol layer would answer a JSON-RPC error).
            text = _failure(tool.name, exc)
            if text.endswith("unexpected error"):
                # A mapping defect: the model gets the bare text; the log gets where it
                # happened, never the exception's text (it might quote a token).
                _log.warning("%s: unexpected %s at %s", tool.name, type(exc).__name__, _where(exc))
            return Reply(text, is_error=True)
