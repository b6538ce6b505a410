"""Every page of the built book, opened in headless Chromium at laptop and phone size.

One chromium session per size visits every page (served from 127.0.0.1, every other host
unresolvable) and fails on:

- raw_tex            TeX source visible after MathJax ran (\\( \\) \\[ \\] $$ ...), or a .math element
                     without a rendered mjx-container;
- broken_images      an image that loaded without pixels (naturalWidth 0);
- image_alt          alt text that is a file name (or the image's own src) or a hash;
- console_errors     console messages at level SEVERE (console.error, uncaught errors, failed loads);
- external_requests  any request to a host other than the local server (the book must work offline);
- overflow           the page is wider than the viewport (names the element that sticks out);
- sidebar_toggle     the chapter list does not open/close with its visible toggle button
                     (phone: hidden, toggle opens it, Escape closes it; laptop: shown, toggle
                     hides it, toggle again shows it).

A failure names the check and size in its test id and lists every page with its problems.
The test_detector_* tests serve small hand-written pages to prove each detector catches what it
should (and nothing on a clean page); they need chromium but not the book.

Needs the Debian packages chromium and chromium-driver and the Python package selenium; without
them the module is skipped, or fails when COURSE_REQUIRE_BROWSER=1 (as CI sets).
The pages: every *.html of the build except genindex.html, _static/, _sources/ and redirect stubs
(index.html only redirects to the first page); search.html is included, its search works offline.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

import browser

pytestmark = pytest.mark.slow

SIZES = tuple(browser.SIZES)

WHAT = {
    "raw_tex": "TeX visible as text / math not rendered by MathJax",
    "broken_images": "broken images",
    "image_alt": "image alt text is a file name or hash",
    "console_errors": "console errors",
    "external_requests": "requests to hosts other than 127.0.0.1 (the book must work offline)",
    "overflow": "page wider than the viewport (horizontal scrolling)",
    "sidebar_toggle": "chapter list (primary sidebar) does not open/close with its toggle",
}
assert set(WHAT) == set(browser.CHECKS)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def browsers():
    """One headless chromium per size (started on first use), or a skip/fail saying how to install it."""
    found = browser.find_browser()
    if isinstance(found, str):
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"COURSE_REQUIRE_BROWSER=1, but {found}", pytrace=False)
        pytest.skip(found)
    sessions = browser.Browsers(*found)
    yield sessions
    sessions.close()


def book_pages(html: Path) -> list[str]:
    """The pages to check, as paths relative to the html folder."""
    pages = []
    for path in sorted(html.rglob("*.html")):
        rel = path.relative_to(html).as_posix()
        if rel.split("/")[0] in ("_static", "_sources", "_images") or rel == "genindex.html":
            continue
        head = path.read_text(encoding="utf-8", errors="replace")[:2000]
        if path.stat().st_size < 2000 and 'http-equiv="Refresh"' in head:
            continue  # a redirect stub (index.html -> the root page), not a page of its own
        pages.append(rel)
    return pages


@pytest.fixture(scope="session")
def book_report(browsers, book_html):
    """report(size) -> {page: {check: [problems]}}; each size's pages are visited once, when first asked for."""
    pages = book_pages(book_html)
    assert pages, f"no pages found in {book_html}"
    reports = {}
    with browser.serve(book_html) as base:

        def report(size):
            if size not in reports:
                driver = browsers[size]
                reports[size] = {page: browser.check_page(driver, base + page, base, size) for page in pages}
            return reports[size]

        yield report


# --------------------------------------------------------------------------- the book


@pytest.mark.parametrize("check", browser.CHECKS)
@pytest.mark.parametrize("size", SIZES)
def test_book_in_browser(book_report, size, check):
    width, height = browser.SIZES[size]
    problems = [
        f"{page} @ {size} {width}x{height}: {problem}"
        for page, checks in book_report(size).items()
        for problem in checks[check]
    ]
    if problems:
        pytest.fail(f"{WHAT[check]} ({len(problems)}):\n" + "\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------- the detectors themselves

# A 1x1 PNG, so that a working image is really an image.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
HEAD = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">' \
       '<meta name="viewport" content="width=device-width, initial-scale=1"><title>t</title></head><body>'

# A chapter list like the theme's: a toggle hidden by CSS first in the page, the visible one second.
# Wide: the toggle collapses the sidebar; narrow: it moves the list into a modal <dialog> (Escape closes).
# `working` binds the handler to the visible toggle; broken binds it to the hidden one, as
# pydata-sphinx-theme's document.querySelector(".primary-toggle") does (its issue #2451).
SIDEBAR_PAGE = HEAD + """
<style>
  body { margin: 0; display: flex; flex-wrap: wrap; }
  header { width: 100%; }
  #pst-primary-sidebar { width: 250px; }
  #pst-primary-sidebar.pst-sidebar-hidden { visibility: hidden; margin-left: -250px; }
  @media (max-width: 991.98px) { #pst-primary-sidebar { display: none; } }
</style>
<header><button class="primary-toggle" style="display: none">hidden</button>
<button class="primary-toggle">&#9776;</button></header>
<dialog id="pst-primary-sidebar-modal"></dialog>
<div id="pst-primary-sidebar"><nav class="bd-docs-nav"><a href="ch1.html">Chapter 1</a></nav></div>
<main><p>Some text.</p></main>
<script>
  const toggles = document.querySelectorAll(".primary-toggle");
  const sidebar = document.getElementById("pst-primary-sidebar");
  const dialog = document.getElementById("pst-primary-sidebar-modal");
  toggles[WHICH].addEventListener("click", () => {
    if (matchMedia("(min-width: 992px)").matches) { sidebar.classList.toggle("pst-sidebar-hidden"); return; }
    dialog.append(...sidebar.childNodes);
    dialog.showModal();
  });
  dialog.addEventListener("close", () => sidebar.append(...dialog.childNodes));
</script></body></html>"""

PAGES = {
    "clean.html": HEAD + r"""
<p>A clean page: <img src="pixel.png" alt="A plot of the training loss"></p>
<pre>code may say \( and $$ and \[ freely</pre><p>Costs $5.</p></body></html>""",
    "tex.html": HEAD + r"""
<p>The area is \(a^2\), or $$a \cdot a$$.</p><p><span class="math">\(x\)</span></p></body></html>""",
    "broken.html": HEAD + '<img src="missing.png" alt="A missing plot"></body></html>',
    "hashed_alt.html": HEAD + '<img src="pixel.png" alt="../_images/' + "3f" * 32 + '.png"></body></html>',
    "console.html": HEAD + '<script>console.error("boom from the test page")</script></body></html>',
    "external.html": HEAD + '<img src="http://example.com/x.png" alt="An external plot"></body></html>',
    "wide.html": HEAD + '<div id="wide" style="width: 1000px; height: 10px"></div></body></html>',
    "ch1.html": HEAD + "<p>Chapter 1</p></body></html>",
    "sidebar_working.html": SIDEBAR_PAGE.replace("WHICH", "1"),
    "sidebar_broken.html": SIDEBAR_PAGE.replace("WHICH", "0"),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The hand-written pages above, served from a temporary folder; yields the base URL."""
    root = tmp_path_factory.mktemp("browser-pages")
    (root / "pixel.png").write_bytes(PIXEL)
    for name, text in PAGES.items():
        (root / name).write_text(text, encoding="utf-8")
    with browser.serve(root) as base:
        yield base


@pytest.fixture(params=SIZES)
def size(request):
    return request.param


def open_page(browsers, site, size, page):
    driver = browsers[size]
    notes = browser.load_page(driver, site + page)
    return driver, notes


def test_detector_clean_page_passes(browsers, site, size):
    checks = [check for check in browser.CHECKS if check != "sidebar_toggle"]  # the page has no sidebar
    problems = browser.check_page(browsers[size], site + "clean.html", site, size, checks=checks)
    assert problems == {check: [] for check in checks}


def test_detector_raw_tex(browsers, site, size):
    driver, _ = open_page(browsers, site, size, "tex.html")
    problems = " ".join(browser.raw_tex_problems(driver))
    assert "raw TeX in the text" in problems and r"\\(a^2\\)" in problems and "$$" in problems
    assert "1 of 1 .math elements have no mjx-container" in problems


def test_detector_broken_image(browsers, site, size):
    driver, _ = open_page(browsers, site, size, "broken.html")
    problems = browser.broken_image_problems(driver)
    assert len(problems) == 1 and "missing.png" in problems[0]


def test_detector_hashed_alt(browsers, site, size):
    driver, _ = open_page(browsers, site, size, "hashed_alt.html")
    problems = browser.alt_text_problems(driver)
    assert len(problems) == 1 and "3f3f3f" in problems[0]
    driver, _ = open_page(browsers, site, size, "clean.html")
    assert browser.alt_text_problems(driver) == []


def test_detector_console_error(browsers, site, size):
    driver, _ = open_page(browsers, site, size, "console.html")
    problems = browser.console_error_problems(driver)
    assert any("boom from the test page" in p for p in problems), problems


def test_detector_external_request(browsers, site, size):
    driver, _ = open_page(browsers, site, size, "external.html")
    assert browser.external_request_problems(driver, site) == ["request to another host: http://example.com/x.png"]
    # the host does not resolve, so the image is broken and the failed load is a console error too
    assert any("example.com" in p for p in browser.broken_image_problems(driver))
    assert any("ERR_NAME_NOT_RESOLVED" in p for p in browser.console_error_problems(driver))


def test_detector_overflow(browsers, site, size):
    driver, _ = open_page(browsers, site, size, "wide.html")
    problems = browser.overflow_problems(driver)
    if size == "phone":
        assert len(problems) == 1 and "px wide in a 390px viewport" in problems[0] and "div#wide" in problems[0]
    else:
        assert problems == []  # 1000 px fit in 1280


def test_detector_sidebar_toggle_working(browsers, site, size):
    driver, _ = open_page(browsers, site, size, "sidebar_working.html")
    assert browser.sidebar_toggle_problems(driver, size) == []


def test_detector_sidebar_toggle_bound_to_hidden_button(browsers, site, size):
    driver, _ = open_page(browsers, site, size, "sidebar_broken.html")
    problems = browser.sidebar_toggle_problems(driver, size)
    expected = "did not show the chapter list" if size == "phone" else "did not hide the chapter list"
    assert len(problems) == 1 and expected in problems[0], problems
