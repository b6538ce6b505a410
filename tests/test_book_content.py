"""The book's plan, its Labs page and its chapters agree with what exists in the repository.

No build: these tests read `book/intro.md`, `book/labs.md`, the chapter notebooks
`book/NN_*.ipynb` and the lab sources `solutions/labNN_*/`. The plan in the intro
is the reference: a table per part with the columns `# | Chapter | Status | ...`
(18 chapter rows in all) and one lab table `# | Lab | Status | You write | Chapters`
(8 rows). What exists is linked there; what does not is "in preparation".
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
INTRO = BOOK / "intro.md"
LABS_PAGE = BOOK / "labs.md"
IN_PREPARATION = "in preparation"
N_CHAPTERS, N_LABS = 18, 8

CHAPTER_FILE = re.compile(r"^(\d{2})_\w+\.ipynb$")
LAB_FOLDER = re.compile(r"^lab(\d{2})_\w+$")
# [The convolution operation](02_convolution.ipynb)
CHAPTER_LINK = re.compile(r"\[([^\]]+)\]\((\d{2}_\w+\.ipynb)\)")
# {ref}`Convolution from scratch <lab-1>` or {ref}`lab-1`
LAB_REF = re.compile(r"\{ref\}`(?:[^`<]*<)?lab-(\d+)>?`")
LAB_TARGET = re.compile(r"^\(lab-(\d+)\)=\s*$", re.MULTILINE)
PART_HEADING = re.compile(r"^##\s+Part\s+(\d+)\b")


# --- what exists -------------------------------------------------------------------------------


def chapter_files() -> dict[int, Path]:
    """Chapter number -> notebook, from the file names `book/NN_name.ipynb`."""
    found = {}
    for path in sorted(BOOK.glob("*.ipynb")):
        match = CHAPTER_FILE.match(path.name)
        assert match, f"book/{path.name}: a chapter's file name must be NN_name.ipynb, NN its number in the plan"
        found[int(match.group(1))] = path
    return found


def lab_sources() -> dict[int, Path]:
    """Lab number -> instructor notebook, from the folders `solutions/labNN_name/labNN_name.ipynb`."""
    found = {}
    for folder in sorted(p for p in (REPO / "solutions").iterdir() if p.is_dir() and not p.name.startswith(".")):
        match = LAB_FOLDER.match(folder.name)
        assert match, f"solutions/{folder.name}: a lab's folder must be named labNN_name, NN its number in the plan"
        found[int(match.group(1))] = folder / f"{folder.name}.ipynb"
    return found


def chapter_title(path: Path) -> str:
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown", f"book/{path.name}: the first cell must be markdown with the title `# N. Title`"
    return first.source.splitlines()[0]


def markdown_of(path: Path) -> str:
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")


# --- the plan in the intro -----------------------------------------------------------------------


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table in ``text``: a list of rows, each a list of stripped cells (separator row dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.strip().startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def plan_rows(kind: str, text: str | None = None) -> dict[int, dict[str, str]]:
    """Rows of the intro's tables whose header reads `# | <kind> | ...`, by their number."""
    rows: dict[int, dict[str, str]] = {}
    for header, *body in markdown_tables(INTRO.read_text() if text is None else text):
        if header[:2] != ["#", kind]:
            continue
        assert "Status" in header, f"book/intro.md: the {kind.lower()} table {header} needs a Status column"
        for cells in body:
            assert cells[0].isdigit(), f"book/intro.md: {kind.lower()} row {cells} must start with its number"
            number = int(cells[0])
            assert number not in rows, f"book/intro.md: {kind.lower()} {number} appears twice in the plan"
            rows[number] = dict(zip(header, cells))
    return rows


def chapters_of_lab(row: dict[str, str]) -> set[int]:
    return {int(n) for n in re.findall(r"\d+", row.get("Chapters", ""))}


# --- the Labs page ----------------------------------------------------------------------------------


def lab_sections() -> dict[int, str]:
    """Lab number -> its section of book/labs.md, from its `(lab-N)=` target to the next one."""
    text = LABS_PAGE.read_text()
    targets = list(LAB_TARGET.finditer(text))
    sections = {}
    for target, following in zip(targets, targets[1:] + [None]):
        sections[int(target.group(1))] = text[target.end() : following.start() if following else len(text)]
    return sections


def points_table(section: str, lab: int) -> tuple[dict[int, float], float | None]:
    """The `Part | ... | Points` table of a lab's section: points by part, and the Total row's points."""
    for header, *body in markdown_tables(section):
        if "Part" in header and "Points" in header:
            part_col, points_col = header.index("Part"), header.index("Points")
            by_part, total = {}, None
            for cells in body:
                try:
                    points = float(cells[points_col].strip("* "))
                except ValueError:
                    raise AssertionError(
                        f"book/labs.md, section lab-{lab}: the Points column must hold a number in every row, "
                        f"the row {cells} does not"
                    ) from None
                if cells[part_col].isdigit():
                    by_part[int(cells[part_col])] = points
                elif any("total" in c.lower() for c in cells):
                    total = points
            return by_part, total
    raise AssertionError(
        f"book/labs.md, section lab-{lab}: add a table with the columns `Part | What you write | Points`, "
        "one row per part (the Part column holds the number of the lab's `## Part N` heading) and a **Total** row"
    )


def nbgrader_points(path: Path) -> dict[int, float]:
    """Points of the graded cells (autograded tests and manually graded answers), summed per `## Part N`."""
    by_part: dict[int, float] = {}
    part = None
    for cell in nbformat.read(path, as_version=4).cells:
        heading = PART_HEADING.match(cell.source) if cell.cell_type == "markdown" else None
        if heading:
            part = int(heading.group(1))
        grader = cell.metadata.get("nbgrader", {})
        if grader.get("grade"):
            assert part is not None, (
                f"{path.relative_to(REPO)}: the graded cell {grader.get('grade_id')} comes before the first "
                "`## Part N` heading, so its points belong to no part"
            )
            by_part[part] = by_part.get(part, 0) + grader.get("points", 0)
    return by_part


# --- tests -----------------------------------------------------------------------------------------


def test_plan_lists_every_chapter_and_lab():
    chapters, labs = plan_rows("Chapter"), plan_rows("Lab")
    assert sorted(chapters) == list(range(1, N_CHAPTERS + 1)), (
        f"book/intro.md: the plan's chapter tables (header `| # | Chapter | Status | ... |`) must have rows "
        f"1 to {N_CHAPTERS}, one per chapter of the syllabus; found {sorted(chapters)}"
    )
    assert sorted(labs) == list(range(1, N_LABS + 1)), (
        f"book/intro.md: the lab table (header `| # | Lab | Status | ... |`) must have rows 1 to {N_LABS}, "
        f"one per lab of the syllabus; found {sorted(labs)}"
    )


@pytest.mark.parametrize("number", sorted(chapter_files()), ids=lambda n: f"chapter{n:02d}")
def test_written_chapter_is_linked_from_the_plan(number):
    path = chapter_files()[number]
    row = plan_rows("Chapter").get(number)
    assert row, f"book/intro.md: chapter {number} ({path.name}) has no row in the plan"
    links = CHAPTER_LINK.findall(row["Chapter"])
    assert [target for _, target in links] == [path.name], (
        f"book/intro.md, chapter {number}: link the title to the notebook, as `[Title]({path.name})`; "
        f"the row reads {row['Chapter']!r}"
    )
    title = re.sub(r"^#\s*(\d+\.\s*)?", "", chapter_title(path))
    assert links[0][0] == title, (
        f"book/intro.md, chapter {number}: the link text {links[0][0]!r} differs from the chapter's title {title!r}; "
        "make them the same"
    )
    assert IN_PREPARATION not in row["Status"].lower(), (
        f"book/intro.md, chapter {number}: {path.name} exists, so its Status must not say '{IN_PREPARATION}' "
        "(write 'available')"
    )


def test_unwritten_chapters_are_in_preparation():
    written = chapter_files()
    wrong = [
        f"chapter {number}: Status {row['Status']!r}, Chapter {row['Chapter']!r}"
        for number, row in plan_rows("Chapter").items()
        if number not in written and (IN_PREPARATION not in row["Status"].lower() or "](" in row["Chapter"])
    ]
    assert not wrong, (
        f"book/intro.md: chapters without a notebook in book/ must have the Status '{IN_PREPARATION}' and no link "
        f"(or the notebook book/NN_name.ipynb is missing): {wrong}"
    )


@pytest.mark.parametrize("number", sorted(lab_sources()), ids=lambda n: f"lab{n:02d}")
def test_existing_lab_is_linked_and_has_a_section(number):
    source = lab_sources()[number]
    row = plan_rows("Lab").get(number)
    assert row, f"book/intro.md: lab {number} ({source.parent.name}) has no row in the lab table"
    assert [int(n) for n in LAB_REF.findall(row["Lab"])] == [number], (
        f"book/intro.md, lab {number}: link the lab's name to its section of the Labs page, as "
        f"{{ref}}`Name <lab-{number}>`; the row reads {row['Lab']!r}"
    )
    assert IN_PREPARATION not in row["Status"].lower(), (
        f"book/intro.md, lab {number}: solutions/{source.parent.name} exists, so its Status must not say "
        f"'{IN_PREPARATION}' (write 'available')"
    )
    section = lab_sections().get(number)
    assert section is not None, (
        f"book/labs.md: lab {number} needs a section that starts with the target `(lab-{number})=` "
        f"followed by the heading `## Lab {number} - Name`"
    )
    assert re.match(rf"\s*## Lab {number}\b", section), (
        f"book/labs.md: the target (lab-{number})= must be followed by the heading `## Lab {number} - Name`"
    )
    assert IN_PREPARATION not in section.lower(), (
        f"book/labs.md, section lab-{number}: the lab exists; describe it instead of saying '{IN_PREPARATION}'"
    )


def test_planned_labs_are_in_preparation():
    existing, sections = lab_sources(), lab_sections()
    wrong = []
    for number, row in plan_rows("Lab").items():
        if number in existing:
            continue
        if IN_PREPARATION not in row["Status"].lower() or LAB_REF.search(row["Lab"]):
            wrong.append(f"book/intro.md, lab {number}: Status {row['Status']!r}, Lab {row['Lab']!r}")
        if number not in sections or IN_PREPARATION not in sections[number].lower():
            wrong.append(f"book/labs.md: no `(lab-{number})=` section saying '{IN_PREPARATION}'")
    assert not wrong, (
        f"labs without a folder in solutions/ must be '{IN_PREPARATION}' in the intro's lab table (no link) and have "
        f"a short section on the Labs page that says so: {wrong}"
    )


def test_every_lab_names_its_chapters():
    wrong = {n: row.get("Chapters") for n, row in plan_rows("Lab").items()
             if not chapters_of_lab(row) or not chapters_of_lab(row) <= set(range(1, N_CHAPTERS + 1))}
    assert not wrong, (
        f"book/intro.md: the lab table's Chapters column must name the chapters (1-{N_CHAPTERS}) each lab "
        f"practises, e.g. `2` or `7, 8`; wrong rows: {wrong}"
    )


@pytest.mark.parametrize("number", sorted(lab_sources()), ids=lambda n: f"lab{n:02d}")
def test_lab_points_match_nbgrader(number):
    source = lab_sources()[number]
    section = lab_sections().get(number)
    assert section is not None, f"book/labs.md: lab {number} has no `(lab-{number})=` section"
    written, total = points_table(section, number)
    graded = nbgrader_points(source)
    where = f"book/labs.md, lab {number}"
    truth = f"the nbgrader metadata of {source.relative_to(REPO)}"
    assert sorted(written) == sorted(graded), (
        f"{where}: the points table lists parts {sorted(written)}, {truth} has graded cells in parts {sorted(graded)}"
    )
    wrong = {part: (written[part], graded[part]) for part in graded if written[part] != graded[part]}
    assert not wrong, f"{where}: points per part differ from {truth}, as {{part: (page, metadata)}}: {wrong}"
    assert total is not None, f"{where}: the points table needs a last row `| | **Total** | **N** |`"
    assert total == sum(graded.values()), (
        f"{where}: the Total row says {total:g}, {truth} adds up to {sum(graded.values()):g}"
    )


@pytest.mark.parametrize("number", sorted(chapter_files()), ids=lambda n: f"chapter{n:02d}")
def test_chapter_title_carries_its_number(number):
    path = chapter_files()[number]
    title = chapter_title(path)
    assert re.match(rf"# {number}\. \S", title), (
        f"book/{path.name}: the first line must be the title numbered as in the plan, `# {number}. Title`; "
        f"it is {title!r}"
    )


CHAPTER_LAB_PAIRS = [
    (chapter, lab)
    for lab, row in plan_rows("Lab").items() if lab in lab_sources()
    for chapter in sorted(chapters_of_lab(row)) if chapter in chapter_files()
]


@pytest.mark.parametrize("chapter, lab", CHAPTER_LAB_PAIRS, ids=[f"chapter{c:02d}-lab{n:02d}" for c, n in CHAPTER_LAB_PAIRS])
def test_chapter_links_to_its_lab(chapter, lab):
    path = chapter_files()[chapter]
    assert lab in {int(n) for n in LAB_REF.findall(markdown_of(path))}, (
        f"book/{path.name}: lab {lab} practises chapter {chapter} (intro's lab table, Chapters column), so the chapter "
        f"must point to it: add a markdown cell near the start with {{ref}}`lab-{lab}`"
    )
