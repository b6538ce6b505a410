"""Figures describe themselves: their titles become the plain text of a notebook output (the book's alt text)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # this test process draws no figure on a screen; notebooks keep their own backend

import matplotlib.pyplot as plt
import nbclient
import nbformat
import pytest

from course_lib.notebook import register_figure_descriptions
from course_lib.viz import describe_figure, show_images


def test_suptitle_and_panel_titles():
    fig, axes = plt.subplots(1, 3)
    fig.suptitle("Sobel filters")
    axes[0].set_title("x gradient")
    axes[1].set_title("y gradient")
    axes[2].set_title("x gradient")  # repeated titles are said once
    assert describe_figure(fig) == "Sobel filters: x gradient; y gradient"
    plt.close(fig)


def test_panel_titles_only_and_suptitle_only():
    fig, ax = plt.subplots()
    ax.set_title("Loss", loc="left")
    assert describe_figure(fig) == "Loss"
    plt.close(fig)
    fig = plt.figure()
    fig.suptitle("Only a suptitle")
    assert describe_figure(fig) == "Only a suptitle"
    plt.close(fig)


def test_untitled_figure_keeps_matplotlibs_text():
    fig, _ = plt.subplots(1, 2)
    assert describe_figure(fig) == repr(fig)
    assert describe_figure(fig).startswith("<Figure size")
    plt.close(fig)


def test_course_figures_are_described():
    fig = show_images([[[0.0, 1.0], [1.0, 0.0]]], titles=["checkerboard"], suptitle="One image")
    assert describe_figure(fig) == "One image: checkerboard"
    plt.close(fig)


def test_outside_ipython_nothing_is_registered():
    assert register_figure_descriptions() is False


@pytest.mark.slow
def test_in_a_kernel_the_titles_are_the_plain_text_of_every_figure():
    """Whatever comes first (pyplot or course_lib), plt.show() or not, and after %matplotlib inline."""
    cells = [
        "import matplotlib.pyplot as plt\nimport course_lib",
        "fig, ax = plt.subplots(); ax.set_title('first, shown by plt.show'); plt.show()",
        "fig, ax = plt.subplots(); ax.set_title('second, shown at the end of the cell')",
        "%matplotlib inline\nfig, ax = plt.subplots(); ax.set_title('after the magic')",
    ]
    other_order = ["import course_lib\nimport matplotlib.pyplot as plt", cells[1]]
    for sources in (cells, other_order):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
        texts = [o.data["text/plain"] for c in nb.cells for o in c.outputs if "image/png" in o.get("data", {})]
        titles = [s.split("set_title('")[1].split("'")[0] for s in sources if "set_title" in s]
        assert texts == titles
