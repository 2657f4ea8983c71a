"""Sphinx configuration for cancergpt-scvi."""

import os

project = "cancergpt-scvi"
author = "cancergpt-scvi developers"
copyright = "2026, cancergpt-scvi developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # MyST-NB parses the .md pages (it includes myst-parser) and the tutorial notebooks.
    "myst_nb",
]
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
exclude_patterns = ["_build", "generated/*.inherited*", "_static/**", "**/.ipynb_checkpoints"]
html_theme = "furo"
html_title = "cancergpt-scvi"
# Docstrings inherited from scvi-tools and torch use their own cross-reference roles.
nitpicky = False
suppress_warnings = ["myst.header", "autosummary.import_cycle"]

# Tutorials: docs/tutorials is a symlink to ../notebooks, the notebooks' only copy, which git
# keeps without outputs. Every build executes them (`make docs` passes -E, so every page is
# reread; this is also how CI runs them), in their own folder (notebooks/, the symlink's target:
# a notebook may read ../docs/_static), and renders their outputs and figures.
# NB_EXECUTION_MODE=off skips execution for a quick look at the text.
nb_execution_mode = os.environ.get("NB_EXECUTION_MODE", "force")
nb_execution_in_temp = False
# A failing notebook is a warning carrying the cell's traceback, and `make docs` (-W --keep-going)
# fails on it after trying every notebook, so one CI run reports all the broken ones. (Raising
# instead would stop at the first, with the traceback only in Sphinx's crash file.)
nb_execution_raise_on_error = False
nb_execution_show_tb = True
# Seconds per cell: the longest cells train models, which on a 2-core CPU take minutes.
nb_execution_timeout = 1200
nb_merge_streams = True
# stderr holds the libraries' log lines and warnings (Lightning's accelerator report, progress
# bars, deprecations, with this machine's paths), not the tutorial's content; errors still fail.
nb_output_stderr = "remove"
# The kernel inherits this process's environment; without MPLBACKEND, ipykernel draws figures
# into the notebook's outputs (its inline backend, headless), even where MPLBACKEND=Agg is set for
# scripts and tests.
os.environ.pop("MPLBACKEND", None)
