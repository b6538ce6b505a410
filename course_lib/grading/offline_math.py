"""MathJax for the pages nbgrader renders, inside the page: formulas render without a network.

nbconvert's templates load MathJax 2 from a CDN. nbgrader_config.py puts
``templates/`` (beside this file) first among the HTML exporter's template
folders; its ``base/mathjax.html.j2`` replaces nbconvert's macro with
:func:`inline_mathjax` (a Jinja filter): MathJax 3, SVG output (no font files to
fetch), configured for ``$...$`` and ``$$...$$`` as nbconvert's was, written
into the page. The script is the one the book uses (the PyPI package
``sphinx-mathjax-offline``). So the Formgrader's submission pages and every
feedback page (``python -m course_lib.grading feedback``, or the Formgrader's
own *Generate Feedback*) can be read offline.
"""

from __future__ import annotations

import functools
from importlib import metadata
from pathlib import Path

__all__ = ["TEMPLATES", "inline_mathjax"]

TEMPLATES = Path(__file__).with_name("templates")

_CONFIG = ("<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], "
           "displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true, tags: 'ams'}, "
           "svg: {fontCache: 'global'}};</script>")


@functools.lru_cache(maxsize=1)
def _script() -> str:
    path = metadata.distribution("sphinx-mathjax-offline").locate_file("sphinx-mathjax-offline/static/mathjax/tex-svg.js")
    return Path(path).read_text()


def inline_mathjax(_url=None) -> str:
    """The MathJax configuration and script, as HTML to put in a page's head (the template's URL is ignored)."""
    return _CONFIG + "\n<script>" + _script().replace("</script", "<\\/script") + "</script>"
