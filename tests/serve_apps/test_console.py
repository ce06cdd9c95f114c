"""The console's files as the control API serves them: only what ships, with its security headers."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from raylive.serve_apps.console import FILES, ROOT, router


def _client() -> TestClient:
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def test_the_page_and_every_file_it_names_are_served_with_the_policy() -> None:
    c = _client()
    assert c.get("/console", follow_redirects=False).headers["location"] == "/console/"
    page = c.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    # Everything the page and its modules load is a file that ships (no CDN, nothing missing).
    names = re.findall(r'(?:src|href)="([^"#:]+)"', page.text)
    for module in [n for n in FILES if n.endswith(".js") and "/" not in n]:
        names += [n.removeprefix("./") for n in re.findall(r"from '(\./[^']+)'", FILES[module][0].decode())]
    assert {"console.js", "vendor/hls.min.js", "vendor/uPlot.iife.min.js", "playback.js"} <= set(names)
    for name in names:
        r = c.get(f"/console/{name}")
        assert r.status_code == 200, name
        assert r.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"https?://", page.text)


def test_nothing_but_the_shipped_files_and_revalidation_answers_304() -> None:
    c = _client()
    for path in ("/console/%2e%2e/serve_apps/console.py", "/console/../__init__.py", "/console/vendor/README.md", "/console/nope.js"):
        assert c.get(path).status_code == 404, path
    r = c.get("/console/console.js")
    assert r.headers["content-type"].startswith("text/javascript")
    assert c.get("/console/console.js", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    # Every vendored script comes with its license.
    for script in [n for n in FILES if n.startswith("vendor/")]:
        stem = "hls.js" if "hls" in script else "uPlot"
        assert (ROOT / "vendor" / f"{stem}.LICENSE").is_file()
