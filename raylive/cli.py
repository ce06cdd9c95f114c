"""The `raylive` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import redis

from . import store
from .redis_server import EmbeddedRedis
from .settings import Settings, load_settings


@contextlib.contextmanager
def _redis(args: argparse.Namespace) -> Iterator[redis.Redis]:
    """The Redis of a running raylive, the one given, or the data dir's (started for this command)."""
    from .up import read_runtime

    data_dir = Path(args.data_dir or Settings().data_dir).expanduser()
    url = args.redis_url or (read_runtime(data_dir) or {}).get("redis_url", "")
    embedded = None
    if not url:
        embedded = EmbeddedRedis(data_dir / "redis")
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
    if args.http_port is not None:
        s.http.port = args.http_port
    if args.no_dashboard:
        s.dashboard = False
    return s


def cmd_up(args: argparse.Namespace) -> int:
    from .up import run_up

    return run_up(_settings(args))


def cmd_keys(args: argparse.Namespace) -> int:
    with _redis(args) as r:
        if args.action == "create":
            try:
                key = store.create_stream(r, args.name)
            except ValueError as exc:
                print(f"raylive: {exc}", file=sys.stderr)
                return 2
            except store.StreamExists:
                print(f"raylive: stream {args.name!r} already exists", file=sys.stderr)
                return 1
            print(f"stream: {args.name}")
            print(f"key:    {key}")
            print("Keep the key secret; it is shown only this once. Publish to rtmp://HOST:1935/live/<key>", file=sys.stderr)
        elif args.action == "list":
            for info in store.list_streams(r):
                print(f"{info['name']}\t{'revoked' if info['revoked'] else 'active'}\t{info['state']}")
        elif args.action == "revoke":
            try:
                store.revoke_stream(r, args.name)
            except store.NoSuchStream:
                print(f"raylive: no stream named {args.name!r}", file=sys.stderr)
                return 1
            print(f"revoked key of stream {args.name}")
    return 0


def cmd_streams(args: argparse.Namespace) -> int:
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
    up.set_defaults(func=cmd_up)

    keys = sub.add_parser("keys", help="manage stream keys")
    ksub = keys.add_subparsers(dest="action", required=True)
    for action, helptext in (("create", "create a stream and print its key once"), ("revoke", "revoke a stream's key")):
        kp = ksub.add_parser(action, parents=[common], help=helptext)
        kp.add_argument("name")
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
