"""The documented edge cache (Varnish, configs/varnish-edge.vcl) in front of a real `raylive up`:
LL-HLS viewers behind it get every part, identical blocking reloads reach raylive once, and raylive
still counts every viewer."""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from raylive.launcher.redis_server import free_port
from raylive.runtime.packaging.hls import playlist_edge

from ..conftest import RayliveProcess
from ..helpers import get, publish, wait_for

pytestmark = pytest.mark.e2e
VCL = Path(__file__).resolve().parents[2] / "configs" / "varnish-edge.vcl"
PART_RE = re.compile(r'#EXT-X-PART:DURATION=[\d.]+,URI="([^"]+)"')


@pytest.fixture
def edge(raylive: RayliveProcess, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if not shutil.which("varnishd"):
        if os.environ.get("CI"):
            pytest.fail("varnishd missing: bash scripts/test installs it")
        pytest.skip("varnishd missing: run bash scripts/test to install it")
    port = free_port()
    vcl = tmp_path / "edge.vcl"
    vcl.write_text(VCL.read_text().replace('.port = "8000"', f'.port = "{raylive.http_port}"'))
    work = tmp_path / "varnish"
    proc = subprocess.Popen(
        ["varnishd", "-F", "-j", "none", "-a", f"127.0.0.1:{port}", "-f", str(vcl), "-n", str(work), "-s", "malloc,64m"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: proc.poll() is not None or _answers(url), 30, "varnishd to listen")
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    yield url, work
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/live/none/index.m3u8", timeout=2).status_code == 404
    except httpx.HTTPError:
        return False


def _backend_requests(work: Path) -> int:
    out = subprocess.run(["varnishstat", "-n", str(work), "-1", "-f", "MAIN.backend_req"], capture_output=True, text=True, timeout=10)
    return int(out.stdout.split()[1])


def _watch(base: str, seconds: float) -> tuple[int, int, list[str]]:
    """One LL-HLS viewer (video only): its session from the multivariant playlist, then blocking
    reloads and every new part, for `seconds`. Returns (requests, parts, errors)."""
    errors: list[str] = []
    requests = parts = 0
    with httpx.Client(timeout=15) as http:
        uri = next(line for line in http.get(f"{base}/index.m3u8").text.splitlines() if line.startswith("source/"))
        text = http.get(f"{base}/{uri}").text
        seen = set(PART_RE.findall(text))
        edge = playlist_edge(text)
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            r = http.get(f"{base}/{uri}&_HLS_msn={edge.next_msn}&_HLS_part={edge.open_parts}")
            requests += 1
            if r.status_code != 200:
                errors.append(f"playlist {r.status_code}")
                continue
            edge = playlist_edge(r.text)
            for part in PART_RE.findall(r.text):
                if part not in seen:
                    seen.add(part)
                    requests += 1
                    parts += 1
                    if http.get(f"{base}/source/{part}").status_code != 200:
                        errors.append(f"part {part}")
    return requests, parts, errors


def test_ll_hls_viewers_behind_the_edge_cache_share_its_requests_and_are_counted(raylive: RayliveProcess, edge: tuple[str, Path]) -> None:
    edge_url, work = edge
    created = raylive.api("POST", "/api/v1/streams", json={"name": "edged", "ladder": ["source"]}).json()
    ff = publish(raylive.rtmp_url(created["key"]), seconds=None)
    try:
        wait_for(lambda: get(f"{raylive.base_url}/live/edged/source/index.m3u8").text.count("#EXTINF") >= 2, 30, "edged live")
        before = _backend_requests(work)
        n = 40
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            results = list(pool.map(lambda _: _watch(f"{edge_url}/live/edged", 6.0), range(n)))
        backend = _backend_requests(work) - before
        requests = sum(r for r, _, _ in results)
        assert [e for _, _, e in results if e] == []
        assert min(p for _, p, _ in results) >= 15  # 6 s of 0.2 s parts, each viewer
        print(f"{n} viewers behind the edge: {requests} requests, {backend} reached raylive")
        # Identical blocking reloads and part fetches went to raylive once each: besides one
        # counted reload per viewer per segment, a small share of what the viewers asked.
        assert backend < 0.35 * requests, (backend, requests)
        # ... and raylive still counted every viewer (their part-0 reloads go through with the session).
        wait_for(lambda: raylive.api("GET", "/api/v1/streams/edged").json()["viewers"] == n, 10, f"{n} viewers counted")
    finally:
        ff.terminate()
        ff.wait(10)
