"""Opens the built book in headless Chromium and checks what a reader meets.

Usage: rendered_book.py BOOK_DIR SUMMARY_MD SCREENSHOT_DIR

Every page of SUMMARY.md must load without console errors or failed requests,
its internal links and anchors must resolve, hidden lines of Rust blocks must
be hidden until the eye button is pressed, no page may show a playground Run
button, and the search box must find the recipes by their key words. A
screenshot of every page goes to SCREENSHOT_DIR. Exits non-zero on any problem.
"""

import functools
import http.server
import os
import pathlib
import re
import sys
import threading
import urllib.parse

from playwright.sync_api import sync_playwright

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
    "traceparent": "tracing.html",
    "clear_token": "flight_sql.html",
    "app_metadata": "exchange.html",
}

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


def pages_in(summary: pathlib.Path) -> list[str]:
    names = re.findall(r"\]\(([^)#]+)\.md\)", summary.read_text())
    return [name + ".html" for name in names]


def serve(root: pathlib.Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def shown(block, non_blank: bool = False) -> list[bool]:
    """Whether each hidden line of a block is on screen, in one round trip."""
    script = "(els, nonBlank) => els.filter(e => !nonBlank || e.textContent.trim())"
    script += ".map(e => e.checkVisibility())"
    return block.eval_on_selector_all(".boring", script, non_blank)


def main() -> int:
    root, summary, shots = (pathlib.Path(arg) for arg in sys.argv[1:4])
    shots.mkdir(parents=True, exist_ok=True)
    pages = pages_in(summary)
    server, base = serve(root)
    problems: list[str] = []
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"script error: {e}"))
        page.on(
            "response",
            lambda r: errors.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None,
        )
        ids: dict[str, set[str]] = {}

        for name in pages:
            errors.clear()
            page.goto(base + name, wait_until="networkidle")
            problems += [f"{name}: {error}" for error in errors]
            ids[name] = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))

            prose = page.eval_on_selector_all(
                "main p, main li, main td", "els => els.map(e => e.innerHTML).join('\\n')"
            )
            for unresolved in re.findall(r"\[<code[^>]*>[^<]*</code>\]", prose):
                problems.append(f"{name}: a link with no target: {unresolved}")

            if page.query_selector_all(".play-button"):
                problems.append(f"{name}: shows a playground Run button")

            clicked = False
            for index, block in enumerate(page.query_selector_all("pre:has(code.language-rust)")):
                hidden = block.query_selector_all(".boring")
                if not hidden:
                    continue
                where = f"{name}: Rust block {index + 1}"
                if any(shown(block)):
                    problems.append(f"{where}: hidden lines show before the eye button is pressed")
                eye = block.query_selector('button[title="Show hidden lines"]')
                if eye is None:
                    problems.append(f"{where}: has hidden lines but no eye button")
                    continue
                # The first block of a page is clicked as a reader does, with
                # the mouse; the others get the same click event directly,
                # which is much faster.
                click = (lambda button: button.click()) if not clicked else (
                    lambda button: button.dispatch_event("click")
                )
                if not clicked:
                    block.hover()
                click(eye)
                if not all(shown(block, non_blank=True)):
                    problems.append(f"{where}: the eye button does not show the hidden lines")
                if not clicked:
                    block.hover()
                click(block.query_selector('button[title="Hide lines"]'))
                if any(shown(block)):
                    problems.append(f"{where}: the hide button does not hide the lines again")
                clicked = True

            page.screenshot(path=str(shots / name.replace(".html", ".png")), full_page=True)

        for name in pages:
            page.goto(base + name, wait_until="domcontentloaded")
            hrefs = page.eval_on_selector_all("main a[href]", "els => els.map(e => e.getAttribute('href'))")
            for href in hrefs:
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

        page.goto(base + "index.html", wait_until="networkidle")
        page.click("#mdbook-search-toggle")
        page.wait_for_selector("#mdbook-searchbar", state="visible")
        for word, expected in SEARCHES.items():
            # One page for all searches: each word is typed into the emptied
            # search bar, and the results are read once their header names it.
            searchbar = page.locator("#mdbook-searchbar")
            searchbar.fill("")
            searchbar.press_sequentially(word, delay=5)
            try:
                page.wait_for_function(
                    "w => (document.querySelector('#mdbook-searchresults-header') || {})"
                    ".textContent?.includes(\"'\" + w + \"'\")",
                    arg=word,
                    timeout=5000,
                )
                page.wait_for_selector("#mdbook-searchresults a", timeout=5000)
            except Exception:
                problems.append(f"search for {word!r}: no results")
                continue
            found = page.eval_on_selector_all(
                "#mdbook-searchresults a", "els => els.map(e => e.getAttribute('href'))"
            )
            if not any(re.split(r"[?#]", href)[0] == expected for href in found):
                problems.append(f"search for {word!r}: {expected} not among {found}")

        browser.close()
    server.shutdown()

    print(f"checked {len(pages)} pages, {len(SEARCHES)} searches; screenshots in {shots}")
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
