"""The web console (/console) in Debian Chromium against the shared `raylive up` and a real ffmpeg
publisher, as an operator uses it: sign in, watch a stream go live, play it, act on it.

Screenshots of every page at 1280x800 and 390x844 go to tests/.artifacts/console/ (look at them)."""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import RayliveProcess
from ..helpers import publish, wait_for
from .browser import DESKTOP, PHONE, chromium, console_page, page_url, until

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).parent.parent / ".artifacts" / "console"


def row(page: Any, name: str) -> Any:
    return page.locator(f"tbody tr[data-key='{name}']")


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def stat(page: Any, label: str) -> str:
    text: str = page.locator(f"dl.stats dt:text-is('{label}') + dd").inner_text()
    return text


def viewers_now(page: Any) -> int:
    return int(stat(page, "Viewers").split()[0])


def test_console_runs_a_live_stream(raylive: RayliveProcess, player_origin: str) -> None:
    name, ff = "console1", None
    with chromium() as browser:
        page = console_page(browser, raylive, raylive.token)
        page.wait_for_selector("h1:text-is('Streams')")
        assert "admin" in page.inner_text("#who")
        # A stream created and published after the page loaded appears, goes live, shows a frame.
        key = raylive.api("POST", "/api/v1/streams", json={"name": name, "ladder": ["source"]}).json()["key"]
        row(page, name).wait_for(timeout=3000)
        try:
            ff = publish(raylive.rtmp_url(key), seconds=None)
            wait_for(lambda: raylive.api("GET", f"/api/v1/streams/{name}").json()["state"] == "live", 30, f"{name} live in the API")
            live_at = time.monotonic()
            row(page, name).locator(".state-live").wait_for(timeout=3000)
            assert time.monotonic() - live_at < 3
            # Its thumbnail: shown within 3 s of raylive having one to show.
            thumb = f"{raylive.base_url}/live/{name}/thumbnail.jpg"
            wait_for(lambda: httpx.get(thumb, timeout=10).status_code == 200, 30, "a thumbnail from raylive")
            made_at = time.monotonic()
            img = f"document.querySelector(\"tr[data-key='{name}'] img.thumb\")"
            js = f"(() => {{ const i = {img}; return i && i.complete && i.naturalWidth > 0; }})()"
            until(page, js, 3, "the thumbnail in the list")
            assert time.monotonic() - made_at < 3
            shoot(page, "streams-live-1280x800")

            # Its page plays (hls.js, low-latency mode): video time advances, no player error.
            row(page, name).locator("a").click()
            page.wait_for_selector(f"h1 span:text-is('{name}')")
            until(page, "document.getElementById('player').currentTime > 3", 30, "the console's player to play")
            assert "Player:" not in page.inner_text("main")
            wait_for(lambda: viewers_now(page) >= 1, 15, "the console's own player counted")
            base = viewers_now(page)

            # A second browser plays: the pushed count rises; it leaves: the count falls back.
            other = browser.new_context(viewport=DESKTOP).new_page()
            other.goto(page_url(player_origin, "hls", f"{raylive.base_url}/live/{name}/index.m3u8"))
            until(other, "document.getElementById('v').currentTime > 1", 30, "the second viewer to play")
            wait_for(lambda: viewers_now(page) == base + 1, 15, "the second viewer counted", detail=lambda: stat(page, "Viewers"))
            other.context.close()
            left_at = time.monotonic()
            shoot(page, "stream-live-1280x800")

            # Rotate the key from the page: the new key is shown once; the old one fails on the next publish.
            page.click("button:text-is('Rotate key')")
            page.click("#dialog-ok")
            new_key = page.locator("input[aria-label='Stream key']").input_value()
            assert new_key and new_key != key
            page.click("#dialog-ok")  # Done
            ff.terminate()
            ff.wait(10)
            old = publish(raylive.rtmp_url(key), seconds=5)
            assert old.wait(30) != 0, "the rotated-out key still publishes"
            ff = publish(raylive.rtmp_url(new_key), seconds=None)
            page.locator(".state-live").first.wait_for(timeout=30_000)
            until(page, "document.getElementById('player').currentTime > 1", 30, "the player to play the new publish")

            wait_for(lambda: viewers_now(page) == base, 45, "the viewer who left no longer counted", detail=lambda: stat(page, "Viewers"))
            assert time.monotonic() - left_at < 45

            # Revoke: the publisher is disconnected and the page shows the stream ended.
            page.click("button:text-is('Revoke key')")
            page.click("#dialog-ok")
            assert ff.wait(15) is not None
            page.locator("h1 .state-ended").first.wait_for(timeout=10_000)
            assert "key revoked" in page.inner_text("main")
            assert page.errors == [], page.errors  # type: ignore[attr-defined]
        finally:
            if ff is not None and ff.poll() is None:
                ff.kill()


def test_console_refuses_a_wrong_token_and_shows_text_as_text(raylive: RayliveProcess) -> None:
    read = raylive.api("POST", "/api/v1/tokens", json={"name": "console-reader", "scopes": ["read"]}).json()["token"]
    assert raylive.api("POST", "/api/v1/streams", json={"name": "console2"}).status_code == 201
    with chromium() as browser:
        wrong = console_page(browser, raylive, "not-a-token")
        wrong.wait_for_selector("#sign-in-error:has-text('not valid')")
        assert wrong.locator("#top").is_hidden()

        # Markup from outside shows as text and runs nothing: a stream name in a link someone sent,
        # the API's refusal of such a name, and query results (viewers' own User-Agent strings).
        markup = '<img src=x onerror="window.pwned=1">'
        page = console_page(browser, raylive, raylive.token)
        page.wait_for_selector("h1:text-is('Streams')")
        page.goto(f"{raylive.base_url}/console/#/stream/" + urllib.parse.quote(markup))
        page.wait_for_selector("h1 span:text-is('" + markup.replace("'", "\\'") + "')")
        page.wait_for_selector("text=No stream named")
        page.goto(f"{raylive.base_url}/console/#/streams")
        page.focus("button:text-is('New stream')")  # by keyboard: Enter opens the dialog, Escape closes it
        page.keyboard.press("Enter")
        page.wait_for_selector("dialog[open]")
        page.keyboard.press("Escape")
        page.wait_for_selector("dialog[open]", state="detached")
        page.click("button:text-is('New stream')")
        page.fill("dialog input[maxlength='64']", markup)
        page.click("#dialog-ok")
        page.wait_for_selector("#dialog-error:has-text('invalid name')")
        page.click("#dialog-cancel")
        page.goto(f"{raylive.base_url}/console/#/analytics")
        page.fill("textarea", "SELECT concat('<img src=x ', 'onerror=\"window.pwned=1\">') AS markup, count() AS n FROM viewer_events")
        page.click("button:text-is('Run')")
        page.wait_for_selector("td:text-is('" + markup.replace("'", "\\'") + "')")
        page.wait_for_selector("a:text-is('Download CSV')")
        assert page.locator("main img").count() == 0
        assert page.evaluate("window.pwned") is None

        # A read-only token sees everything and can change nothing.
        reader = console_page(browser, raylive, read)
        reader.wait_for_selector("h1:text-is('Streams')")
        assert "read-only" in reader.inner_text("#who")
        assert reader.locator("button:text-is('New stream')").count() == 0
        reader.goto(f"{raylive.base_url}/console/#/analytics")
        reader.wait_for_selector("text=SQL needs a token with the analytics scope")
        # Its token deleted: the next call the page makes sends it back to sign in.
        assert raylive.api("DELETE", "/api/v1/tokens/console-reader").status_code == 204
        reader.goto(f"{raylive.base_url}/console/#/cluster")
        reader.wait_for_selector("#sign-in-error:has-text('no longer valid')")

        # Every page at both sizes, for a person to look at.
        for size, viewport in (("1280x800", DESKTOP), ("390x844", PHONE)):
            p = console_page(browser, raylive, raylive.token, viewport)
            p.wait_for_selector("h1:text-is('Streams')")
            for route, ready in (("streams", "tbody tr"), ("analytics", "h2:text-is('SQL (read-only)')"), ("cluster", "tbody tr")):
                p.goto(f"{raylive.base_url}/console/#/{route}")
                p.wait_for_selector(ready)
                p.wait_for_timeout(500)
                shoot(p, f"{route}-{size}")
            p.goto(f"{raylive.base_url}/console/#/stream/console2")
            p.wait_for_selector("h2:text-is('Publish')")
            p.wait_for_selector("td:text-is('No recordings.')")
            p.wait_for_timeout(1000)
            shoot(p, f"stream-{size}")
            assert p.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), f"{size}: wider than the screen"
            assert p.errors == [], p.errors  # type: ignore[attr-defined]
    # The page's own security headers.
    r = httpx.get(f"{raylive.base_url}/console/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{raylive.base_url}/console/%2e%2e/pyproject.toml").status_code == 404
