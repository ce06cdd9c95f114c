"""GET /metrics: raylive's Ray metrics, merged from the nodes, parsed by Prometheus's own parser."""

from __future__ import annotations

import re
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raylive.metrics import METRICS

from ..conftest import RayliveProcess
from ..helpers import get, publish, wait_for

pytestmark = pytest.mark.e2e


def families(rl: RayliveProcess) -> dict[str, list[object]]:
    r = rl.api("GET", "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[object]] = {}
    for fam in text_string_to_metric_families(r.text):
        out[fam.name if fam.type != "counter" else f"{fam.name}_total"] = list(fam.samples)
    return out


def test_metrics_endpoint_serves_every_documented_metric(raylive: RayliveProcess) -> None:
    assert raylive.api("GET", "/metrics", token="wrong").status_code == 401
    refused = publish(raylive.rtmp_url("not-a-key"), 2)  # a connection that ends: "publish refused"
    assert refused.wait(30) != 0
    created = raylive.api("POST", "/api/v1/streams", json={"name": "met1", "ladder": ["source", "240p"]}).json()
    base = f"{raylive.base_url}/live/met1"
    ff = publish(raylive.rtmp_url(created["key"]), seconds=None)
    try:
        wait_for(lambda: get(f"{base}/index.m3u8").text.count("#EXT-X-STREAM-INF") == 2, 60, "met1 with its rung")
        sid = re.search(r"sid=([\w-]+)", get(f"{base}/index.m3u8").text)[1]  # type: ignore[index]
        watching = threading.Event()

        def viewer() -> None:  # a player polling the 240p rung
            while not watching.is_set():
                listed = [x for x in get(f"{base}/240p/index.m3u8?sid={sid}").text.splitlines() if x.endswith(".m4s")]
                for segment in listed[-1:]:  # (none yet while the first segment is being written)
                    assert get(f"{base}/240p/{segment}").status_code == 200
                watching.wait(1.0)

        player = threading.Thread(target=viewer, daemon=True)
        player.start()

        # Ray exports recorded metrics every few seconds (tests set RAY_metrics_report_interval_ms);
        # the figures of this test's own stream and refused publisher come with a later export.
        def complete() -> dict[str, list[object]] | None:
            f = families(raylive)
            if not set(METRICS) <= set(f):
                return None
            labels = [s.labels for name in f for s in f[name]]  # type: ignore[attr-defined]
            rungs = any(lb.get("stream") == "met1" and lb.get("rendition") == "240p" for lb in labels)
            refused = any(lb.get("reason") == "publish refused" for lb in labels)
            return f if rungs and refused else None

        fams = wait_for(complete, 120, "every metric", interval_s=2, detail=lambda: set(METRICS) - set(families(raylive)))
        assert isinstance(fams, dict)
    finally:
        watching.set()
        ff.terminate()
        ff.wait(10)
    streams = {s.labels.get("stream") for s in fams["raylive_ingest_bytes_total"]}  # type: ignore[attr-defined]
    assert "met1" in streams
    rungs = {(s.labels["stream"], s.labels["rendition"]) for s in fams["raylive_transcode_realtime_factor"]}  # type: ignore[attr-defined]
    assert ("met1", "240p") in rungs
    reasons = {s.labels["reason"] for s in fams["raylive_rtmp_connections_ended_total"]}  # type: ignore[attr-defined]
    assert "publish refused" in reasons
    assert all("otel_scope_name" not in s.labels for f in fams.values() for s in f)  # type: ignore[attr-defined]
