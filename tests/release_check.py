"""The package as users get it: sdist and wheel built, checked, installed alone, run.

Not part of the default test run (it builds in isolated environments and installs from
the package index, which takes tens of seconds): ``tox -e docs`` runs it, and so CI does.
Run by hand with ``pytest tests/release_check.py`` after ``pip install -e '.[release,test]'``.

The build works on a copy of the checkout's files, so the checkout gains no
``*.egg-info`` or ``build/`` folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import textstack_sdk

REPO = Path(__file__).resolve().parents[1]
BIN = "Scripts" if os.name == "nt" else "bin"


def _run(*argv: object, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _copy_sources(target: Path) -> None:
    """The checkout's files (tracked and new, not ignored) under ``target``."""
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("build", "twine"):
        if importlib.util.find_spec(tool) is None:
            pytest.fail(f"{tool} is not installed: pip install -e '.[release]'")
    work = tmp_path_factory.mktemp("release")
    source, out = work / "source", work / "dist"
    source.mkdir()
    _copy_sources(source)
    _run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, source, cwd=work)
    return out


@pytest.mark.timeout(300)
def test_twine_accepts_the_sdist_and_the_wheel(dist: Path) -> None:
    files = sorted(dist.iterdir())
    version = textstack_sdk.__version__
    assert [f.name for f in files] == [
        f"textstack_sdk-{version}-py3-none-any.whl",
        f"textstack_sdk-{version}.tar.gz",
    ]
    out = _run(sys.executable, "-m", "twine", "check", "--strict", *files, cwd=dist)
    assert out.count("PASSED") == 2, out


@pytest.mark.timeout(300)
def test_the_wheel_holds_py_typed_and_no_tests(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "textstack_sdk/py.typed" in names
    assert "textstack_sdk/testing/_server.py" in names  # the public test kit ships
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"textstack_sdk", f"textstack_sdk-{textstack_sdk.__version__}.dist-info"}
    assert not [n for n in names if "/tests/" in n or Path(n).name.startswith("test_")]
    metadata = (
        zipfile.ZipFile(wheel)
        .read(f"textstack_sdk-{textstack_sdk.__version__}.dist-info/METADATA")
        .decode()
    )
    assert "pip install textstack-sdk" in metadata  # the README is the long description
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        assert any(n.endswith("/CHANGELOG.md") for n in archive.getnames())


@pytest.mark.timeout(300)
def test_the_wheel_alone_in_a_fresh_venv_runs_the_demo(dist: Path, tmp_path: Path) -> None:
    [wheel] = dist.glob("*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / BIN / "python"
    # The server extra brings cryptography, which the demo's local server needs.
    _run(python, "-m", "pip", "install", "-q", f"{wheel}[server]", cwd=tmp_path)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEXTSTACK_", "PYTHON", "VIRTUAL_ENV")) and k != "XDG_CONFIG_HOME"
    }
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    where = _run(
        python, "-c", "import textstack_sdk; print(textstack_sdk.__file__)", cwd=tmp_path, env=env
    )
    assert Path(where.strip()).is_relative_to(venv), where  # not the checkout
    out = _run(venv / BIN / "textstack", "demo", cwd=tmp_path, env=env, timeout=120)
    assert "Demo finished" in out, out
    assert not (tmp_path / "config" / "textstack").exists()  # the demo's cache was temporary
