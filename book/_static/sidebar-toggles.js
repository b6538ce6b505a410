/* Make every chapter-list (primary) and page-contents (secondary) toggle button work.
 *
 * pydata-sphinx-theme 0.17 adds toggle buttons to its top bar, and sphinx-book-theme 1.3
 * keeps its own in the article header. Both themes bind their click handlers with
 * document.querySelector(".primary-toggle"), i.e. to the first button only: the top-bar
 * one, which sphinx-book-theme hides. The visible buttons did nothing, so on a phone the
 * chapter list could not be opened (pydata-sphinx-theme issue #2451).
 *
 * Here every other toggle hands its click to the first one, which carries both themes'
 * behaviour: on a wide screen the sidebar collapses and comes back, on a narrow one it
 * opens as a dialog that Escape or a click outside closes.
 */
(function () {
  function forwardClicks(selector) {
    const buttons = document.querySelectorAll(selector);
    if (buttons.length < 2) return;
    const bound = buttons[0];
    buttons.forEach((button, index) => {
      if (index === 0) return;
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        bound.click();
      });
    });
  }
  function setup() {
    forwardClicks(".primary-toggle");
    forwardClicks(".secondary-toggle");
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
