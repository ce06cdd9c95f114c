"""The monitoring files users import: they parse, and every query names a metric raylive records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from raylive.metrics import METRICS

CONFIGS = Path(__file__).parent.parent / "configs"


def series_names() -> set[str]:
    names = set()
    for name, (kind, _, _) in METRICS.items():
        names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    return names


def test_grafana_dashboard_queries_name_existing_metrics() -> None:
    dash = json.loads((CONFIGS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {m for e in exprs for m in re.findall(r"\braylive_[a-z_]+", e)}
    assert used and used <= series_names(), used - series_names()
    # Every metric raylive records has a panel.
    assert {n.removesuffix("_bucket") for n in used} == set(METRICS)


def test_prometheus_config_scrapes_raylive_with_the_token() -> None:
    cfg = yaml.safe_load((CONFIGS / "prometheus.yml").read_text())
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "raylive")
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"
