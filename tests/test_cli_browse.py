"""`deon browse` in a real headless browser (Debian's chromium, driven by Playwright):
the page loads, a facet filters, and a screenshot is saved."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DEON_CMD, Lab, run_deon

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install '.[test]')")
    pytest.importorskip("datasette", reason="datasette is not installed (pip install '.[browse]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        yield b
        b.close()


def test_browse_serves_the_catalog_and_a_facet_filters(lab: Lab, browser, tmp_path: Path) -> None:
    for i in range(30):
        doc = {
            "robot": ["sawyer", "franka", "widowx"][i % 3],
            "traj_ok": i % 4 != 0,
            "camera_configuration": ["sudri0", "multiview3"][i % 2],
        }
        lab.put_doc(f"b/{i:03d}.h5", b"x", doc)
    assert run_deon("metadata", "down", "s3://lab/b").returncode == 0
    server = subprocess.Popen(
        [*DEON_CMD, "browse", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/catalog/objects"), url
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        page.goto(url)
        assert "30 rows" in page.content()
        assert "s3://lab/b/000.h5" in page.inner_text("table")
        facets = page.inner_text(".facet-results")
        assert "robot" in facets and "camera_configuration" in facets and "traj_ok" in facets

        page.click("[data-column='robot'] a:has-text('sawyer')")
        page.wait_for_url("**robot=sawyer**")
        assert '10 rows where robot = "sawyer"' in page.inner_text("body")
        cells = page.locator("td.col-robot").all_inner_texts()
        assert cells and set(cells) == {"sawyer"}

        shot = tmp_path / "browse.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        server.terminate()
        server.wait(10)
    # datasette went with it: nothing is left serving the catalog
    port = int(url.split(":")[2].split("/")[0])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "datasette outlived deon browse"


def test_browse_without_a_catalog_exits_2(isolated_env: Path) -> None:
    r = run_deon("browse", "--port", "0")

    assert r.returncode == 2
    assert "no catalog" in r.stderr
