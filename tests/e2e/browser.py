"""Driving the dashboard in Debian's Chromium with Playwright: start a server on a workspace, open pages, time
them, take screenshots. Used by test_browser.py and by measure_pages.py (page timings on any workspace)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CROSSLENS_CHROMIUM", "/usr/bin/chromium")
# Headless as root in a container; the network flags keep Chromium from calling out of a closed machine.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1440, "height": 1400}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(workspace: Path, log_path: Path, start_limit: float = 90):
    """A dashboard server on 127.0.0.1 for `workspace`; yields its base URL once /_stcore/health answers."""
    port = _free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dashboard", "--server.address",
             "127.0.0.1", "--server.port", str(port), "--server.headless", "true"],
            cwd=ROOT, env={**os.environ, "CROSSLENS_WORKSPACE": str(workspace)}, stdout=log,
            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_limit
        while True:
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the dashboard did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def chromium_page():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            browser.close()


def open_page(page, base: str, path: str, ready: str, interactive: str | None = None) -> dict:
    """Load a page; returns seconds until its first control (`interactive`, a selector) is visible, until `ready`
    (its main content) is visible, and until the script has finished (everything drawn, nothing running)."""
    started = time.perf_counter()
    page.goto(f"{base}/{path}")
    times = {}
    if interactive:
        page.locator(f"{interactive} >> visible=true").first.wait_for()
        times["interactive"] = round(time.perf_counter() - started, 2)
    page.locator(f"{ready} >> visible=true").first.wait_for()
    times["content"] = round(time.perf_counter() - started, 2)
    settled(page)
    return {**times, "settled": round(time.perf_counter() - started, 2)}


def settled(page, timeout: float = 120) -> None:
    """Streamlit shows a status widget while a script runs; wait until it has gone."""
    page.wait_for_timeout(100)  # a rerun may not have shown it yet
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=timeout * 1000)


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def plot_points(page, key: str) -> int:
    """Points (or bars) drawn by the Plotly chart with this widget key, all traces, as plotly.js counted them."""
    return page.evaluate(f"""() => {{
        const plots = [...document.querySelectorAll('.st-key-{key} .js-plotly-plot')];
        const plot = plots.find(p => p.offsetParent !== null) || plots[0];  // a redrawn chart's hidden twin aside
        return plot && plot._fullData ? plot._fullData.reduce((n, t) => n + (t._length || 0), 0) : 0; }}""")
