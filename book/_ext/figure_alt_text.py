"""Give every figure a notebook draws an alt text that says what it shows.

A Sphinx extension for Jupyter Book 1.x (myst-nb). myst-nb writes a notebook's
image output to a file named by its hash and gives the ``<img>`` no alt text,
so browsers and screen readers fall back to that hash. The same output also
carries a plain-text version; inside the course's notebooks ``course_lib``
makes it the figure's titles (:mod:`course_lib.notebook`). This extension
copies that text onto the image, and warns (an error under ``-W``) about a
figure whose text is matplotlib's bare ``<Figure size ...>``: a figure without
a title, which the course's conventions do not allow.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
UNTITLED = re.compile(r"^<Figure size [^>]*>$")


def _is_bundle(node) -> bool:
    return isinstance(node, nodes.container) and node.get("nb_element") == "mime_bundle"


def _add_alt_text(app: Sphinx, doctree: nodes.document) -> None:
    for bundle in doctree.findall(_is_bundle):
        by_type = {child.get("mime_type"): child for child in bundle.children}
        text = by_type.get("text/plain")
        description = " ".join(text.astext().split()) if text is not None else ""
        for mime_type, container in by_type.items():
            if not (mime_type or "").startswith("image/"):
                continue
            if UNTITLED.match(description):
                LOGGER.warning("a figure has no title: give it one (ax.set_title or fig.suptitle)", location=bundle)
            for image in container.findall(nodes.image):
                if not image.get("alt"):
                    image["alt"] = description if description and not UNTITLED.match(description) else "Figure"


def setup(app: Sphinx) -> dict:
    app.connect("doctree-read", _add_alt_text)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
