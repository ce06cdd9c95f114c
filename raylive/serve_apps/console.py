"""The web console at /console: plain ES modules and the third-party scripts they use, shipped in
the package (`raylive/console`) and served by the control API, so the page and the API share one
origin and nothing is fetched from elsewhere. The page keeps its token in session storage and
sends it only as a Bearer header; the Content-Security-Policy allows scripts from here alone."""

from __future__ import annotations

import hashlib
from importlib import resources

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

ROOT = resources.files("raylive") / "console"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# blob: for hls.js (its MediaSource URL and its worker); data: for uPlot's legend markers.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated (ETag): an upgrade shows at the next load
}


def _files() -> dict[str, tuple[bytes, str, str]]:
    """Every file the console serves, read once: path -> (bytes, content type, ETag)."""
    found: dict[str, tuple[bytes, str, str]] = {}
    for folder, prefix in ((ROOT, ""), (ROOT / "vendor", "vendor/")):
        for entry in folder.iterdir():
            suffix = "." + entry.name.rpartition(".")[2]
            if entry.is_file() and suffix in TYPES:
                data = entry.read_bytes()
                found[prefix + entry.name] = (data, TYPES[suffix], '"' + hashlib.sha256(data).hexdigest()[:16] + '"')
    return found


FILES = _files()
router = APIRouter(include_in_schema=False)


@router.get("/console")
async def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=308)


@router.get("/console/{path:path}")
async def console_file(path: str, request: Request) -> Response:
    """index.html for the page's own routes (`/console/`, and what follows `#` never reaches here),
    a shipped file by its exact name, 404 for anything else: no path is ever joined to a folder."""
    found = FILES.get(path or "index.html")
    if found is None:
        return Response(f"no console file {path!r}", status_code=404, media_type="text/plain", headers=HEADERS)
    data, media_type, etag = found
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={**HEADERS, "ETag": etag})
    return Response(data, media_type=media_type, headers={**HEADERS, "ETag": etag})
