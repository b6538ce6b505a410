"""Make the built book read the same offline as online, on a laptop and on a phone.

A Sphinx extension for Jupyter Book 1.x. It

* serves MathJax 3 from the build itself (``_static/mathjax``), copied from the
  files of the ``sphinx-mathjax-offline`` distribution, instead of a CDN: without
  a network, formulas would otherwise show as raw TeX;
* writes every script into a page once: sphinx-thebe adds its configuration
  script twice under Jupyter Book, and the second ``const THEBE_JS_URL`` is a
  console error on every page;
* adds ``book/_static``: ``course.css`` (long inline code wraps, wide tables,
  outputs and formulas scroll inside their own box), ``sidebar-toggles.js``
  (the chapter-list and page-contents buttons work, see that file) and
  ``sortable-tables.js`` (a table with the class ``sortable``, such as chapter 10's
  zoo table, sorts by a click on a column header).
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config

STATIC = Path(__file__).resolve().parents[1] / "_static"
MATHJAX_ENTRY = "mathjax/tex-chtml.js"  # relative to _static/


def mathjax_files() -> Path:
    """The folder of MathJax 3 files shipped by the sphinx-mathjax-offline distribution."""
    folder = Path(metadata.distribution("sphinx-mathjax-offline").locate_file("sphinx-mathjax-offline/static/mathjax"))
    if not (folder / "tex-chtml.js").is_file():
        raise FileNotFoundError(f"MathJax is missing from {folder}: reinstall sphinx-mathjax-offline")
    return folder


def _configure(app: Sphinx, config: Config) -> None:
    config.mathjax_path = MATHJAX_ENTRY
    config.html_static_path = [*config.html_static_path, str(STATIC)]


def _dedupe_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # An inline script may come once with filename None and once with "": same script.
        key = (getattr(script, "filename", script) or "", getattr(script, "attributes", {}).get("body"))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # In place: handlers that run later (sphinx.ext.mathjax adds its script here) append to this list.
    scripts[:] = unique


def _copy_mathjax(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir, "_static", "mathjax")
    source = mathjax_files()
    # Warm builds: copy only what is missing or changed (24 MB of files).
    for path in source.rglob("*"):
        if path.is_file():
            out = target / path.relative_to(source)
            if not out.exists() or out.stat().st_size != path.stat().st_size:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, out)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _configure, priority=900)
    # Late, after the handlers that add scripts to a page (sphinx-thebe's come twice).
    app.connect("html-page-context", _dedupe_scripts, priority=999)
    app.connect("build-finished", _copy_mathjax)
    app.add_css_file("course.css")
    app.add_js_file("sidebar-toggles.js", loading_method="defer")
    app.add_js_file("sortable-tables.js", loading_method="defer")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
