"""The `raylive` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from . import store
from .launcher.redis_server import EmbeddedRedis, redis_password
from .settings import Settings, load_settings, validate_ladder


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ApiClient:
    """The control API of a running raylive (what the CLI uses when raylive is up)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error") or exc.reason
            except ValueError:
                message = exc.reason
            raise ApiError(exc.code, str(message)) from None
        return json.loads(raw) if raw else None


START_WAIT_S = 300.0  # how long a command waits for a raylive that is still starting


def _api(args: argparse.Namespace) -> ApiClient | None:
    """The API of the raylive running on this data dir, waiting for it if it is still starting;
    None when none runs: then this command holds the data dir's lock (`_redis`), so that an `up`
    starting meanwhile waits for it rather than start a second Redis on the same data dir."""
    from .launcher.instance import STARTING, InstanceLock, read_runtime, wait_until_up
    from .launcher.up import ADMIN_TOKEN_ENV

    if args.redis_url:
        return None
    data_dir = _data_dir(args)
    deadline = time.monotonic() + START_WAIT_S
    said = False
    while True:
        info = read_runtime(data_dir)
        if info is not None and info.get("state") == STARTING:
            if not said:
                print(f"raylive: waiting for the raylive starting on {data_dir}...", file=sys.stderr, flush=True)
                said = True
            info = wait_until_up(data_dir, max(0.0, deadline - time.monotonic()))
            if info is None and read_runtime(data_dir) is not None:
                raise SystemExit(f"raylive: the raylive on {data_dir} did not finish starting within {START_WAIT_S:.0f}s")
        if info is not None:
            break
        lock = InstanceLock(data_dir)
        if lock.acquire(timeout_s=0.5):
            args.instance_lock = lock  # released when this process exits
            return None
        # Held by an `up` that has not written its record yet, or by another command.
        if time.monotonic() > deadline:
            raise SystemExit(f"raylive: {data_dir} stayed locked for {START_WAIT_S:.0f}s ({lock.path})")
    token = os.environ.get(ADMIN_TOKEN_ENV) or (Path(info["admin_token_file"]).read_text().strip() if info.get("admin_token_file") else "")
    host = "127.0.0.1" if info["host"] in ("0.0.0.0", "::", "") else info["host"]
    return ApiClient(f"http://{host}:{info['http_port']}", token)


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or Settings().data_dir).expanduser()


@contextlib.contextmanager
def _redis(args: argparse.Namespace) -> Iterator[redis.Redis]:
    """The Redis given, or the data dir's, started just for this command (under the data dir's
    lock, which `_api` took)."""
    data_dir = _data_dir(args)
    url = args.redis_url
    embedded = None
    if not url:
        embedded = EmbeddedRedis(data_dir / "redis", password=redis_password(data_dir))
        url = embedded.start()
    client = redis.Redis.from_url(url)
    try:
        yield client
    finally:
        client.close()
        if embedded is not None:
            embedded.stop()


def _settings(args: argparse.Namespace) -> Settings:
    s = load_settings(args.config)
    if args.data_dir:
        s.data_dir = args.data_dir
    if args.redis_url:
        s.redis_url = args.redis_url
    if args.address:
        s.ray_address = args.address
    if args.host:
        s.host = args.host
    if args.rtmp_port is not None:
        s.rtmp.port = args.rtmp_port
    if getattr(args, "media_redis_url", None):
        s.media_redis_url = args.media_redis_url
    if getattr(args, "clickhouse_url", None):
        s.analytics.clickhouse_url = args.clickhouse_url
    if getattr(args, "http_port", None) is not None:
        s.http.port = args.http_port
    if getattr(args, "no_dashboard", False):
        s.dashboard = False
    return s


def cmd_gateway(args: argparse.Namespace) -> int:
    from .launcher.up import start_gateway_here

    settings = _settings(args)
    if not settings.redis_url:
        print("raylive gateway: --redis-url is required (the cluster's shared Redis)", file=sys.stderr)
        return 2
    start_gateway_here(settings)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from .launcher.up import run_up

    return run_up(_settings(args))


def cmd_keys(args: argparse.Namespace) -> int:
    api = _api(args)
    if api is not None:
        return _keys_via_api(api, args)
    with _redis(args) as r:
        if args.action == "create":
            try:
                key = store.create_stream(r, args.name, _ladder_arg(args, check=True))
            except ValueError as exc:
                print(f"raylive: {exc}", file=sys.stderr)
                return 2
            except store.StreamExists:
                print(f"raylive: stream {args.name!r} already exists", file=sys.stderr)
                return 1
            from .launcher.instance import read_record

            last = read_record(_data_dir(args)) or {}  # the port this data dir's raylive used last
            port = last.get("rtmp_port") or load_settings(getattr(args, "config", None)).rtmp.port
            _print_key(args.name, key, f"rtmp://HOST:{port}/live/<key>")
        elif args.action == "list":
            for info in store.list_streams(r):
                _print_key_line(info)
        elif args.action == "revoke":
            try:
                store.revoke_stream(r, args.name)
            except store.NoSuchStream:
                print(f"raylive: no stream named {args.name!r}", file=sys.stderr)
                return 1
            print(f"revoked key of stream {args.name}")
    return 0


def _ladder_arg(args: argparse.Namespace, check: bool = False) -> list[str] | None:
    """`--ladder source,480p,360p`. The API checks names against the running configuration;
    without it (`check`), against the configuration file's renditions."""
    if not getattr(args, "ladder", None):
        return None
    ladder = [r.strip() for r in args.ladder.split(",") if r.strip()]
    if check:
        validate_ladder(ladder, load_settings(getattr(args, "config", None)).transcode)
    return ladder


def _keys_via_api(api: ApiClient, args: argparse.Namespace) -> int:
    try:
        if args.action == "create":
            store.validate_name(args.name)
            created = api.call("POST", "/api/v1/streams", {"name": args.name, "ladder": _ladder_arg(args)})
            _print_key(created["name"], created["key"], created["publish_url"].replace(created["key"], "<key>"))
        elif args.action == "list":
            for info in api.call("GET", "/api/v1/streams"):
                _print_key_line(info)
        elif args.action == "revoke":
            api.call("POST", f"/api/v1/streams/{args.name}/revoke")
            print(f"revoked key of stream {args.name}")
    except ValueError as exc:
        print(f"raylive: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"raylive: {exc}", file=sys.stderr)
        return 2 if exc.status == 422 else 1
    return 0


def _print_key_line(info: dict[str, Any]) -> None:
    print(f"{info['name']}\t{'revoked' if info['revoked'] else 'active'}\t{info['state']}")


def _print_key(name: str, key: str, publish_url: str) -> None:
    print(f"stream: {name}")
    print(f"key:    {key}")
    print(f"Keep the key secret; it is shown only this once. Publish to {publish_url}", file=sys.stderr)


def cmd_streams(args: argparse.Namespace) -> int:
    api = _api(args)
    if api is not None:
        streams = api.call("GET", "/api/v1/streams")
    else:
        with _redis(args) as r:
            streams = store.list_streams(r)
    if args.json:
        print(json.dumps(streams, indent=2))
        return 0
    if not args.all:
        streams = [s for s in streams if s["state"] == "live"]
    if not streams:
        print("no live streams" if not args.all else "no streams")
    for s in streams:
        extra = " ".join(f"{k}={s[k]}" for k in ("resolution", "video_codec", "audio_codec", "fps", "bitrate_kbps") if k in s)
        print(f"{s['name']}\t{s['state']}\t{extra}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the raylive running on this data dir, as SIGTERM would, and wait for it."""
    from .launcher.instance import read_runtime

    info = read_runtime(_data_dir(args))
    if not info:
        print("raylive: no raylive is running with this data dir", file=sys.stderr)
        return 1
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("raylive stopped")
            return 0
        time.sleep(0.2)
    print(f"raylive: still running after {args.timeout}s (pid {pid})", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raylive", description="Live video (RTMP in, HLS out) on Ray.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=None, help="raylive's data directory (default ~/.raylive)")
    common.add_argument("--redis-url", default="", help="use this Redis instead of the embedded one")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", parents=[common], help="start raylive in the foreground")
    up.add_argument("--config", help="settings YAML (see configs/raylive.yaml)")
    up.add_argument("--address", help="join this Ray cluster instead of starting a local one")
    up.add_argument("--host", help="address to bind RTMP and HTTP to (default 0.0.0.0)")
    up.add_argument("--rtmp-port", type=int, help="RTMP port (default 1935)")
    up.add_argument("--http-port", type=int, help="HTTP port for playback (default 8000)")
    up.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard")
    up.add_argument("--media-redis-url", help="segments and playlists in this Redis (no persistence, maxmemory) instead of an embedded one")
    up.add_argument("--clickhouse-url", help="analytics in this ClickHouse (http://user:pass@host:8123/db) instead of embedded chdb")
    up.set_defaults(func=cmd_up)

    gw = sub.add_parser("gateway", parents=[common], help="start an RTMP gateway on this node of a running raylive's Ray cluster")
    gw.add_argument("--config", help="settings YAML (see configs/raylive.yaml)")
    gw.add_argument("--address", default="auto", help="the Ray cluster (default: auto)")
    gw.add_argument("--host", help="address to bind RTMP to (default 0.0.0.0)")
    gw.add_argument("--rtmp-port", type=int, help="RTMP port (default 1935)")
    gw.set_defaults(func=cmd_gateway)

    down = sub.add_parser("down", parents=[common], help="stop a running raylive (drains streams, writes ENDLIST)")
    down.add_argument("--timeout", type=float, default=60.0)
    down.set_defaults(func=cmd_down)

    keys = sub.add_parser("keys", help="manage stream keys")
    ksub = keys.add_subparsers(dest="action", required=True)
    for action, helptext in (("create", "create a stream and print its key once"), ("revoke", "revoke a stream's key")):
        kp = ksub.add_parser(action, parents=[common], help=helptext)
        kp.add_argument("name")
        if action == "create":
            kp.add_argument("--ladder", help="renditions for this stream, e.g. source,480p,360p (default: the configured ladder)")
    ksub.add_parser("list", parents=[common], help="list streams (never their keys)")
    keys.set_defaults(func=cmd_keys)

    st = sub.add_parser("streams", parents=[common], help="list live streams and their state")
    st.add_argument("--all", action="store_true", help="include idle and ended streams")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_streams)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
