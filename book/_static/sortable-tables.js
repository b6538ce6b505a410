/* Sortable tables: click a column header of any <table class="sortable"> to sort its rows.
 *
 * Used by the zoo table of chapter 10 (pandas' to_html(classes="sortable")). No library.
 * - The first activation of a header sorts ascending, the next descending, and so on;
 *   the header gets aria-sort="ascending" / "descending" (the others lose it).
 * - A column whose non-empty cells all read as numbers ("61,100,840", "1.428", "-3e4", "56.5 %")
 *   sorts numerically; any other column sorts as text (natural order, case-insensitive).
 *   Empty cells and "-" sort last in both directions.
 * - Keyboard: each header is a focusable button-like element (tabindex 0, role "button");
 *   Enter or Space sorts by it.
 * - The sort is stable: rows that compare equal keep their previous order.
 */
(function () {
  "use strict";

  var MISSING = /^(|-|–|—|nan|none|n\/a)$/i;

  function cellText(row, index) {
    var cell = row.cells[index];
    return cell ? cell.textContent.trim() : "";
  }

  // "61,100,840" -> 61100840, "56.5 %" -> 56.5, "1.2e-3" -> 0.0012; NaN when not a number.
  function asNumber(text) {
    var cleaned = text.replace(/[,\u00a0\u202f\s%]/g, "").replace(/\u2212/g, "-");
    if (!/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(cleaned)) return NaN;
    return parseFloat(cleaned);
  }

  function bodyRows(table) {
    var rows = [];
    for (var b = 0; b < table.tBodies.length; b++) {
      rows = rows.concat(Array.prototype.slice.call(table.tBodies[b].rows));
    }
    return rows;
  }

  function sortBy(table, header, index) {
    var descending = header.getAttribute("aria-sort") === "ascending";
    var rows = bodyRows(table);
    var texts = rows.map(function (row) { return cellText(row, index); });
    var present = texts.filter(function (t) { return !MISSING.test(t); });
    var numeric = present.length > 0 && present.every(function (t) { return !isNaN(asNumber(t)); });
    var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
    var keyed = rows.map(function (row, position) {
      var text = texts[position];
      return { row: row, position: position, missing: MISSING.test(text),
               key: numeric ? asNumber(text) : text };
    });
    keyed.sort(function (a, b) {
      if (a.missing || b.missing) {
        if (a.missing && b.missing) return a.position - b.position;
        return a.missing ? 1 : -1; // missing values last, whatever the direction
      }
      var order = numeric ? a.key - b.key : collator.compare(a.key, b.key);
      if (descending) order = -order;
      return order !== 0 ? order : a.position - b.position;
    });
    var tbody = table.tBodies[0];
    keyed.forEach(function (item) { tbody.appendChild(item.row); });
    var headers = table.tHead ? table.tHead.querySelectorAll("th") : [];
    Array.prototype.forEach.call(headers, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  function headerCells(table) {
    if (!table.tHead || !table.tHead.rows.length) return [];
    var rows = table.tHead.rows;
    return Array.prototype.slice.call(rows[rows.length - 1].cells); // the last header row names the columns
  }

  function makeSortable(table) {
    if (table.dataset.sortableReady) return;
    table.dataset.sortableReady = "1";
    headerCells(table).forEach(function (header, index) {
      header.setAttribute("tabindex", "0");
      header.setAttribute("role", "button");
      header.setAttribute("title", "Sort by this column");
      header.style.cursor = "pointer";
      header.addEventListener("click", function () { sortBy(table, header, index); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " " || event.key === "Spacebar") {
          event.preventDefault(); // Space would scroll the page
          sortBy(table, header, index);
        }
      });
    });
  }

  function setup() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
