"""Opens the built book in headless Chromium and checks what a reader meets.

Usage: rendered_book.py BOOK_DIR SUMMARY_MD SCREENSHOT_DIR

Reads one line from stdin before it opens the first page (the caller builds
the book meanwhile, while the browser starts); an empty stdin stops it.

Every page of SUMMARY.md must load without console errors or failed requests,
its internal links and anchors must resolve, no reference link may be left
without its target, hidden lines of Rust blocks must be hidden until the eye
button is pressed (the first block of each page is clicked with the mouse,
as a reader does), no line of a code block may be wider than the block (the
hidden ones once the eye button shows them), no page may show a playground
Run button, and the search box must find the recipes by their key words. A
screenshot of every page goes to SCREENSHOT_DIR: of its top, as a reader
first sees it, or of the whole page when it has a problem that the report
does not quote. Exits non-zero on any problem, listing each one.

The pages are checked in parallel tabs of one browser, each with a few
round trips: the checks run inside the page, and every wait is on the
condition itself.
"""

import asyncio
import functools
import http.server
import os
import pathlib
import re
import sys
import threading
import time
import urllib.parse

from playwright.async_api import async_playwright

# Key word typed into the search box -> a page its results must include.
SEARCHES = {
    "authenticate": "basic_auth.html",
    "Handshake": "basic_auth.html",
    "Bearer": "basic_auth.html",
    "skeptic": "testing.html",
    "do_put": "parquet_storage.html",
    "drop_dataset": "parquet_storage.html",
    "backpressure": "streaming_parquet.html",
    "TLS": "tls.html",
    "keep-alive": "grpc_options.html",
    "NOT_SERVING": "grpc_services.html",
    "profiles": "key_value.html",
    "ResourceExhausted": "middleware.html",
    "shards": "several_servers.html",
    "backoff": "many_servers.html",
    "traceparent": "tracing.html",
    "clear_token": "flight_sql.html",
    "SQLite": "flight_sql.html",
    "prepared statement": "flight_sql.html",
    "app_metadata": "exchange.html",
    "trailers": "result_metadata.html",
    "RenewFlightEndpoint": "long_queries.html",
    "read_footer_length": "stored_arrow.html",
    "duplex": "testing_service.html",
}

# A laptop's screen. The book's code blocks are as wide (750 pixels, 86
# characters) at any width from 1024 pixels up.
VIEWPORT = {"width": 1280, "height": 800}

# Pages open at once, beside the search tab: more gains nothing on 2 cores.
TABS = 3

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Runs in the page once it has loaded: what the page links to and defines,
# the prose's unresolved reference links, Run buttons, and the state of
# every code block's hidden lines. Marks each code block with its number.
SURVEY = """
async () => {
  await document.fonts.ready;
  const all = (selector, root = document) => [...root.querySelectorAll(selector)];
  const prose = all('main p, main li, main td');
  const blocks = all('main pre > code').map((code, index) => {
    code.dataset.block = index + 1;
    const boring = all('.boring', code);
    return {
      index: index + 1,
      language: [...code.classList].find(c => c.startsWith('language-')) || 'text',
      hidden: boring.length,
      shownBefore: boring.filter(e => e.checkVisibility()).length,
      eye: !!code.parentElement.querySelector('button[title="Show hidden lines"]'),
    };
  });
  return {
    ids: all('[id]').map(e => e.id),
    hrefs: all('main a[href]').map(a => a.getAttribute('href')),
    html: prose.map(e => e.innerHTML).join('\\n'),
    // Without inline code, where `a[i][j]` is no link.
    text: prose.map(e => {
      const copy = e.cloneNode(true);
      copy.querySelectorAll('code').forEach(c => c.remove());
      return copy.textContent;
    }).join('\\n'),
    runButtons: all('.play-button').length,
    blocks,
  };
}
"""

# Shows the hidden lines of every block but the one the mouse clicked
# (`first`), measures the code blocks, and hides the lines again; gives what
# was seen at each step. All clicks come before the checks that follow them,
# so that the page is laid out once per step, not once per block.
TOGGLE_AND_MEASURE = """
(first) => {
  const all = (selector, root = document) => [...root.querySelectorAll(selector)];
  const codes = all('main pre > code');
  const others = codes.filter(code => code.querySelector('.boring') && code.dataset.block != first);
  const press = title => others.forEach(code => {
    const button = code.parentElement.querySelector(`button[title="${title}"]`);
    if (button) button.click();
  });
  const seen = {};
  press('Show hidden lines');
  for (const code of codes.filter(code => code.querySelector('.boring'))) {
    const nonBlank = all('.boring', code).filter(e => e.textContent.trim());
    seen[code.dataset.block] = {shown: nonBlank.every(e => e.checkVisibility())};
  }
  const fits = new Set();
  const measured = codes.map(code => measure(code, fits));
  press('Hide lines');
  for (const code of others) {
    seen[code.dataset.block].hiddenAgain = !all('.boring', code).some(e => e.checkVisibility());
  }
  return {seen, measured: measured.filter(m => m.scrolls), fits: [...fits]};

  // Whether a block scrolls sideways (its text reaches into its right
  // padding or past it), and then its lines that do, with their text; and
  // how many characters fit in the block.
  function measure(code, fits) {
    const box = code.getBoundingClientRect();
    const style = getComputedStyle(code);
    const textLeft = box.left + code.clientLeft + parseFloat(style.paddingLeft);
    const edge = box.left + code.clientLeft + code.clientWidth;
    const textRight = edge - parseFloat(style.paddingRight);
    const probe = document.createElement('span');
    probe.textContent = 'x'.repeat(100);
    code.appendChild(probe);
    const charWidth = probe.getBoundingClientRect().width / 100;
    probe.remove();
    const result = {
      index: Number(code.dataset.block),
      fits: Math.floor((textRight - textLeft) / charWidth + 0.01),
      scrolls: code.scrollWidth > code.clientWidth,
    };
    fits.add(result.fits);
    if (!result.scrolls) return result;
    const lines = [];
    let line = {text: '', right: -Infinity, hidden: false};
    const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const boring = !!node.parentElement.closest('.boring');
      let start = 0;
      for (;;) {
        const newline = node.data.indexOf('\\n', start);
        const end = newline < 0 ? node.data.length : newline;
        if (end > start) {
          const range = document.createRange();
          range.setStart(node, start);
          range.setEnd(node, end);
          for (const rect of range.getClientRects()) line.right = Math.max(line.right, rect.right);
          line.text += node.data.slice(start, end);
          line.hidden = line.hidden || boring;
        }
        if (newline < 0) break;
        lines.push(line);
        line = {text: '', right: -Infinity, hidden: false};
        start = newline + 1;
      }
    }
    lines.push(line);
    result.overflowing = lines
      .filter(line => line.right > textRight + 0.5)
      .map(({text, hidden}) => ({text, hidden}));
    result.heading = headingBefore(code.parentElement);
    return result;
  }

  function headingBefore(element) {
    let last = null;
    for (const h of all('main h1, main h2, main h3, main h4')) {
      if (h.compareDocumentPosition(element) & Node.DOCUMENT_POSITION_FOLLOWING) last = h;
    }
    return last ? last.textContent.trim() : null;
  }
}
"""


def pages_in(summary: pathlib.Path) -> list[str]:
    names = re.findall(r"\]\(([^)#]+)\.md\)", summary.read_text())
    return [name + ".html" for name in names]


def serve(root: pathlib.Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(root))
    server = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a tab closed while a file was on its way


def watch(page, errors: list[str]) -> None:
    """Collects the page's console errors, script errors and failed requests."""
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"script error: {e}"))
    page.on(
        "response",
        lambda r: errors.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None,
    )
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} ({r.failure})"))


async def check_page(page, errors: list[str], base: str, name: str, shots: pathlib.Path) -> dict:
    """Loads one page in a tab, checks it, and leaves its screenshot; the
    tab's errors are collected in `errors`."""
    problems: list[str] = []
    errors.clear()
    await page.goto(base + name, wait_until="load")
    survey = await page.evaluate(SURVEY)

    for unresolved in re.findall(r"\[<code[^>]*>[^<]*</code>\]", survey["html"]):
        problems.append(f"a link with no target: {unresolved}")
    for unresolved in re.findall(r"\[[^\]\n]+\]\[[^\]\n]*\]", survey["text"]):
        problems.append(f"a link with no target: {unresolved}")
    if survey["runButtons"]:
        problems.append("shows a playground Run button")

    blocks = {block["index"]: block for block in survey["blocks"]}
    hidden = [block for block in survey["blocks"] if block["hidden"]]
    for block in hidden:
        if block["shownBefore"]:
            problems.append(
                f"block {block['index']}: hidden lines show before the eye button is pressed"
            )
        if not block["eye"]:
            problems.append(f"block {block['index']}: has hidden lines but no eye button")
    # The first block with hidden lines is clicked as a reader does, with
    # the mouse; the others get the same click event from the page itself.
    first = next((block["index"] for block in hidden if block["eye"]), 0)
    if first:
        # The browser's own selector: Playwright's `:has()` takes a third
        # of a second on the longest pages.
        clicked = await page.evaluate_handle(
            "n => document.querySelector(`main pre > code[data-block='${n}']`).parentElement", first
        )
    if first and not await mouse_click(page, clicked, "Show hidden lines"):
        problems.append(f"block {first}: the eye button does not show under the mouse")
    toggled = await page.evaluate(TOGGLE_AND_MEASURE, first)
    if first:
        if not await mouse_click(page, clicked, "Hide lines"):
            problems.append(f"block {first}: the hide button does not show under the mouse")
        still_shown = await clicked.evaluate(
            "pre => [...pre.querySelectorAll('.boring')].some(e => e.checkVisibility())"
        )
        toggled["seen"][str(first)]["hiddenAgain"] = not still_shown

    for index, seen in toggled["seen"].items():
        if not blocks[int(index)]["eye"]:
            continue
        if not seen["shown"]:
            problems.append(f"block {index}: the eye button does not show the hidden lines")
        if not seen.get("hiddenAgain", False):
            problems.append(f"block {index}: the hide button does not hide the lines again")

    # A program shown in several blocks of a page, a part in each, has the
    # same long line in each of them: it is named once, with its blocks.
    fits = set(toggled["fits"])
    other_problems = bool(errors or problems)
    wide: dict[str, dict] = {}
    for measured in toggled["measured"]:
        block = blocks[measured["index"]]
        language = block["language"].removeprefix("language-")
        where = f"block {block['index']} ({language}"
        where += f", under {measured['heading']!r})" if measured["heading"] else ")"
        for line in measured["overflowing"]:
            empty = {"fits": measured["fits"], "shown": [], "hidden": []}
            seen = wide.setdefault(line["text"], empty)
            if line["hidden"]:
                seen["hidden"].append(block["index"])
            else:
                seen["shown"].append(where)
        if not measured["overflowing"]:
            problems.append(f"{where}: scrolls sideways, though no line of its text is too wide")
    for text, seen in wide.items():
        places = []
        if seen["shown"]:
            places.append("shown in " + ", ".join(seen["shown"]))
        if seen["hidden"]:
            numbers = ", ".join(map(str, seen["hidden"]))
            blocks_word = "blocks" if len(seen["hidden"]) > 1 else "block"
            places.append(f"behind the eye button in {blocks_word} {numbers}")
        size = f"a code line of {len(text)} characters, where {seen['fits']} fit"
        if len(text) <= seen["fits"]:
            size = f"a code line of {len(text)} characters, wider than its block all the same"
        problems.append(f"{size}: {text.strip()}   [{'; '.join(places)}]")

    # The top of the page, as a reader first sees it, costs a tenth of a
    # second; the whole page (seconds) only when something is wrong on it
    # that a picture shows better than the report (not a long line, which
    # the report quotes).
    shot = shots / name.replace(".html", ".png")
    await page.evaluate("window.scrollTo(0, 0)")
    try:
        await page.screenshot(path=str(shot), full_page=other_problems, timeout=30_000)
    except Exception:
        await page.screenshot(path=str(shot))
    return {
        "name": name,
        "problems": [f"{name}: {p}" for p in dict.fromkeys(errors + problems)],
        "ids": set(survey["ids"]),
        "hrefs": survey["hrefs"],
        "fits": fits,
    }


async def mouse_click(page, pre, title: str) -> bool:
    """Clicks a block's button with the mouse, as a reader does: the block's
    top is scrolled below the menu bar, the mouse moves over the block, and
    once the button has faded in (it shows only under the mouse) the mouse
    clicks it. False if the button does not show."""
    at = await pre.evaluate(
        """pre => {
          window.scrollTo(0, pre.getBoundingClientRect().top + window.scrollY - 200);
          const box = pre.getBoundingClientRect();
          return {x: box.left + 20, y: box.top + 20};
        }"""
    )
    await page.mouse.move(at["x"], at["y"])
    try:
        shown = await page.wait_for_function(
            """([pre, title]) => {
              const button = pre.querySelector(`button[title="${title}"]`);
              if (!button || !button.checkVisibility({visibilityProperty: true})) return null;
              const box = button.getBoundingClientRect();
              return {x: box.left + box.width / 2, y: box.top + box.height / 2};
            }""",
            arg=[pre, title],
            polling="raf",
            timeout=5_000,
        )
    except Exception:
        return False
    at = await shown.json_value()
    await page.mouse.click(at["x"], at["y"])
    return True


def check_links(root: pathlib.Path, base: str, checked: list[dict]) -> list[str]:
    """Every internal link of every page goes to a page, and to an anchor on it."""
    ids = {page["name"]: page["ids"] for page in checked}
    problems = []
    for page in checked:
        name = page["name"]
        for href in page["hrefs"]:
            if re.match(r"^[a-z]+:", href):
                continue
            target = urllib.parse.urljoin(base + name, href)
            path, _, fragment = target[len(base):].partition("#")
            path = path or name
            if path not in ids:
                if not (root / path).is_file():
                    problems.append(f"{name}: link to {href}: no such page")
                continue
            if fragment and urllib.parse.unquote(fragment) not in ids[path]:
                problems.append(f"{name}: link to {href}: no such anchor")
    return problems


async def check_searches(page, base: str) -> list[str]:
    """Types each key word into the search box, as a reader does, and reads
    the results once their header names the word."""
    errors: list[str] = []
    watch(page, errors)
    problems = []
    await page.goto(base + "index.html", wait_until="load")
    await page.click("#mdbook-search-toggle")
    searchbar = page.locator("#mdbook-searchbar")
    answered = False
    for word, expected in SEARCHES.items():
        # The search runs when a key goes up: the word goes in whole but
        # for its last letter, which is typed.
        await searchbar.fill(word[:-1])
        await searchbar.press(word[-1])
        try:
            # The first search waits for the search index to load, too.
            await page.wait_for_function(
                "w => document.querySelector('#mdbook-searchresults-header')"
                ".textContent.includes(\"'\" + w + \"'\")",
                arg=word,
                timeout=5_000 if answered else 20_000,
            )
        except Exception:
            if not answered:
                problems.append(f"search for {word!r}: no results header: the search does not work")
                break
            problems.append(f"search for {word!r}: no results header within 5 s")
            continue
        answered = True
        found = await page.eval_on_selector_all(
            "#mdbook-searchresults a", "els => els.map(e => e.getAttribute('href'))"
        )
        if not found:
            problems.append(f"search for {word!r}: no results")
        elif not any(re.split(r"[?#]", href)[0] == expected for href in found):
            problems.append(f"search for {word!r}: {expected} not among {found}")
    return [f"search: {e}" for e in dict.fromkeys(errors)] + problems


async def run(root: pathlib.Path, pages: list[str], shots: pathlib.Path) -> tuple[list[str], dict]:
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    times = {}
    start = time.monotonic()
    built = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        context = await browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(10_000)
        # A tab for the searches, and TABS for the pages: each checks the
        # next page not yet taken (a new tab costs a renderer process, a
        # tab that goes on to another page costs nothing).
        search_tab, *tabs = await asyncio.gather(*(context.new_page() for _ in range(TABS + 1)))
        times["browser start"] = time.monotonic() - start
        if not await built:
            await browser.close()
            return ["the book was not built"], times
        server, base = serve(root)
        start = time.monotonic()
        queue = list(pages)
        results: dict[str, dict] = {}

        async def check_pages(page):
            errors: list[str] = []
            watch(page, errors)
            while queue:
                name = queue.pop(0)
                try:
                    results[name] = await check_page(page, errors, base, name, shots)
                except Exception as e:
                    stopped = f"{name}: the check of this page stopped: {e}"
                    results[name] = {
                        "name": name,
                        "problems": [stopped],
                        "ids": set(),
                        "hrefs": [],
                        "fits": set(),
                    }

        searched, *_ = await asyncio.gather(
            check_searches(search_tab, base), *map(check_pages, tabs)
        )
        checked = [results[name] for name in pages]
        times["pages and searches"] = time.monotonic() - start
        await browser.close()
        server.shutdown()
    problems = [p for page in checked for p in page["problems"]]
    problems += check_links(root, base, checked)
    problems += searched
    fits = sorted(set().union(*(page["fits"] for page in checked)))
    return problems, {**times, "fits": fits}


def main() -> int:
    root, summary, shots = (pathlib.Path(arg) for arg in sys.argv[1:4])
    shots.mkdir(parents=True, exist_ok=True)
    pages = pages_in(summary)
    problems, times = asyncio.run(run(root, pages, shots))
    fits = times.pop("fits", [])
    took = ", ".join(f"{what} {seconds:.1f} s" for what, seconds in times.items())
    print(f"checked {len(pages)} pages and {len(SEARCHES)} searches ({took})")
    print(f"screenshots in {shots}")
    fit = " or ".join(map(str, fits))
    print(f"code blocks at {VIEWPORT['width']}x{VIEWPORT['height']} fit {fit} characters a line")
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
