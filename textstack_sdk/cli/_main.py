"""The ``textstack`` command line (also ``python -m textstack_sdk``).

Commands: ``login``, ``status``, ``logout``, ``token``, ``dev-server``, ``demo``, and
read commands over the API (``search``, ``book``, ``chapter``, ``highlights``,
``vocabulary``, ``library``, ``books``, ``shelves``, ``insights``, ``progress``) that
print readable tables, or JSON with ``--json``.

Output discipline: stdout carries only results; prompts, progress, warnings and errors
go to stderr. Every server-provided string shown on a terminal is sanitised
(``_text.for_terminal``). No token is ever printed, except by ``textstack token`` on
stdout. An error is one line, ``textstack: error: ...``; ``--debug`` adds the traceback
and DEBUG logging of the SDK on stderr (the SDK never logs secrets).

Exit codes:
    0    success
    1    an API or other SDK error (TextStackError, ApiError), or not found
    2    usage error (bad arguments)
    3    authentication required, denied, expired or timed out
    4    network error (TransportError)
    5    configuration error (bad URL, host, timeout, cache path...)
    130  interrupted (Ctrl-C)

Settings come from the global options, else the environment (``TEXTSTACK_API_URL``,
``TEXTSTACK_SITE_HOST``, ``TEXTSTACK_MCP_TOKEN``, ``TEXTSTACK_MCP_TOKEN_CACHE``,
``TEXTSTACK_MCP_TIMEOUT_SECONDS``, ``XDG_CONFIG_HOME``). ``TEXTSTACK_MIN_POLL_INTERVAL``
(or the hidden ``--min-poll-interval``) lowers the sign-in poll floor below the
RFC 8628 default of 1 s, for tests and local servers only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any, Callable, Optional

from .._text import for_terminal
from . import _auth, _demo, _read
from ._context import EXIT_ERROR, EXIT_USAGE, Context, error_line, exit_code

__all__ = ["build_parser", "main"]

_EPILOG = """\
exit codes:
  0    success
  1    API or other SDK error, or not found
  2    usage error
  3    authentication required, denied, expired or timed out (run `textstack login`)
  4    network error
  5    configuration error
  130  interrupted

environment: TEXTSTACK_API_URL, TEXTSTACK_SITE_HOST, TEXTSTACK_MCP_TOKEN,
TEXTSTACK_MCP_TOKEN_CACHE, TEXTSTACK_MCP_TIMEOUT_SECONDS, XDG_CONFIG_HOME.
Results go to stdout; prompts, progress and errors to stderr.
"""


# ---------------------------------------------------------------- parser


def _globals(parser: argparse.ArgumentParser, *, sub: bool, timeout: bool = True) -> None:
    """Global options; on subcommands they default to SUPPRESS so either place works."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if sub else value

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--api-url", default=default(None), help="API base URL (env TEXTSTACK_API_URL)"
    )
    group.add_argument(
        "--site-host", default=default(None), help="Host header (env TEXTSTACK_SITE_HOST)"
    )
    if timeout:
        group.add_argument(
            "--timeout",
            type=float,
            default=default(None),
            help="seconds per request (env TEXTSTACK_MCP_TIMEOUT_SECONDS)",
        )
    group.add_argument(
        "--cache", default=default(None), metavar="PATH", help="token cache file to use"
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="show tracebacks and DEBUG logs on stderr",
    )
    group.add_argument(
        "--min-poll-interval", type=float, default=default(None), help=argparse.SUPPRESS
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``textstack``."""
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="textstack",
        description="TextStack from the command line: sign in, read, and try the SDK locally.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"textstack-sdk {__version__}")
    _globals(parser, sub=False)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[[Context], int], help_: str, **kw: Any) -> Any:
        sub = subs.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _globals(sub, sub=True, timeout=kw.get("timeout", True))
        sub.set_defaults(func=func)
        return sub

    _auth.register(add)
    _read.register(add)
    _demo.register(add)
    return parser


@contextlib.contextmanager
def _sdk_logging(debug: bool) -> Any:
    # Imported here, not at the top: ``--help`` never needs logging.
    import logging

    class _OneLine(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"textstack: {record.levelname.lower()}: {for_terminal(record.getMessage())}"

    logger = logging.getLogger("textstack_sdk")
    handler = logging.StreamHandler(sys.stderr)
    if debug:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(threadName)s: %(message)s")
        )
    else:
        handler.setFormatter(_OneLine())
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    # Without --debug only errors show, one line each: the error line says the rest.
    logger.setLevel(logging.DEBUG if debug else logging.ERROR)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


# ---------------------------------------------------------------- entry point


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``textstack`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    debug = bool(args.debug)
    ctx = Context(args, os.environ)
    with _sdk_logging(debug):
        try:
            try:
                return int(func(ctx))
            finally:
                ctx.close()
        except BrokenPipeError:
            # The reader went away (``| head``); say nothing more on a dead pipe.
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return EXIT_ERROR
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - one line per error
            if debug:
                import traceback

                traceback.print_exc(file=sys.stderr)
            Context.err(f"textstack: error: {error_line(exc)}")
            return exit_code(exc)
