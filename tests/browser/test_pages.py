"""The three report pages in a real browser at 1280 x 800: nothing overflows, every image decodes, no errors.

Each page is checked twice: as it opens, and with every ``<details>`` opened (collapsed tables
must fit too). "Fits" means: the document is no wider than the window, no element reaches past
its right edge, no scroll box hides columns, and every SVG text lies inside its chart as the
browser itself measures it. A full-page screenshot of each page is kept (see conftest).
"""

from __future__ import annotations

import csv

import pytest

from tests.browser.conftest import HEIGHT, WIDTH

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Elements that reach past the right edge of the window, scroll boxes that hide content, and
# SVG text outside its chart; each as a short description.
_LAYOUT_PROBLEMS = """
const width = document.documentElement.clientWidth;
const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (el.getAttribute('class') ? '.' + el.getAttribute('class').split(' ').join('.') : '');
const problems = [];
for (const el of document.querySelectorAll('body *')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 && r.height === 0) continue;
  if (r.right > width + 0.5 || r.left < -0.5)
    problems.push(`${name(el)} spans ${Math.round(r.left)}..${Math.round(r.right)} px`);
}
for (const el of document.querySelectorAll('body *')) {
  const style = getComputedStyle(el).overflowX;
  if ((style === 'auto' || style === 'scroll' || style === 'hidden') && el.scrollWidth > el.clientWidth + 1)
    problems.push(`${name(el)} hides ${el.scrollWidth - el.clientWidth} px of its content`);
}
for (const svg of document.querySelectorAll('svg')) {
  const box = svg.getBoundingClientRect();  // screen boxes include rotations (the y-axis label)
  for (const t of svg.querySelectorAll('text')) {
    const b = t.getBoundingClientRect();
    if (b.left < box.left - 0.5 || b.right > box.right + 0.5 || b.top < box.top - 0.5 || b.bottom > box.bottom + 0.5)
      problems.push(`svg text "${t.textContent}" spans x ${(b.left - box.left).toFixed(1)}..`
                    + `${(b.right - box.left).toFixed(1)}, y ${(b.top - box.top).toFixed(1)}..`
                    + `${(b.bottom - box.top).toFixed(1)} in a ${box.width} x ${box.height} px chart`);
  }
}
return problems;
"""

# Open every <details>, make lazy images load, and wait until each has decoded or failed.
_LOAD_EVERYTHING = """
const done = arguments[arguments.length - 1];
document.querySelectorAll('details').forEach(d => { d.open = true; });
const images = Array.from(document.images);
images.forEach(img => { img.loading = 'eager'; });
Promise.all(images.map(img => img.decode().then(() => null, () => null))).then(() => done(
  images.map(img => [img.getAttribute('alt') || '', (img.getAttribute('src') || '').slice(0, 60),
                     img.naturalWidth])));
"""


def _open(browser, path):
    browser.get_log("browser")  # drop what earlier pages logged
    browser.set_window_size(WIDTH, HEIGHT)
    browser.get(path.as_uri())
    assert browser.execute_script("return window.innerWidth") == WIDTH


def _check_layout(browser, when: str) -> None:
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= WIDTH, f"{when}: the page is {width} px wide in a {WIDTH} px window"
    problems = browser.execute_script(_LAYOUT_PROBLEMS)
    assert not problems, f"{when}: " + "; ".join(problems[:12])


def _screenshot(browser, artifacts, name: str) -> None:
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WIDTH, min(max(height, HEIGHT), 12000))
    target = artifacts / f"{name}.png"
    assert browser.save_screenshot(str(target)) and target.stat().st_size > 0
    browser.set_window_size(WIDTH, HEIGHT)


def check_page(browser, path, artifacts, name: str) -> list[list]:
    """All the checks of the module docstring; returns [alt, src prefix, naturalWidth] per image."""
    _open(browser, path)
    _check_layout(browser, f"{name} as it opens")
    _screenshot(browser, artifacts, name)
    browser.set_script_timeout(60)
    images = browser.execute_async_script(_LOAD_EVERYTHING)
    _check_layout(browser, f"{name} with every <details> open")
    broken = [(alt, src) for alt, src, natural in images if not natural > 0]
    assert not broken, f"{name}: images that did not decode: {broken}"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"{name}: console errors: {errors}"
    _screenshot(browser, artifacts, f"{name}-open")
    return images


def test_explanation_page_fits_and_shows_the_path(browser, pages, artifacts):
    images = check_page(browser, pages.explanation, artifacts, "explanation")
    assert any(src.startswith("data:image/gif") for _, src, _ in images)  # the animated path
    assert len(images) >= 5  # the strip's panels and the GIF
    # Measured text widths leave room for every chart note: none is cut with an ellipsis.
    cut = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg text')).map(t => t.textContent)"
        ".filter(t => t.includes('\u2026'))")
    assert not cut, cut
    assert browser.find_element("css selector", "a[href='path.gif']")
    assert (pages.explanation.parent / "path.gif").is_file()
    # k=3: the three counterfactuals side by side, each picture decoded (checked with the rest above).
    assert len(browser.find_elements("css selector", "figure.alternative img")) == 3


def test_comparison_page_fits_with_captions_and_the_difference_panel(browser, pages, artifacts):
    check_page(browser, pages.comparison, artifacts, "comparison")
    _open(browser, pages.comparison)
    last_header = browser.execute_script(
        "const h = document.querySelectorAll('table th'); return h[h.length - 1].getBoundingClientRect().right")
    assert last_header <= WIDTH
    figures = browser.find_elements("css selector", "figure.classifier")
    assert len(figures) == 2
    for figure in figures:
        captions = [c.text for c in figure.find_elements("css selector", ".strip figcaption")]
        assert captions[0] == "original" and captions[-1].startswith("difference")
        difference = figure.find_element("css selector", "figure.difference img")
        right = browser.execute_script("return arguments[0].getBoundingClientRect().right", difference)
        assert right <= WIDTH  # on screen, not cut off


def test_global_page_opens_with_the_overview(browser, pages, artifacts):
    check_page(browser, pages.global_page, artifacts, "global")
    _open(browser, pages.global_page)
    headings = [h.text for h in browser.find_elements("css selector", "h2")]
    assert headings[0] == "Overview"
    top = browser.execute_script(
        "return document.querySelector('#overview').getBoundingClientRect().top")
    assert top < HEIGHT  # the overview is on the first screen
    # Every pair's details start closed; the overview shows before -> after thumbnails.
    assert browser.execute_script("return Array.from(document.querySelectorAll('details')).every(d => !d.open)")
    thumbnails = browser.find_elements("css selector", "#overview ~ div a.example img")
    assert len(thumbnails) >= 2 * 3  # start and counterfactual of the three items
    # The batch wrote its CSV tables beside the journals.
    with open(pages.batch / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3
