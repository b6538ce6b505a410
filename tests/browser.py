"""Headless Chromium for the browser test of the built book (tests/test_book_browser.py).

Plain helpers, no pytest in here: a static file server bound to 127.0.0.1, a chromium session
that cannot reach any other host, and one detector function per check. Every detector takes
the selenium driver (on a page that ``load_page`` has opened) and returns a list of short
problem strings; an empty list means the check passed.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

INSTALL_HINT = "apt-get install -y chromium chromium-driver  (as root; Debian/Ubuntu packages)"

# name -> (width, height) of the CSS viewport
SIZES = {"laptop": (1280, 800), "phone": (390, 844)}

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    # Every host but 127.0.0.1 fails to resolve, so the test sees what a reader offline sees.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)


# --------------------------------------------------------------------------- environment


def find_browser() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or a sentence saying what is missing."""
    missing = []
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.access("/usr/bin/chromedriver", os.X_OK) else None
    )
    if chromium is None:
        missing.append("chromium")
    if driver is None:
        missing.append("chromedriver")
    hints = [f"{' and '.join(missing)} not found; install with: {INSTALL_HINT}"] if missing else []
    try:
        import selenium  # noqa: F401
    except ImportError:
        hints.append("the Python package selenium is not installed; install with: pip install selenium")
    if hints:
        return "; ".join(hints)
    return chromium, driver


# --------------------------------------------------------------------------- server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature is the stdlib's
        pass

    def send_head(self):
        # Browsers ask for /favicon.ico on their own; a missing one is no fault of the pages.
        if self.path.split("?")[0] == "/favicon.ico" and not Path(self.translate_path("/favicon.ico")).exists():
            self.send_response(204)
            self.end_headers()
            return None
        return super().send_head()

    def end_headers(self):
        # Every page load reads the files afresh: a rebuilt book is never served from cache.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextlib.contextmanager
def serve(directory: Path):
    """Serve ``directory`` on http://127.0.0.1:<free port>/ from a background thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"serve {directory}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --------------------------------------------------------------------------- browser


def start_chromium(size: str, chromium: str, chromedriver: str, profile_dir: Path):
    """A headless chromium whose CSS viewport is exactly SIZES[size]; raises if it is not."""
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager go looking for drivers
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    width, height = SIZES[size]
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    if size == "phone":
        # A real phone viewport: device-width 390 CSS px, 3 device pixels each, touch, mobile layout.
        options.add_experimental_option(
            "mobileEmulation", {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 3.0}}
        )
    else:
        options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        if size != "phone":
            # The same numbers for the CSS viewport whatever window decorations the build adds.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
        driver.get('data:text/html,<meta name="viewport" content="width=device-width, initial-scale=1">')
        got = driver.execute_script(
            "return [innerWidth, innerHeight, document.documentElement.clientWidth]")
        if got != [width, height, width]:
            raise RuntimeError(f"{size}: asked for a {width}x{height} viewport, chromium gave "
                               f"innerWidth x innerHeight {got[0]}x{got[1]}, clientWidth {got[2]}")
    except BaseException:
        driver.quit()
        raise
    return driver


class Browsers:
    """One chromium session per window size, started when first asked for, each in its own fresh profile."""

    def __init__(self, chromium: str, chromedriver: str):
        self.chromium, self.chromedriver = chromium, chromedriver
        self._tmp = tempfile.TemporaryDirectory(prefix="course-chromium-")
        self._drivers = {}

    def __getitem__(self, size: str):
        if size not in self._drivers:
            profile = Path(self._tmp.name) / size
            profile.mkdir()
            self._drivers[size] = start_chromium(size, self.chromium, self.chromedriver, profile)
        return self._drivers[size]

    def close(self):
        for driver in self._drivers.values():
            with contextlib.suppress(Exception):
                driver.quit()
        self._drivers.clear()
        self._tmp.cleanup()


# --------------------------------------------------------------------------- loading a page

_WAIT_FOR_PAGE = r"""
const done = arguments[arguments.length - 1];
const deadline = Date.now() + arguments[0] * 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const notes = [];
  while (document.readyState !== "complete" && Date.now() < deadline) await sleep(50);
  // MathJax: wait for its startup promise (the first typeset of the page) when MathJax is on the page.
  // Once the page has loaded, a MathJax script that worked has defined MathJax.startup; allow 2 s more.
  const mathjaxScript = document.querySelector("script[src*='mathjax' i], script[id*='mathjax' i]");
  if (mathjaxScript || window.MathJax) {
    const startupBy = Math.min(deadline, Date.now() + 2000);
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() < startupBy) await sleep(50);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      try {
        await Promise.race([MathJax.startup.promise, sleep(Math.max(0, deadline - Date.now()))]);
      } catch (e) { notes.push("MathJax startup failed: " + e); }
    } else {
      notes.push("MathJax did not start (" + (mathjaxScript ? mathjaxScript.src || mathjaxScript.id : "no script") + ")");
    }
  }
  // Images: lazy ones would never load off screen in a headless window, so load them all now.
  const imgs = Array.from(document.images);
  for (const img of imgs) if (img.loading === "lazy") img.loading = "eager";
  await Promise.race([
    Promise.all(imgs.map((img) => img.complete ? null : new Promise((r) => {
      img.addEventListener("load", r, {once: true}); img.addEventListener("error", r, {once: true});
    }))),
    sleep(Math.max(0, deadline - Date.now())),
  ]);
  if (document.fonts) await Promise.race([document.fonts.ready, sleep(Math.max(0, deadline - Date.now()))]);
  // Two frames so that layout after the last change has happened.
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  done(notes);
})().catch((e) => done(["waiting for the page failed: " + e]));
"""


def drain_logs(driver) -> None:
    """Forget every console message and network event logged so far."""
    driver.get_log("browser")
    driver.get_log("performance")


def load_page(driver, url: str, timeout: float = 20) -> list[str]:
    """Open ``url`` (logs drained first) and wait until MathJax has typeset it and its images settled.

    Returns notes on what did not finish (MathJax that never started, ...), for the raw-TeX check.
    """
    # Every page is a reader's first: no theme mode, sidebar scroll or other state kept from the last page.
    driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": _origin(url), "storageTypes": "all"})
    drain_logs(driver)
    driver.get(url)
    notes = driver.execute_async_script(_WAIT_FOR_PAGE, timeout)
    time.sleep(0.2)  # late requests (async scripts, fonts) reach the performance log
    return list(notes)


# --------------------------------------------------------------------------- detectors

_RAW_TEX = r"""
const markers = ["\\(", "\\)", "\\[", "\\]", "$$", "\\begin{", "\\end{", "\\frac{"];
const skip = "pre, code, kbd, samp, textarea, script, style, noscript, mjx-container, .highlight, .MathJax";
const found = [];
let mathCount = 0;
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const parent = node.parentElement;
  if (!parent || parent.closest(skip)) continue;
  if (parent.checkVisibility && !parent.checkVisibility()) continue;
  const text = node.textContent;
  for (const m of markers) {
    const i = text.indexOf(m);
    if (i >= 0) {
      found.push(JSON.stringify(text.slice(Math.max(0, i - 20), i + 40).replace(/\s+/g, " ").trim()));
      break;
    }
  }
}
const unrendered = [];
for (const el of document.querySelectorAll(".math")) {
  if (el.closest("pre, code")) continue;
  mathCount++;
  if (!el.querySelector("mjx-container") && !el.matches("mjx-container")) {
    unrendered.push(JSON.stringify(el.textContent.replace(/\s+/g, " ").trim().slice(0, 50)));
  }
}
return [found, unrendered, mathCount];
"""


def raw_tex_problems(driver) -> list[str]:
    """Check 1: TeX source visible as text after MathJax ran, and .math elements MathJax left alone."""
    found, unrendered, math_count = driver.execute_script(_RAW_TEX)
    problems = []
    if found:
        problems.append(f"raw TeX in the text ({len(found)}x), e.g. " + ", ".join(_dedupe(found)[:3]))
    if unrendered:
        problems.append(f"{len(unrendered)} of {math_count} .math elements have no mjx-container"
                        " (MathJax did not render them), e.g. " + ", ".join(_dedupe(unrendered)[:3]))
    return problems


_BROKEN_IMAGES = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const out = [];
  for (const img of document.images) {
    const src = img.getAttribute("src") || "";
    if (!img.complete) { out.push("image still loading: " + (img.currentSrc || src)); continue; }
    if (img.naturalWidth !== 0) continue;
    if (!src && !img.srcset) { out.push("image without src (alt " + JSON.stringify(img.alt) + ")"); continue; }
    // naturalWidth 0 also fits an SVG without a size; decode() tells a broken image apart.
    try { await img.decode(); continue; } catch (e) {}
    out.push("broken image: " + (img.currentSrc || src));
  }
  done(out);
})().catch((e) => done(["checking images failed: " + e]));
"""


def broken_image_problems(driver) -> list[str]:
    """Check 2a: images that finished loading without any pixels (404, not an image, blocked host)."""
    return _dedupe(driver.execute_async_script(_BROKEN_IMAGES))


_IMAGE_ALTS = r"""
return Array.from(document.images).map((img) => [img.getAttribute("alt"), img.getAttribute("src") || ""]);
"""

_FILE_NAME_ALT = re.compile(
    r"""\.(png|jpe?g|gif|svg|webp|bmp|tiff?|ico|avif|pdf)\s*$   # ends like a file name
        | [0-9a-f]{32,}                                          # a content hash
    """,
    re.IGNORECASE | re.VERBOSE,
)


def alt_text_problems(driver) -> list[str]:
    """Check 2b: alt text that is a file name, a path or a hash instead of words for a reader."""
    problems = []
    for alt, src in driver.execute_script(_IMAGE_ALTS):
        alt = (alt or "").strip()
        if alt and (_FILE_NAME_ALT.search(alt) or alt in (src, src.rsplit("/", 1)[-1])):
            same = alt == src
            problems.append(f"alt text is a file name: alt={alt!r}" + ("" if same else f" (src {src!r})"))
    return _dedupe(problems)


def console_error_problems(driver) -> list[str]:
    """Check 3: console messages at level SEVERE since the last drain (console.error, JS errors, failed loads)."""
    return _dedupe(
        f"console error: {entry.get('message', '')[:300]}"
        for entry in driver.get_log("browser")
        if entry.get("level") == "SEVERE"
    )


def external_request_problems(driver, base_url: str) -> list[str]:
    """Check 4: requests to anything but ``base_url``'s host and port (read from the performance log)."""
    allowed = urlsplit(base_url)
    problems = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method = message.get("method")
        if method == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
        elif method == "Network.webSocketCreated":
            url = message["params"]["url"]
        else:
            continue
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            continue
        if parts.scheme in ("http", "https") and parts.netloc == allowed.netloc and parts.scheme == allowed.scheme:
            continue
        problems.append(f"request to another host: {url[:200]}")
    return _dedupe(problems)


_OVERFLOW = r"""
const root = document.documentElement;
const limit = root.clientWidth;           // what the viewport shows without a horizontal scrollbar
const result = {scrollWidth: root.scrollWidth, innerWidth: window.innerWidth, clientWidth: limit, culprits: []};
if (root.scrollWidth <= Math.max(limit, 0) && root.scrollWidth <= window.innerWidth) return result;
const describe = (el) => {
  let s = el.tagName.toLowerCase();
  if (el.id) s += "#" + el.id;
  for (const c of Array.from(el.classList).slice(0, 3)) s += "." + c;
  return s;
};
const path = (el) => {
  const parts = [];
  for (let e = el; e && e !== document.body && parts.length < 4; e = e.parentElement) parts.unshift(describe(e));
  return parts.join(" > ");
};
const found = [];
const visit = (el) => {
  const style = getComputedStyle(el);
  if (style.display === "none" || style.position === "fixed") return;
  const r = el.getBoundingClientRect();
  const right = r.right + window.scrollX;
  if (right > limit + 0.5 && r.width > 0) found.push([right, el]);
  // Content inside a scrolling or clipping box does not widen the page.
  if (style.overflowX !== "visible") return;
  for (const child of el.children) visit(child);
};
for (const child of document.body.children) visit(child);
// The element that sticks out furthest (the innermost one of a nest that ends at the same x), then
// up to two more elsewhere on the page: neither inside nor around one already named.
found.sort((a, b) => b[0] - a[0]);
const named = [];
for (const [right, el] of found) {
  if (named.length >= 3) break;
  if (found.some(([r2, e2]) => e2 !== el && el.contains(e2) && r2 >= right - 0.5)) continue;
  if (named.some((n) => n.contains(el) || el.contains(n))) continue;
  named.push(el);
  const text = (el.textContent || "").replace(/\s+/g, " ").trim().slice(0, 40);
  result.culprits.push(path(el) + " reaches x=" + Math.round(right) + (text ? " (" + JSON.stringify(text) + ")" : ""));
}
return result;
"""


def overflow_problems(driver) -> list[str]:
    """Check 5: the page is wider than the viewport (a horizontal scrollbar); names what sticks out."""
    r = driver.execute_script(_OVERFLOW)
    width = min(r["clientWidth"], r["innerWidth"])
    if r["scrollWidth"] <= width:
        return []
    where = "; ".join(r["culprits"]) or "no single element found"
    return [f"page is {r['scrollWidth']}px wide in a {width}px viewport; widest: {where}"]


# ----- check 6: the chapter list (primary sidebar) opens and closes with its toggle

_CHAPTER_LINKS_ON_SCREEN = r"""
// Links of the chapter list (the toctree navigation of the primary sidebar, wherever the theme moved it)
// that a reader can see now: rendered, not transparent, inside the viewport, and on top at their centre.
const links = Array.from(document.querySelectorAll(
  "nav.bd-docs-nav a[href], #pst-primary-sidebar nav a[href], #pst-primary-sidebar-modal nav a[href]"));
const vw = document.documentElement.clientWidth, vh = window.innerHeight;
const onScreen = (el) => {
  if (el.checkVisibility && !el.checkVisibility({opacityProperty: true, visibilityProperty: true})) return false;
  const r = el.getBoundingClientRect();
  if (r.width < 1 || r.height < 1 || r.right <= 0 || r.bottom <= 0 || r.left >= vw || r.top >= vh) return false;
  const x = (Math.max(r.left, 0) + Math.min(r.right, vw)) / 2, y = (Math.max(r.top, 0) + Math.min(r.bottom, vh)) / 2;
  const hit = document.elementFromPoint(x, y);
  return !!hit && (hit === el || el.contains(hit));
};
return [links.length, links.filter(onScreen).map((a) => a.textContent.replace(/\s+/g, " ").trim())];
"""

_TOGGLES = r"""
// Every .primary-toggle with whether a reader can see (and so click) it.
return Array.from(document.querySelectorAll(".primary-toggle")).map((el, i) => {
  const r = el.getBoundingClientRect();
  const visible = (!el.checkVisibility || el.checkVisibility({opacityProperty: true, visibilityProperty: true}))
    && r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0
    && r.top < window.innerHeight && r.left < document.documentElement.clientWidth;
  const holder = el.parentElement && el.parentElement.closest("[class]");
  return [i, visible, holder ? "." + holder.classList[0] : "?"];
});
"""

_CLOSE_CONTROLS = r"""
// Visible buttons that say they close the open chapter list (a theme's or a fix's close control).
const scopes = document.querySelectorAll("#pst-primary-sidebar-modal[open], #pst-primary-sidebar, .bd-sidebar-primary");
for (const scope of scopes) {
  for (const b of scope.querySelectorAll("button, [role=button], a[href='#']")) {
    const label = [b.getAttribute("aria-label"), b.getAttribute("title"), b.className, b.textContent].join(" ");
    const r = b.getBoundingClientRect();
    if (/close|dismiss|hide|×|✕/i.test(label) && r.width > 0 && r.height > 0) return b;
  }
}
return null;
"""


def chapter_links_on_screen(driver) -> tuple[int, list[str]]:
    """(how many chapter-list links the page has, the texts of those a reader can see right now)."""
    total, visible = driver.execute_script(_CHAPTER_LINKS_ON_SCREEN)
    return total, visible


def _wait_for(driver, want_visible: bool, timeout: float = 3.0) -> list[str]:
    """Poll until some (want_visible) or no (not want_visible) chapter link is on screen; return the last seen."""
    deadline = time.monotonic() + timeout
    while True:
        _, visible = chapter_links_on_screen(driver)
        if bool(visible) == want_visible or time.monotonic() > deadline:
            return visible
        time.sleep(0.1)


def _visible_toggle(driver):
    from selenium.webdriver.common.by import By

    toggles = driver.find_elements(By.CSS_SELECTOR, ".primary-toggle")
    states = driver.execute_script(_TOGGLES)
    for (index, visible, _where), element in zip(states, toggles):
        if visible:
            return element, states
    return None, states


def _click(driver, element) -> str | None:
    """Click like a reader; return why that was impossible, or None."""
    from selenium.common.exceptions import WebDriverException

    try:
        element.click()
    except WebDriverException as error:
        return type(error).__name__ + ": " + (error.msg or "").splitlines()[0][:160]
    return None


def sidebar_toggle_problems(driver, size: str) -> list[str]:
    """Check 6: the chapter list opens and closes with the visible ☰ toggle.

    phone  (narrow, below the theme's lg breakpoint): hidden at first; the toggle opens it (PST opens
           it as a modal <dialog>); Escape, or failing that a close control, hides it again.
    laptop (wide): shown at first; the toggle collapses it (sphinx-book-theme's .pst-sidebar-hidden),
           a second click brings it back.
    Leaves the page in whatever state it reached: call it last on a page.
    """
    total, visible = chapter_links_on_screen(driver)
    if total == 0:
        return ["no chapter list (nav.bd-docs-nav links) on the page"]
    toggle, states = _visible_toggle(driver)
    if toggle is None:
        return [f"no visible .primary-toggle to click (found {len(states)}: "
                + ", ".join(f"{_nth(i)} in {w} {'visible' if v else 'hidden'}" for i, v, w in states) + ")"]
    index, _, holder = next(s for s in states if s[1])
    which = f".primary-toggle ({_nth(index)} of {len(states)}, in {holder})"
    problems = _toggle_problems(driver, size, toggle, which, total, visible)
    if problems and len(states) > 1 and ("did not show" in problems[0] or "did not hide" in problems[0]):
        problems[0] += _hidden_toggle_hint(driver, size, states)
    return problems


def _nth(index: int) -> str:
    return {0: "1st", 1: "2nd", 2: "3rd"}.get(index, f"{index + 1}th")


def _hidden_toggle_hint(driver, size: str, states) -> str:
    """When the visible toggle fails: would a script click on a hidden one have worked? (pst issue #2451)"""
    want_visible = size == "phone"
    for index, visible, holder in states:
        if visible:
            continue
        driver.execute_script("document.querySelectorAll('.primary-toggle')[arguments[0]].click()", index)
        if bool(_wait_for(driver, want_visible, timeout=1.5)) == want_visible:
            return (f"; a script click on the hidden {_nth(index)} .primary-toggle (in {holder}) does "
                    f"{'show' if want_visible else 'hide'} it: the handlers are bound to the hidden button"
                    " (pydata-sphinx-theme issue #2451)")
    return ""


def _toggle_problems(driver, size, toggle, which, total, visible) -> list[str]:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    if size == "phone":
        if visible:
            return [f"chapter list is on screen before the toggle was clicked ({visible[0]!r})"]
        why = _click(driver, toggle)
        if why:
            return [f"could not click the visible {which}: {why}"]
        shown = _wait_for(driver, True)
        if not shown:
            return [f"clicking the visible {which} did not show the chapter list ({total} links, none on screen)"]
        ActionChains(driver).send_keys(Keys.ESCAPE).perform()
        left = _wait_for(driver, False)
        if not left:
            return []
        close = driver.execute_script(_CLOSE_CONTROLS)
        if close is not None and _click(driver, close) is None and not _wait_for(driver, False):
            return []
        return [f"the chapter list opened by {which} did not close on Escape"
                + (" nor with its close control" if close is not None else " and has no close control")
                + f" ({left[0]!r} still on screen)"]

    if not visible:
        return [f"chapter list is not on screen at first ({total} links, none visible)"]
    why = _click(driver, toggle)
    if why:
        return [f"could not click the visible {which}: {why}"]
    left = _wait_for(driver, False)
    if left:
        if driver.execute_script("return !!document.querySelector('dialog[open]')"):
            return [f"clicking the visible {which} opened the chapter list as a modal dialog instead of "
                    "collapsing the sidebar (sphinx-book-theme collapses it at >= 992px)"]
        return [f"clicking the visible {which} did not hide the chapter list ({left[0]!r} still on screen)"]
    toggle, _ = _visible_toggle(driver)
    if toggle is None:
        return [f"after {which} hid the chapter list no toggle is visible to bring it back"]
    why = _click(driver, toggle)
    if why:
        return [f"could not click the toggle a second time: {why}"]
    if not _wait_for(driver, True):
        return ["clicking the toggle again did not bring the chapter list back"]
    return []


# --------------------------------------------------------------------------- all checks on one page

CHECKS = ("raw_tex", "broken_images", "image_alt", "console_errors", "external_requests", "overflow", "sidebar_toggle")


def check_page(driver, url: str, base_url: str, size: str, checks=CHECKS) -> dict[str, list[str]]:
    """Load ``url`` and run the named checks on it; {check: problems}.

    The console and network logs are read after the static checks and again after the
    sidebar toggle (errors in its click handlers count as console errors too).
    """
    out = {name: [] for name in checks}

    def run(name, detector, *args):
        # A detector that breaks on one page is a finding for that page, not the end of the run.
        try:
            return detector(driver, *args)
        except Exception as error:  # noqa: BLE001 - selenium raises many kinds; all are reported
            return [f"the {name} check itself failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"]

    try:
        notes = load_page(driver, url)
    except Exception as error:  # noqa: BLE001
        why = f"the page did not load: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        return {name: [why] for name in checks}
    if "raw_tex" in checks:
        out["raw_tex"] = notes + run("raw TeX", raw_tex_problems)
    if "broken_images" in checks:
        out["broken_images"] = run("broken image", broken_image_problems)
    if "image_alt" in checks:
        out["image_alt"] = run("alt text", alt_text_problems)
    if "overflow" in checks:
        out["overflow"] = run("overflow", overflow_problems)
    console = run("console", console_error_problems)
    network = run("network", external_request_problems, base_url)
    if "sidebar_toggle" in checks:
        out["sidebar_toggle"] = run("sidebar toggle", sidebar_toggle_problems, size)
        time.sleep(0.1)
        console += run("console", console_error_problems)
        network += run("network", external_request_problems, base_url)
    if "console_errors" in checks:
        out["console_errors"] = _dedupe(console)
    if "external_requests" in checks:
        out["external_requests"] = _dedupe(network)
    return out


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _dedupe(items) -> list[str]:
    return list(dict.fromkeys(items))
