"""Real web players in Debian Chromium (Playwright, never `playwright install`): hls.js, dash.js and
Shaka Player from npm (`bash scripts/test` puts them in tests/.cache), each on a page served from
another origin than raylive's, so CORS matters as it does for a real site."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ..conftest import RayliveProcess
from ..helpers import wait_for

CACHE = Path(__file__).parent.parent / ".cache"
CHROMIUM = "/usr/bin/chromium"
PLAYERS = {"hls": "hls.min.js", "dash": "dash.all.min.js", "shaka": "shaka-player.compiled.js"}

# Each page plays `src` with its player and keeps, for the test to read: `errors` (fatal ones),
# `stalls`, `lat` (latency samples, s, every 250 ms once playing) and `player`; hls.js's page also
# `warnings` (its first 50 non-fatal errors, for a failure's message).
PAGES = {
    "hls": """<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script src="hls.min.js"></script><script>
  window.errors = []; window.stalls = []; window.lat = []; window.warnings = [];
  const q = new URLSearchParams(location.search), video = document.getElementById('v');
  const player = window.player = new Hls(JSON.parse(q.get('cfg') || '{}'));
  player.on(Hls.Events.ERROR, (_, d) => {
    if (d.fatal) window.errors.push(d.type + ':' + d.details);
    else if (window.warnings.length < 50) window.warnings.push(d.details + (d.url ? ' ' + d.url : ''));
    if (d.details === 'bufferStalledError') window.stalls.push(video.currentTime);
  });
  player.on(Hls.Events.MANIFEST_PARSED, () => video.play());
  player.loadSource(q.get('src'));
  player.attachMedia(video);
  // Live latency as a viewer sees it: wall clock minus the on-screen frame's PROGRAM-DATE-TIME.
  // (Without PROGRAM-DATE-TIME, hls.js's own measure: the distance to the playlist's live edge.)
  window.edge = [];
  setInterval(() => { if (video.currentTime > 0 && !video.paused) {
    if (player.playingDate) window.lat.push((Date.now() - player.playingDate.getTime()) / 1000);
    window.edge.push(player.latency); } }, 250);
</script></body></html>""",
    "dash": """<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script src="dash.all.min.js"></script><script>
  window.errors = []; window.stalls = []; window.lat = [];
  const q = new URLSearchParams(location.search), video = document.getElementById('v');
  const player = window.player = dashjs.MediaPlayer().create();
  player.updateSettings(JSON.parse(q.get('cfg') || '{}'));
  player.on(dashjs.MediaPlayer.events.ERROR, (e) => window.errors.push(JSON.stringify(e.error || e)));
  player.on(dashjs.MediaPlayer.events.PLAYBACK_STALLED, () => window.stalls.push(video.currentTime));
  player.initialize(video, q.get('src'), true);
  // dash.js's own measure: the MPD's wall clock (synchronised through UTCTiming) minus the playhead's.
  setInterval(() => { if (video.currentTime > 0 && !video.paused && player.isDynamic())
    window.lat.push(player.getCurrentLiveLatency()); }, 250);
</script></body></html>""",
    "shaka": """<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script src="shaka-player.compiled.js"></script><script>
  window.errors = []; window.stalls = []; window.lat = [];
  const q = new URLSearchParams(location.search), video = document.getElementById('v');
  shaka.polyfill.installAll();
  const player = window.player = new shaka.Player();
  player.configure(JSON.parse(q.get('cfg') || '{}'));
  player.addEventListener('error', (e) => window.errors.push(String(e.detail && e.detail.code)));
  player.attach(video).then(() => player.load(q.get('src'))).then(() => video.play())
    .catch((e) => window.errors.push(String(e.code || e)));
  setInterval(() => { const d = player.getPlayheadTimeAsDate(); if (d && video.currentTime > 0 && !video.paused)
    window.lat.push((Date.now() - d.getTime()) / 1000); }, 250);
</script></body></html>""",
}


@contextmanager
def players_server(root: Path) -> Iterator[str]:
    """Serve a page per player from `root` (a fresh folder) on a port of its own; yields its origin."""
    missing = [p for p in [*(CACHE / f for f in PLAYERS.values()), Path(CHROMIUM)] if not p.exists()]
    if missing:
        raise FileNotFoundError(f"missing {missing}: bash scripts/test installs them")
    root.mkdir(parents=True, exist_ok=True)
    for name, script in PLAYERS.items():
        shutil.copy(CACHE / script, root / script)
        (root / f"{name}.html").write_text(PAGES[name])

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def player_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with players_server(tmp_path_factory.mktemp("players")) as origin:
            yield origin
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def page_url(origin: str, player: str, src: str, cfg: dict[str, Any] | None = None) -> str:
    return f"{origin}/{player}.html?" + urllib.parse.urlencode({"src": src, "cfg": json.dumps(cfg or {})})


@contextmanager
def browser_page(url: str) -> Iterator[Any]:
    """A headless Chromium page at `url`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
                  "--disable-background-networking", "--disable-component-update", "--no-first-run"],
        )  # fmt: skip
        try:
            page = browser.new_page()
            page.goto(url)
            yield page
        finally:
            browser.close()


def video_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(
        """() => { const v = document.getElementById('v'); return {
            t: v.currentTime, w: v.videoWidth, h: v.videoHeight, ended: v.ended, errors: window.errors,
            stalls: window.stalls, lat: window.lat, decoded: v.getVideoPlaybackQuality().totalVideoFrames }; }"""
    )
    return state


# -- the console (/console), in its own browser contexts -----------------------------------------
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (bash scripts/test installs it)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"]
        )
        try:
            yield browser
        finally:
            browser.close()


def console_page(browser: Any, raylive: RayliveProcess, token: str, viewport: dict[str, int] = DESKTOP) -> Any:
    """A new browser context (its own session storage), signed in."""
    page = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE, has_touch=viewport is PHONE).new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    # A thumbnail asked for before the first segment is a 404 the page retries: not an error of the page.
    page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource") and page.errors.append(m.text))
    page.goto(f"{raylive.base_url}/console/")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#top:not([hidden]), #sign-in-error:not(:empty)")  # signed in, or refused
    return page


DEBUG = """JSON.stringify({t: document.getElementById('player') && document.getElementById('player').currentTime,
  main: document.querySelector('main').innerText.slice(0, 600)})"""  # what the page showed, for a failure's message


def until(page: Any, js: str, timeout_s: float, what: str) -> None:
    """Poll a JS expression (the console's CSP forbids eval, which Playwright's wait_for_function uses)."""
    wait_for(lambda: page.evaluate(js), timeout_s, what, detail=lambda: f"{page.evaluate(DEBUG)} errors: {page.errors}")
