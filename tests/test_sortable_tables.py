"""book/_static/sortable-tables.js in headless Chromium: click and keyboard sorting of table.sortable.

A tiny page with one sortable table (the shape pandas' ``to_html(classes="sortable")`` writes:
a <thead> row of <th>, numbers with thousands separators, missing values as "-" or empty)
and one plain table is served from 127.0.0.1 with the script; the checks read the row order
back from the page. Needs chromium, chromedriver and selenium like tests/test_book_browser.py:
skipped without them, failed when COURSE_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import browser

SCRIPT = Path(__file__).resolve().parents[1] / "book" / "_static" / "sortable-tables.js"

ROWS = [  # model, parameters, gflops, receptive field, note
    ("vgg16", "138,357,544", "30.941", "212", "b"),
    ("alexnet", "61,100,840", "1.428", "195", "C"),
    ("resnet18", "11,689,512", "3.628", "435", "a"),
    ("unet", "31,037,698", "-", "", "transposed"),
    ("nin", "1,158,056", "0.469", "27", "a"),
    ("vgg9", "9,000", "10.5", "-", "b"),
]


def _table(css_class: str, table_id: str) -> str:
    head = "".join(f"<th>{name}</th>" for name in ("model", "parameters", "GFLOPs", "receptive field", "note"))
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in ROWS)
    return (f'<table id="{table_id}" class="dataframe {css_class}" border="0">'
            f'<thead><tr style="text-align: right;">{head}</tr></thead><tbody>{body}</tbody></table>')


PAGE = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Sortable</title>'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<script src="sortable-tables.js"></script></head><body>'
    + _table("sortable zoo-table", "zoo") + _table("plain", "plain") + "</body></html>"
)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    found = browser.find_browser()
    if isinstance(found, str):
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"COURSE_REQUIRE_BROWSER=1, but {found}", pytrace=False)
        pytest.skip(found)
    root = tmp_path_factory.mktemp("sortable")
    shutil.copy(SCRIPT, root / SCRIPT.name)
    (root / "index.html").write_text(PAGE, encoding="utf-8")
    sessions = browser.Browsers(*found)
    try:
        with browser.serve(root) as base:
            chromium = sessions["laptop"]
            chromium.base_url = base
            yield chromium
    finally:
        sessions.close()


@pytest.fixture
def page(driver):
    notes = browser.load_page(driver, driver.base_url + "index.html")
    assert notes == []
    return driver


def column(driver, table_id: str, index: int) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(`#${arguments[0]} tbody tr`))"
        ".map((row) => row.cells[arguments[1]].textContent.trim());", table_id, index)


def header(driver, table_id: str, index: int):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")[index]


def test_numbers_sort_numerically_and_the_second_click_reverses(page):
    header(page, "zoo", 1).click()
    # as text "9,000" would come last and "138,357,544" first; numerically they are the ends
    assert column(page, "zoo", 0) == ["vgg9", "nin", "resnet18", "unet", "alexnet", "vgg16"]
    assert header(page, "zoo", 1).get_attribute("aria-sort") == "ascending"
    header(page, "zoo", 1).click()
    assert column(page, "zoo", 0) == ["vgg16", "alexnet", "unet", "resnet18", "nin", "vgg9"]
    assert header(page, "zoo", 1).get_attribute("aria-sort") == "descending"


def test_missing_values_sort_last_in_both_directions(page):
    header(page, "zoo", 2).click()  # GFLOPs: "-" for unet
    assert column(page, "zoo", 2) == ["0.469", "1.428", "3.628", "10.5", "30.941", "-"]
    header(page, "zoo", 2).click()
    assert column(page, "zoo", 2) == ["30.941", "10.5", "3.628", "1.428", "0.469", "-"]
    header(page, "zoo", 3).click()  # receptive field: "-" (vgg9) and "" (unet) keep their last order, at the end
    assert column(page, "zoo", 3) == ["27", "195", "212", "435", "-", ""]


def test_text_sorts_case_insensitively_and_stably(page):
    header(page, "zoo", 4).click()  # note: a, a, b, b, C, transposed; equal keys keep the table's order
    assert column(page, "zoo", 4) == ["a", "a", "b", "b", "C", "transposed"]
    assert column(page, "zoo", 0)[:4] == ["resnet18", "nin", "vgg16", "vgg9"]
    header(page, "zoo", 0).click()
    assert column(page, "zoo", 0) == ["alexnet", "nin", "resnet18", "unet", "vgg9", "vgg16"]  # natural: 9 < 16
    assert header(page, "zoo", 4).get_attribute("aria-sort") is None  # only the sorted column is marked


def test_keyboard_enter_and_space_sort_a_focused_header(page):
    from selenium.webdriver.common.keys import Keys

    first = header(page, "zoo", 3)
    assert first.get_attribute("tabindex") == "0" and first.get_attribute("role") == "button"
    first.send_keys(Keys.ENTER)
    assert column(page, "zoo", 3)[:4] == ["27", "195", "212", "435"]
    assert page.execute_script("return document.activeElement === arguments[0];", first)
    scroll_before = page.execute_script("return window.scrollY;")
    first.send_keys(Keys.SPACE)
    assert column(page, "zoo", 3)[:4] == ["435", "212", "195", "27"]
    assert page.execute_script("return window.scrollY;") == scroll_before  # Space did not scroll the page


def test_tables_without_the_class_are_left_alone(page):
    before = column(page, "plain", 0)
    header(page, "plain", 1).click()
    assert column(page, "plain", 0) == before == [row[0] for row in ROWS]
    assert header(page, "plain", 1).get_attribute("tabindex") is None


def test_no_console_errors(page):
    header(page, "zoo", 1).click()
    assert browser.console_error_problems(page) == []
