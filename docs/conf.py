"""Sphinx configuration for the textstack_sdk reference (``tox -e docs``).

Sphinx, not MkDocs: the package already writes Google-style docstrings, which autodoc and
napoleon render without a plugin chain, and Sphinx's ``-W --keep-going -n`` turns every
broken cross-reference into a failed build.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textstack_sdk import __version__  # noqa: E402

project = "textstack_sdk"
author = "TextStack"
copyright = "TextStack"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", ".tox", "README.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# Google-style docstrings; the class docstring's first line states thread-safety.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "separated"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Nitpicky: every cross-reference must resolve. The build has no network (no
# intersphinx), so names from the standard library and urllib3 are accepted as text.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(typing|collections\.abc|datetime|threading|pathlib|os|types|uuid)\..*"),
    (r"py:class", r"(Any|Optional|Union|Callable|Iterator|Iterable|Mapping|Sequence)"),
    (r"py:class", r"(str|int|float|bool|bytes|dict|list|tuple|object|None|type)"),
    (r"py:class", r"(Path|datetime|UUID|TracebackType|Event|Locator|T)"),
    (r"py:.*", r"(BaseException|Exception|ValueError|RuntimeError|OSError)"),
    (r"py:class", r"urllib3\..*"),
    # Private types named in public signatures: shown as text, documented by their users.
    (r"py:class", r"textstack_sdk(\.testing)?\._\w+\.\w+"),
]

html_theme = "alabaster"
html_title = f"textstack_sdk {__version__}"
