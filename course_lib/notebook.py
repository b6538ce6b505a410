"""What ``import course_lib`` sets up when it runs inside a Jupyter kernel.

A matplotlib figure in a notebook output is an image, plus a plain-text
version that Jupyter shows where images cannot be shown. matplotlib's text is
``<Figure size 640x480 with 2 Axes>``; here it becomes the figure's titles
(:func:`course_lib.viz.describe_figure`), which the book uses as the image's
alt text, so a screen reader (or a reader whose images did not load) learns
what the figure shows.
"""

from __future__ import annotations

import os
import sys

__all__ = ["register_figure_descriptions"]

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def _figure_text(figure, printer, cycle) -> None:
    from .viz import describe_figure

    printer.text(describe_figure(figure))


def register_figure_descriptions() -> bool:
    """Give matplotlib figures a descriptive plain-text form in the running IPython kernel.

    Returns whether it did: outside IPython (a script, pytest) there is nothing to do,
    and IPython is not imported just to find that out.
    """
    ipython_module = sys.modules.get("IPython")
    shell = ipython_module.get_ipython() if ipython_module is not None else None
    if shell is None:
        return False
    # matplotlib's inline backend removes every formatter registered for Figure when it
    # starts, which is on the first figure a kernel draws: start it now (ipykernel has
    # chosen it through MPLBACKEND), then register. The registration is also renewed after
    # each cell, before the backend displays the cell's figures (its hook comes later),
    # in case `%matplotlib inline` starts the backend again.
    if os.environ.get("MPLBACKEND") == INLINE_BACKEND:
        import matplotlib_inline.backend_inline  # noqa: F401
    _register(shell)
    if _register not in shell.events.callbacks["post_execute"]:
        shell.events.register("post_execute", _register)
    return True


def _register(shell=None) -> None:
    if shell is None:
        shell = sys.modules["IPython"].get_ipython()
    formatter = shell.display_formatter.formatters["text/plain"]
    # By name: matplotlib need not be imported yet (or at all).
    formatter.for_type_by_name("matplotlib.figure", "Figure", _figure_text)
