"""Start-up laziness: what ``import textstack_sdk`` and the ``textstack`` command load.

The timings are in ``benchmarks/startup.py``; these tests check module sets, which do
not depend on the machine: a heavy module creeping back into a start-up path fails here.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import textstack_sdk
from textstack_sdk import cli
from textstack_sdk.cli import _main

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "header.payload.signature-static"


# Lists the modules before importing json to print them.
_REPORT = "\nimport sys\n_seen = sorted(sys.modules)\nimport json\nprint(json.dumps(_seen))"


def _loaded(code: str, **env: str) -> set[str]:
    """Module names a fresh interpreter holds after running ``code``, beyond those it
    holds after ``pass`` (site and its .pth files import some on some versions)."""
    return _modules(code, **env) - _modules("pass")


def _modules(code: str, **env: str) -> set[str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), environ.get("PYTHONPATH", "")) if p
    )
    environ.pop("TEXTSTACK_MCP_TOKEN", None)
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code + _REPORT],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _tops(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_import_loads_only_the_version() -> None:
    loaded = _loaded("import textstack_sdk")
    ours = {n for n in loaded if n.startswith("textstack_sdk")}
    assert ours == {"textstack_sdk", "textstack_sdk._version"}
    assert not {"urllib3", "cryptography", "typing", "dataclasses"} & _tops(loaded)


def test_a_public_name_imports_its_module_on_first_use() -> None:
    loaded = _loaded("from textstack_sdk import TextStackError")
    assert "textstack_sdk._errors" in loaded
    assert "textstack_sdk._client" not in loaded
    assert "urllib3" not in _tops(loaded)


def test_lazy_names_are_the_real_objects_and_dir_is_exact() -> None:
    from textstack_sdk._client import TextStackApiClient
    from textstack_sdk._errors import TextStackError

    assert textstack_sdk.TextStackApiClient is TextStackApiClient
    assert textstack_sdk.TextStackError is TextStackError
    public = {n for n in dir(textstack_sdk) if not n.startswith("_")} - {"cli", "testing", "mcp"}
    assert public == set(textstack_sdk.__all__) - {"__version__"}
    with pytest.raises(AttributeError, match="no_such_name"):
        textstack_sdk.no_such_name  # noqa: B018


def test_a_manager_without_a_store_loads_no_store_module() -> None:
    code = (
        "from textstack_sdk import MemoryTokenCache, TokenManager\n"
        "TokenManager(cache=MemoryTokenCache(), api_url='http://127.0.0.1:1/api').close()"
    )
    loaded = _loaded(code, TEXTSTACK_TOKEN_STORE="")
    assert "textstack_sdk._redis_store" not in loaded
    assert not {"redis", "valkey", "cryptography"} & _tops(loaded)


def test_static_token_loads_no_http_crypto_parser_or_logging() -> None:
    code = "import sys\nfrom textstack_sdk.cli import main\nrc = main(['token'])"
    loaded = _loaded(code, TEXTSTACK_MCP_TOKEN=TOKEN)
    tops = _tops(loaded)
    assert not {"urllib3", "cryptography", "ssl", "http", "json", "argparse", "logging"} & tops
    assert not {n for n in loaded if n.startswith("textstack_sdk.") and "cli" not in n} - {
        "textstack_sdk._version"
    }


def test_help_loads_no_http_crypto_or_api_models() -> None:
    code = (
        "import contextlib, io\nfrom textstack_sdk.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])"
    )
    loaded = _loaded(code)
    assert not {"urllib3", "cryptography", "ssl", "http", "logging"} & _tops(loaded)
    assert not {"textstack_sdk._api_models", "textstack_sdk._models"} & loaded


@pytest.mark.parametrize(
    ("argv", "token"),
    [
        (["token"], TOKEN),
        (["token"], f"  {TOKEN}\n"),  # stripped the same way on both paths
        (["token"], ""),  # empty: not a static token; both paths want a sign-in
        (["token", "--no-browser"], TOKEN),  # options: the full path
    ],
)
def test_fast_path_answers_as_the_full_path_does(
    argv: list[str],
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TEXTSTACK_MCP_TOKEN", token)
    monkeypatch.setenv("TEXTSTACK_MCP_TOKEN_CACHE", str(tmp_path / "cache.json"))
    monkeypatch.setenv("TEXTSTACK_API_URL", "http://127.0.0.1:9/api")
    fast_code, fast = cli.main(argv), capsys.readouterr()
    full_code, full = _main.main(argv), capsys.readouterr()
    assert (fast_code, fast.out) == (full_code, full.out)
    if token.strip():
        assert (fast_code, fast.out) == (0, TOKEN + "\n")
    else:
        assert fast_code != 0 and fast.out == ""


def test_fast_path_on_a_closed_pipe_exits_1_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def fileno(self) -> int:
            return self.target

    out = Closed()
    read_end, write_end = os.pipe()
    out.target = write_end  # type: ignore[attr-defined]
    monkeypatch.setenv("TEXTSTACK_MCP_TOKEN", TOKEN)
    monkeypatch.setattr(sys, "stdout", out)
    try:
        assert cli.main(["token"]) == 1
    finally:
        os.close(read_end)
        os.close(write_end)
