"""Render `python -m benchmarks`' results as markdown with matplotlib plots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display
import matplotlib.pyplot as plt  # noqa: E402

RAYLIVE, REFERENCE = "#3b6fb6", "#999999"


def _get(d: Any, *path: Any) -> Any:
    for p in path:
        try:
            d = d[p]
        except (KeyError, IndexError, TypeError):
            return None
    return d


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}x" if a / b >= 0.1 else f"{a / b:.3f}x"


def headline(b: dict[str, Any]) -> list[tuple[str, Any, Any, str, str]]:
    """(measure, raylive, reference, raylive/reference, reference name) for what each benchmark found."""
    rows: list[tuple[str, Any, Any, str, str]] = []
    ingest = _get(b, "ingest", "results", "servers") or {}
    rl_runs, ng_runs = ([r for r in _get(ingest, name, "runs") or [] if "failed" not in r] for name in ("raylive", "nginx-rtmp"))
    if rl_runs and ng_runs:
        rl, ng = rl_runs[-1]["cpu_pct_per_stream"], ng_runs[-1]["cpu_pct_per_stream"]
        measure = f"CPU per passthrough stream at {rl_runs[-1]['streams']} streams, % of a core"
        rows.append((measure, rl, ng, _ratio(rl, ng), "nginx-rtmp"))
    for case, row in (_get(b, "transcode", "results", "cases") or {}).items():
        rl, ff = _get(row, "ray-actor", "cpu_s_per_min") or _get(row, "in-process", "cpu_s_per_min"), _get(row, "ffmpeg", "cpu_s_per_min")
        rows.append((f"ladder {case}, CPU-s per minute of video", rl, ff, _ratio(rl, ff), "ffmpeg CLI"))
    lat = _get(b, "latency", "results", "servers") or {}
    for keys, label in (
        (("first_playable_s_median",), "publish → first playable (raylive: a part), s"),
        (("frame_to_listed_s_p50",), "frame → listed (raylive: its part), p50 s"),
        (("players", "hls.js", "p50_s"), "hls.js live latency (raylive: LL-HLS), p50 s"),
        (("players", "dash.js", "p50_s"), "dash.js live latency (raylive: LL-DASH), p50 s"),
    ):
        rl, ng = _get(lat, "raylive", *keys), _get(lat, "nginx-rtmp", *keys)
        if rl is not None:
            rows.append((label, rl, ng, _ratio(rl, ng), "nginx-rtmp"))
    pb = {r["mode"]: r for r in _get(b, "playback", "results", "rows") or [] if "failed" not in r}
    ng_pb = pb.get("nginx static")
    for mode, r in pb.items():
        if mode != "nginx static" and ng_pb:
            for kind in ("playlist", "segment"):
                rl, ng = r[kind]["rps"], ng_pb[kind]["rps"]
                rows.append((f"{kind} requests/s, {mode}", rl, ng, _ratio(rl, ng), "nginx static"))
    cap = _get(b, "capacity", "results", "servers") or {}
    if "raylive" in cap and "max_streams_held" in cap["raylive"]:
        rl, ng = cap["raylive"], cap.get("nginx-rtmp", {})

        def fmt(c: dict[str, Any]) -> Any:
            return f"≥ {c['max_streams_held']}" if c.get("all_steps_held") else c.get("max_streams_held")

        rows.append(("passthrough streams held in real time", fmt(rl), fmt(ng) if ng else None,
                     _ratio(rl["max_streams_held"], ng.get("max_streams_held")), "nginx-rtmp"))  # fmt: skip
    return rows


def plots(b: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}

    def save(name: str, fig: Any) -> None:
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=90)
        plt.close(fig)
        made[name] = out / f"{name}.png"

    ingest = _get(b, "ingest", "results", "servers") or {}
    if _get(ingest, "raylive", "runs"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, color in (("raylive", RAYLIVE), ("nginx-rtmp", REFERENCE)):
            runs = [r for r in _get(ingest, name, "runs") or [] if "failed" not in r]
            ax.plot([r["streams"] for r in runs], [r["cpu_pct_per_stream"] for r in runs], "o-", color=color, label=name)
        ax.set(xlabel="concurrent passthrough streams", ylabel="CPU per stream, % of a core", yscale="log", title="Ingest CPU per stream")
        ax.legend()
        save("ingest", fig)
    cases = _get(b, "transcode", "results", "cases") or {}
    if cases:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        runners = ["ffmpeg", "in-process", "ray-actor"]
        for i, runner in enumerate(runners):
            xs = [j + (i - 1) * 0.27 for j in range(len(cases))]
            ax.bar(xs, [_get(row, runner, "cpu_s_per_min") or 0 for row in cases.values()], 0.27, label=runner,
                   color=[REFERENCE, "#7fa3d6", RAYLIVE][i])  # fmt: skip
        ax.set_xticks(range(len(cases)), list(cases), fontsize=8)
        ax.set(ylabel="CPU-s per minute of video", title="ABR ladder: raylive vs ffmpeg CLI")
        ax.legend()
        save("transcode", fig)
    lat = _get(b, "latency", "results", "servers") or {}
    if _get(lat, "raylive", "first_playable_s_median") is not None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        keys = [(("first_playable_s_median",), "publish →\nfirst playable"), (("frame_to_listed_s_p50",), "frame →\nlisted"),
                (("players", "hls.js", "p50_s"), "hls.js\nlatency"), (("players", "dash.js", "p50_s"), "dash.js\nlatency")]  # fmt: skip
        for i, (name, color) in enumerate((("raylive", RAYLIVE), ("nginx-rtmp", REFERENCE))):
            ax.bar([j + (i - 0.5) * 0.35 for j in range(len(keys))], [_get(lat, name, *k) or 0 for k, _ in keys], 0.35, label=name,
                   color=color)  # fmt: skip
        ax.set_xticks(range(len(keys)), [label for _, label in keys], fontsize=8)
        ax.set(ylabel="seconds (median)", title="Latency: raylive LL-HLS/LL-DASH vs nginx-rtmp HLS/DASH")
        ax.legend()
        save("latency", fig)
    rows = [r for r in _get(b, "playback", "results", "rows") or [] if "failed" not in r]
    if rows:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for i, r in enumerate(rows):
            color = REFERENCE if r["mode"] == "nginx static" else (RAYLIVE if "haproxy" in r["mode"] else "#7fa3d6")
            ax.bar([j + (i - (len(rows) - 1) / 2) * 0.25 for j in range(2)], [r["playlist"]["rps"], r["segment"]["rps"]], 0.25,
                   label=r["mode"], color=color)  # fmt: skip
        ax.set_xticks(range(2), ["live playlist", "2 s segment"])
        ax.set(ylabel="requests/s", yscale="log", title="Playback through Serve vs nginx static")
        ax.legend(fontsize=8)
        save("playback", fig)
    cap = _get(b, "capacity", "results", "servers") or {}
    if _get(cap, "raylive", "steps"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, color in (("raylive", RAYLIVE), ("nginx-rtmp", REFERENCE)):
            steps = _get(cap, name, "steps") or []
            ax.plot([s["streams"] for s in steps], [s["worst_media_per_wall_s"] for s in steps], "o-", color=color, label=name)
        ax.axhline(0.8, ls="--", color="black", lw=0.8)
        ax.set(xlabel="concurrent streams", ylabel="slowest stream: media s / wall s", title="Streams held in real time")
        ax.legend()
        save("capacity", fig)
    timeline = _get(b, "soak", "results", "timeline") or []
    if timeline:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([t / 60 for t, _ in timeline], [mb for _, mb in timeline], color=RAYLIVE)
        ax.set(xlabel="minutes after warm-up", ylabel="RSS of all raylive processes, MB", title="Soak: memory over time")
        save("soak", fig)
    return made


def write_report(report: dict[str, Any], plots_dir: Path, out: Path, descriptions: dict[str, str]) -> None:
    b = report["benchmarks"]
    m = report["machine"]
    made = plots(b, plots_dir)
    lines = [
        "# raylive benchmark report",
        "",
        f"Run {report['date']} on commit `{report['commit']}` with `python -m benchmarks`"
        + (" --quick" if report["mode"] == "quick" else "") + f"; raw results: `benchmarks/results/{report['date']}.json`.",
        f"Machine: {m['cores']} cores ({m['cpu'] or 'unknown CPU'}), {m['memory_gb']} GB, Python {m['python']}, Linux {m['kernel']};"
        f" 1-minute load {report['load_1min_before']} before, {report.get('load_1min_after', '?')} after.",
        "",
        "Every benchmark runs raylive and its reference in the same run on the same machine, with the load generators"
        " (ffmpeg publishers, wrk) sharing its cores; figures are medians of repeated runs where the script repeats."
        " This is a small, noisy machine: read the ratios, not the absolute numbers.",
        "",
        "## Headline",
        "",
        "| measure | raylive | reference | raylive / reference | reference |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for measure, rl, ref, ratio, who in headline(b):
        lines.append(f"| {measure} | {rl} | {ref if ref is not None else '-'} | {ratio} | {who} |")
    for name, entry in b.items():
        what = descriptions.get(name, "")
        lines += ["", f"## {name}: {what}", ""]
        args = " ".join(entry.get("args") or [])
        command = f"python benchmarks/{name}.py {args}".strip()
        at = f" at `{entry['commit']}`" if entry.get("commit") and entry["commit"] != report["commit"] else ""
        lines.append(f"`{command}`{at} — {entry['wall_s']} s, load {entry['load_1min_at_start']} at start.")
        if entry["rc"] != 0:
            lines += ["", f"**Failed** (exit {entry['rc']}); see the run's output."]
            continue
        if name in made:
            lines += ["", f"![{name}]({os.path.relpath(made[name], out.parent)})"]
        if entry.get("table"):
            lines += ["", entry["table"].strip()]
    out.write_text("\n".join(lines) + "\n")
