"""Every code example in the docs and the README runs against the local server.

``python`` blocks of ``docs/*.md``, ``docs/*.rst`` and ``README.md`` run in order, one
namespace per file (a later block may use an earlier block's names), in this process,
with the environment a signed-in user has: ``TEXTSTACK_API_URL`` at a
``FakeTextStackServer`` and a token cache holding a finished sign-in. ``console`` blocks
(``$ textstack ...`` lines) run the command line the same way and must exit 0. ``sh``
and ``text`` blocks are shown, not run (installs, servers that run until stopped).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

from textstack_sdk import FileTokenCache, TokenSet
from textstack_sdk._jwt import decode_exp
from textstack_sdk.testing import FakeTextStackServer

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
DEVICE_CODE = "POST /auth/device/code"
LOGGERS = ("textstack_sdk", *(f"textstack_sdk.{x}" for x in ("auth", "cache", "client", "http")))


class Block(NamedTuple):
    path: Path
    line: int  # 1-based line of the block's first code line
    language: str
    code: str


# A Markdown fence (the info string's first word is the language) up to the same fence.
_FENCE = re.compile(
    r"^(?P<fence>```+|~~~+)(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^(?P=fence)\s*$", re.M | re.S
)
# A reST code-block, its options, a blank line, then its indented (or blank) lines.
_RST = re.compile(
    r"^\.\. code-block:: (?P<lang>\w+)\n(?:[ \t]+:.*\n)*\n(?P<code>(?:[ \t]+.*\n|\n)+)", re.M
)


def blocks(path: Path) -> list[Block]:
    """The fenced (Markdown) or ``code-block`` (reST) examples of one file, in order."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in (_RST if path.suffix == ".rst" else _FENCE).finditer(text):
        code = match.group("code")
        if path.suffix == ".rst":
            lines = code.rstrip("\n").splitlines()
            indent = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
            code = "\n".join(x[indent:] for x in lines) + "\n"
        line = text.count("\n", 0, match.start("code")) + 1
        found.append(Block(path, line, match.group("lang"), code))
    return found


def sources() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("*.rst"))]


def runnable(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.language in ("python", "console")]


PAGES = [path for path in sources() if runnable(path)]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.05) as srv:
        yield srv


@pytest.fixture
def signed_in_env(
    server: FakeTextStackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """This process's environment as a signed-in user's, pointed at the local server."""
    cache = tmp_path / "textstack" / "mcp-token.json"
    access, refresh = server.issue_tokens()
    assert FileTokenCache(cache).save(TokenSet(access, refresh, decode_exp(access)))
    for key in list(os.environ):
        if key.startswith("TEXTSTACK_") or key == "XDG_CONFIG_HOME":
            monkeypatch.delenv(key)
    env = {
        "TEXTSTACK_API_URL": server.api_url,
        "TEXTSTACK_SITE_HOST": server.site_host,
        "TEXTSTACK_MCP_TOKEN_CACHE": str(cache),
        "TEXTSTACK_MCP_TIMEOUT_SECONDS": "5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # an example that writes a file leaves the checkout clean
    return env


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """The logging page configures logging, as its readers would; later tests get it back."""
    root = logging.getLogger()
    ours = [logging.getLogger(name) for name in LOGGERS]
    saved = (root.level, list(root.handlers), [(x.level, x.propagate) for x in ours])
    yield
    for handler in root.handlers:
        if handler not in saved[1]:
            root.removeHandler(handler)
    root.setLevel(saved[0])
    for logger, (level, propagate) in zip(ours, saved[2]):
        logger.setLevel(level)
        logger.propagate = propagate


# ---------------------------------------------------------------------------- tests


def test_the_docs_have_examples_to_run() -> None:
    """Guards the extraction: a regex that silently matched nothing would pass every page."""
    names = {path.name for path in PAGES}
    assert {"README.md", "getting-started.md", "sign-in.md", "cli.md", "testing.rst"} <= names
    assert sum(len(runnable(path)) for path in PAGES) >= 15


def _run_console(block: Block, env: dict[str, str]) -> None:
    commands = [x[2:] for x in block.code.splitlines() if x.startswith("$ ")]
    assert commands, f"{block.path.name}:{block.line}: a console block without a $ command"
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "textstack", f"{block.path.name}:{block.line}: only textstack runs"
        done = subprocess.run(
            [sys.executable, "-m", "textstack_sdk", *argv[1:]],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, f"{block.path.name}:{block.line}: $ {command}\n{done.stderr}"


def _serve_once(app: object) -> None:
    environ: dict[str, object] = {"QUERY_STRING": ""}
    setup_testing_defaults(environ)
    statuses: list[str] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> None:
        statuses.append(status)

    result = validator(app)(environ, start_response)  # type: ignore[arg-type]
    try:
        body = b"".join(result)
    finally:
        result.close()
    assert statuses == ["200 OK"], body
    assert body


@pytest.mark.timeout(120)
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_examples_run_against_the_local_server(
    page: Path, server: FakeTextStackServer, signed_in_env: dict[str, str]
) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_example_{page.stem}"}
    for block in runnable(page):
        if block.language == "console":
            _run_console(block, signed_in_env)
            continue
        code = compile(block.code, f"{page.relative_to(REPO)}:{block.line}", "exec")
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)
    if callable(namespace.get("app")):  # a WSGI example: serve one request through it
        _serve_once(namespace["app"])
    # The examples ran as the signed-in user: none had to start a sign-in.
    assert server.count(DEVICE_CODE) == 0


def test_the_reference_documents_every_public_name() -> None:
    """A name added to ``textstack_sdk.__all__`` needs its entry in docs/api.rst."""
    import textstack_sdk

    reference = (DOCS / "api.rst").read_text(encoding="utf-8")
    documented = set(
        re.findall(r"^\.\. auto(?:class|exception|function|data):: (\w+)", reference, re.M)
    )
    assert set(textstack_sdk.__all__) - documented == set()
    assert documented - set(textstack_sdk.__all__) == set()
