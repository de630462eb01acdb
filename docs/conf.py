"""Sphinx configuration of the documentation site (`make docs`)."""

project = "inference-on-secure-cloud-run"
author = project
copyright = "the project's authors"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# `page.md#anchor` links are checked against these anchors (h1 to h3), as GitHub names them.
myst_heading_anchors = 3
# No cross-reference left unresolved: with -W, a missing document or anchor fails the build.
nitpicky = True
suppress_warnings: list[str] = []

html_theme = "furo"
html_title = project
html_static_path: list[str] = []
html_show_sourcelink = False
html_copy_source = False
