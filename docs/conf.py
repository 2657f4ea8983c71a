"""Sphinx configuration for cancergpt-scvi."""

project = "cancergpt-scvi"
author = "cancergpt-scvi developers"
copyright = "2026, cancergpt-scvi developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "myst_parser",
]
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "generated/*.inherited*", "_static/**"]
html_theme = "furo"
html_title = "cancergpt-scvi"
# Docstrings inherited from scvi-tools and torch use their own cross-reference roles.
nitpicky = False
suppress_warnings = ["myst.header", "autosummary.import_cycle"]
