"""`python -m benchmarks`' report: headline ratios, plots and markdown from the scripts' results."""

from __future__ import annotations

from pathlib import Path

from benchmarks.__main__ import BENCHMARKS
from benchmarks.report import headline, write_report

RESULTS = {
    "ingest": {
        "rc": 0, "wall_s": 100.0, "load_1min_at_start": 0.5, "args": [], "table": "| ingest table |",
        "results": {"servers": {
            "raylive": {"runs": [{"streams": 1, "cpu_pct_per_stream": 12.0}, {"streams": 50, "cpu_pct_per_stream": 2.8}]},
            "nginx-rtmp": {"runs": [{"streams": 1, "cpu_pct_per_stream": 0.6}, {"streams": 50, "cpu_pct_per_stream": 0.35}]},
        }},
    },
    "latency": {
        "rc": 0, "wall_s": 60.0, "load_1min_at_start": 0.4, "args": ["--repeats", "2"],
        "results": {"servers": {
            "raylive": {"first_playable_s_median": 0.9, "frame_to_listed_s_p50": 0.03, "players": {"hls.js": {"p50_s": 1.1}}},
            "nginx-rtmp": {"first_playable_s_median": 2.0, "frame_to_listed_s_p50": 0.06, "players": {"hls.js": {"p50_s": 9.0}}},
        }},
    },
    "capacity": {
        "rc": 0, "wall_s": 300.0, "load_1min_at_start": 0.4, "args": [],
        "results": {"servers": {
            "raylive": {"max_streams_held": 40, "all_steps_held": False, "steps": [
                {"streams": 20, "worst_media_per_wall_s": 0.99, "held": True},
                {"streams": 40, "worst_media_per_wall_s": 0.97, "held": True},
                {"streams": 60, "worst_media_per_wall_s": 0.6, "held": False}]},
            "nginx-rtmp": {"max_streams_held": 60, "all_steps_held": True, "steps": [
                {"streams": 20, "worst_media_per_wall_s": 1.0, "held": True},
                {"streams": 60, "worst_media_per_wall_s": 1.0, "held": True}]},
        }},
    },
    "soak": {"rc": 1, "wall_s": 5.0, "load_1min_at_start": 0.2, "args": ["--minutes", "1"]},
}  # fmt: skip


def test_headline_states_each_ratio_against_its_reference() -> None:
    rows = {measure: (rl, ref, ratio, who) for measure, rl, ref, ratio, who in headline(RESULTS)}
    assert rows["CPU per passthrough stream at 50 streams, % of a core"] == (2.8, 0.35, "8.00x", "nginx-rtmp")
    assert rows["frame → listed (raylive: its part), p50 s"] == (0.03, 0.06, "0.50x", "nginx-rtmp")
    assert rows["hls.js live latency (raylive: LL-HLS), p50 s"] == (1.1, 9.0, "0.12x", "nginx-rtmp")
    # nginx held every step it was given: "at least", not a maximum.
    assert rows["passthrough streams held in real time"] == (40, "≥ 60", "0.67x", "nginx-rtmp")


def test_report_has_plots_tables_and_failures(tmp_path: Path) -> None:
    report = {
        "date": "2026-11-30", "commit": "abc1234", "mode": "full", "load_1min_before": 0.3, "load_1min_after": 1.2,
        "machine": {"cores": 2, "cpu": "Test CPU", "memory_gb": 23.4, "python": "3.11.7", "kernel": "6.1"},
        "benchmarks": RESULTS,
    }  # fmt: skip
    out = tmp_path / "report.md"
    write_report(report, tmp_path / "plots", out, {n: b[2] for n, b in BENCHMARKS.items()})
    text = out.read_text()
    assert "2 cores (Test CPU)" in text and "load 0.3 before, 1.2 after" in text
    for name in ("ingest", "latency", "capacity"):
        png = tmp_path / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name}](plots/{name}.png)" in text
    assert "| ingest table |" in text
    assert "## soak" in text and "**Failed** (exit 1)" in text


def test_playback_ratios_are_taken_run_by_run_and_a_failed_mode_gets_no_figure() -> None:
    from benchmarks.playback import render, summary

    def run(rps: float) -> dict[str, float]:
        return {"rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "non_2xx": 0, "socket_errors": 0}

    # nginx drifts between runs; each raylive run is compared with nginx's right after it.
    ours, ref = [run(1000), run(2000), run(1500)], [run(4000), run(4000), run(3000)]
    s = summary(ours, ref)
    assert s["rps"] == 1500 and s["rps_runs"] == [1000, 2000, 1500]
    assert s["vs_nginx_runs"] == [0.25, 0.5, 0.5] and s["vs_nginx"] == 0.5
    table = render({"connections": 50, "duration_s": 5, "cores": 2, "rows": [
        {"mode": "haproxy ingress (default)", "playlist": s, "segment": s},
        {"mode": "serve proxy", "failed": "error responses or socket errors: {'playlist': 3, 'segment': 0}"},
        {"mode": "nginx static", "playlist": summary(ref), "segment": summary(ref)},
    ]})  # fmt: skip
    assert "| haproxy ingress (default) | 1500 (1000–2000) | 1 / 2 | 0.500x (0.250–0.500) |" in table
    assert "| serve proxy | FAILED: error responses" in table
