"""Deployment files: the Serve config round-trips through Ray's own schema and its apps build;
the KubeRay manifest embeds the same config with GCS fault tolerance; the image installs raylive."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).parent.parent.parent


def serve_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())  # type: ignore[no-any-return]


def test_serve_config_validates_with_rays_schema_and_its_apps_build(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = serve_config()
    schema = ServeDeploySchema.model_validate(cfg)
    apps = {a.name: a for a in schema.applications}
    assert set(apps) == {"playback", "control"} and apps["playback"].route_prefix == "/live"
    playback = apps["playback"].deployments[0]
    assert playback.num_replicas == "auto" and playback.autoscaling_config["max_replicas"] > 1
    monkeypatch.setenv("RAYLIVE_ADMIN_TOKEN", "t" * 32)
    for app in cfg["applications"]:
        module, _, name = app["import_path"].partition(":")
        built = getattr(importlib.import_module(module), name)(app["args"])
        assert type(built).__name__ == "Application"
    monkeypatch.delenv("RAYLIVE_ADMIN_TOKEN")
    with pytest.raises(ValueError, match="admin token"):
        importlib.import_module("raylive.serve_apps.deploy").control_app({"redis_url": "redis://x"})


def test_rayservice_embeds_the_serve_config_with_gcs_fault_tolerance() -> None:
    svc = yaml.safe_load((ROOT / "cluster" / "rayservice.yaml").read_text())
    assert svc["kind"] == "RayService" and svc["metadata"]["annotations"]["ray.io/ft-enabled"] == "true"
    assert yaml.safe_load(svc["spec"]["serveConfigV2"]) == serve_config()
    cluster = svc["spec"]["rayClusterConfig"]
    assert cluster["gcsFaultToleranceOptions"]["redisAddress"]
    assert cluster["rayVersion"] == importlib.import_module("ray").__version__
    envs = {e["name"] for e in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"RAY_SERVE_ENABLE_HA_PROXY", "RAYLIVE_ADMIN_TOKEN"} <= envs


def test_cluster_launcher_config_and_dockerfile_install_raylive() -> None:
    launcher = yaml.safe_load((ROOT / "cluster" / "ray-cluster.yaml").read_text())
    assert launcher["head_node_type"] in launcher["available_node_types"]
    assert any("RAY_SERVE_ENABLE_HA_PROXY=1" in c for c in launcher["head_start_ray_commands"])
    docker = (ROOT / "cluster" / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ray_pin = next(d for d in project["dependencies"] if d.startswith("ray["))
    ray_version = importlib.import_module("ray").__version__
    assert f"rayproject/ray:{ray_version}-py3" in docker and f">={ray_version.rsplit('.', 1)[0]}" in ray_pin
    assert "COPY --chown=ray pyproject.toml" in docker and "pip install --no-cache-dir ." in docker
    py = project["requires-python"].removeprefix(">=").replace(".", "")
    assert f"-py{py}" in docker
