"""The built site in a real browser: headless Chromium renders the home page and an API page
with the navigation and the search box.

Screenshots go to the test's temporary folder; with SPML_DOCS_SCREENSHOTS=<folder> they are
also copied there (docs/screenshots/ holds the committed ones).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from docs_site import BuiltSite, build_site

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((path for name in BROWSERS if (path := shutil.which(name))), None)
pytestmark = [
    pytest.mark.xdist_group("docs"),  # with the other docs tests: one build (pytest-xdist)
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium on PATH (Debian: apt-get install chromium) to render the site with",
    ),
]
WINDOW = (1280, 900)
PAGES = {"home": "", "api-losses": "reference/losses/"}


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> BuiltSite:
    built = build_site(tmp_path_factory)
    assert built.returncode == 0, built.output[-3000:]
    return built


@pytest.fixture(scope="module")
def served(site):
    """The site over HTTP on a free local port, as a static host serves it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site.root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # tests may run as root, where Chromium refuses its sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--virtual-time-budget=5000",  # let the page's scripts run before the capture
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders_with_navigation_and_search(name, served, tmp_path):
    url = served + PAGES[name]
    dom = chromium("--dump-dom", url, cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # After the scripts ran: the search box, the navigation with the guides and the reference.
    assert 'class="md-search__input"' in html and 'placeholder="Search"' in html
    assert 'class="md-nav md-nav--primary"' in html
    for entry in ("Getting started", "Choosing a loss", "spml_lightning.losses"):
        assert entry in html, entry
    if name == "api-losses":
        assert 'id="spml_lightning.losses.GRLoss" class="doc doc-heading"' in html

    screenshot = tmp_path / f"{name}.png"
    shot = chromium(f"--screenshot={screenshot}", url, cwd=tmp_path)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    # Rendered, not blank: the indigo header bar across the top, text below it.
    header = pixels[:40].reshape(-1, 3).mean(axis=0)
    assert header[2] > header[0] + 40, f"no indigo header: mean colour {header}"
    assert len(np.unique(pixels[100:].reshape(-1, 3), axis=0)) > 50
    if folder := os.environ.get("SPML_DOCS_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(folder) / screenshot.name)
