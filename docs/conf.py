"""Sphinx configuration of the SinSim documentation.

Build from the repository root, after the project's own install and the
``docs`` extra (``pip install --no-build-isolation -e ".[train,test,docs]"``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The performance and results pages are generated during the build from the
measurement files in ``bench/measurements/`` and the run folders in
``results/`` (``docs/_ext/sinsim_tables.py``); the gallery runs every script
in ``examples/`` (sphinx-gallery) and shows its output.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

project = "SinSim"
author = "the SinSim developers"
copyright = "the SinSim developers"
release = version = "0.1.0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # MathJax served from the built site, so the maths renders without a network
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "sinsim_tables",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# API pages: the docstrings are written for napoleon's Google style.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # nn.Module.forward's generic docstring says nothing about a loss
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# The examples run at build time on the CPU, one thread, so their timings and
# outputs are what a reader reproduces on a laptop.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "abort_on_example_error": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
}

html_theme = "furo"
html_title = "SinSim"
html_static_path = ["_static"]
html_css_files = ["sinsim.css"]
html_theme_options = {"navigation_with_keys": True}
html_show_sourcelink = False

warnings.filterwarnings("ignore", category=UserWarning, message="Matplotlib is currently using agg")
