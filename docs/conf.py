"""Sphinx configuration for the stackengine documentation.

Build (from the repository root)::

    PYTHONPATH=. sphinx-build -W -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys

# Document the package from this source tree, installed or not.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import stackengine  # noqa: E402

project = "stackengine"
author = "stackengine developers"
copyright = "stackengine developers"
release = stackengine.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",  # tutorial.ipynb: executed by every build (no pandoc needed)
]

# No intersphinx: the documentation builds without network access.

templates_path: list[str] = []
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
source_suffix = {".rst": "restructuredtext", ".ipynb": "myst-nb"}
root_doc = "index"
language = "en"

# autodoc
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}

# myst-nb: the notebooks are run by every build, so their code (and its asserts)
# cannot go stale; a failing cell fails the build. Stored without outputs.
nb_execution_mode = "force"
nb_execution_timeout = 300  # seconds per cell (the tutorial takes a few in all)
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["dollarmath"]

# numpydoc
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

default_role = "literal"
pygments_style = "sphinx"

# HTML
html_theme = "alabaster"
html_theme_options = {
    "description": "Out-of-core, parallel stacking of registered astronomical frames",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
html_sidebars = {
    "**": ["about.html", "navigation.html", "relations.html", "searchbox.html"],
}
html_static_path: list[str] = []
html_title = f"stackengine {release}"
html_show_sourcelink = False
