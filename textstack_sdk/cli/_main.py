"""The ``textstack`` command line (also ``python -m textstack_sdk``).

Commands: ``login``, ``status``, ``logout``, ``token``, ``dev-server``, ``demo``, ``mcp``
(an MCP stdio server for AI assistants; stdout is the protocol stream there), and
read commands over the API (``search``, ``book``, ``chapter``, ``highlights``,
``vocabulary``, ``library``, ``books``, ``shelves``, ``insights``, ``progress``) that
print readable tables, or JSON with ``--json``.

Output discipline: stdout carries only results; prompts, progress, warnings and errors
go to stderr. Every server-provided string shown on a terminal is sanitised
(``_text.for_terminal``). No token is ever printed, except by ``textstack token`` on
stdout. An error is one line, ``textstack: error: ...``; ``--debug`` adds the traceback
and DEBUG logging of the SDK on stderr (the SDK never logs secrets).

Exit codes: ``_context.EXIT_CODES`` (shown by ``textstack --help``).

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

from . import _auth, _cache, _demo, _mcp, _read
from ._context import (
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_USAGE,
    Context,
    UsageError,
    error_line,
    exit_code,
)

__all__ = ["build_parser", "exit_code_table", "main"]

_FOOTER = """\
environment:
  TEXTSTACK_API_URL              API base URL (--api-url)
  TEXTSTACK_SITE_HOST            Host header (--site-host)
  TEXTSTACK_MCP_TOKEN            a token to use instead of any sign-in
  TEXTSTACK_MCP_TOKEN_CACHE      token cache file (--cache); else
                                 $XDG_CONFIG_HOME/textstack/mcp-token.json
  TEXTSTACK_MCP_TIMEOUT_SECONDS  seconds per request (default 15)

Results go to stdout; prompts, progress, warnings and errors to stderr.
`textstack COMMAND --help` shows a command's options and examples.
"""


def exit_code_table() -> str:
    """The exit codes as shown in ``textstack --help`` (and checked against the README)."""
    return "exit codes:\n" + "".join(f"  {code:<4} {meaning}\n" for code, meaning in EXIT_CODES)


def _examples(pairs: Sequence[tuple[str, str]]) -> Optional[str]:
    if not pairs:
        return None
    return "examples:\n" + "".join(f"  # {what}\n  $ {line}\n" for what, line in pairs)


# ---------------------------------------------------------------- parser


_GLOBALS = ("api_url", "site_host", "timeout", "cache")


def _globals(
    parser: argparse.ArgumentParser, *, sub: bool, names: Sequence[str] = _GLOBALS
) -> None:
    """Global options; on subcommands they default to SUPPRESS so either place works.

    A command lists the ones that mean something for it in ``names``; ``--debug`` is
    always accepted.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if sub else value

    group = parser.add_argument_group("global options")
    if "api_url" in names:
        group.add_argument(
            "--api-url",
            default=default(None),
            metavar="URL",
            help="API base URL (env TEXTSTACK_API_URL; default https://textstack.app/api)",
        )
    if "site_host" in names:
        group.add_argument(
            "--site-host",
            default=default(None),
            metavar="HOST",
            help="Host header sent to the API (env TEXTSTACK_SITE_HOST; default textstack.app)",
        )
    if "timeout" in names:
        group.add_argument(
            "--timeout",
            type=float,
            default=default(None),
            metavar="S",
            help="give up after S seconds: on each request, and for login (and token "
            "--login) on the whole wait for approval (default: 15 s per request, env "
            "TEXTSTACK_MCP_TIMEOUT_SECONDS; login waits until the code expires)",
        )
    if "cache" in names:
        group.add_argument(
            "--cache",
            default=default(None),
            metavar="PATH",
            help="token cache file to use (env TEXTSTACK_MCP_TOKEN_CACHE)",
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


class _Unbuilt:
    """Stands for a command the command line does not name: whatever it is told, it
    ignores, so its options (most of ``--help``'s start-up) are never built."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return self._ignore

    def _ignore(self, *args: object, **kwargs: object) -> _Unbuilt:
        return self


_UNBUILT = _Unbuilt()


def build_parser(argv: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """The argument parser of ``textstack``.

    Args:
        argv: The command line it is for. Commands it does not name are listed (name and
            help) but get no options; None builds every command in full.
    """
    from .._version import __version__

    named = None if argv is None else frozenset(argv)

    parser = argparse.ArgumentParser(
        prog="textstack",
        description="TextStack from the command line: sign in, read, and try the SDK locally.",
        epilog=exit_code_table() + "\n" + _FOOTER,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"textstack-sdk {__version__}")
    _globals(parser, sub=False)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str,
        func: Callable[[Context], int],
        help_: str,
        *,
        examples: Sequence[tuple[str, str]] = (),
        options: Sequence[str] = _GLOBALS,
        under: Any = None,
    ) -> Any:
        # ``under``: the actions of a command group (``cache key``), which take the
        # global options too.
        if isinstance(under, _Unbuilt):
            return under
        if named is not None and name not in named:
            (subs if under is None else under).add_parser(name, help=help_, add_help=False)
            return _UNBUILT
        sub = (subs if under is None else under).add_parser(
            name,
            help=help_,
            description=help_,
            epilog=_examples(examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _globals(sub, sub=True, names=options)
        sub.set_defaults(func=func, ignores=tuple(g for g in _GLOBALS if g not in options))
        return sub

    _auth.register(add)
    _read.register(add)
    _demo.register(add)
    _mcp.register(add)
    _cache.register(add)
    return parser


def _check_ignored(args: argparse.Namespace) -> None:
    """A global option given before a command it means nothing for is a usage error."""
    for name in getattr(args, "ignores", ()):
        if getattr(args, name, None) is not None:
            option = "--" + name.replace("_", "-")
            raise UsageError(f"{option} means nothing for `textstack {args.command}`")


# ---------------------------------------------------------------- entry point


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``textstack`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
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
    from ._logging import sdk_logging

    with sdk_logging(debug):
        try:
            try:
                _check_ignored(args)
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
            line = error_line(exc, env_token=ctx.env_token() is not None)
            Context.err(f"textstack: error: {line}")
            return exit_code(exc)
