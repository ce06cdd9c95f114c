"""Analytics in ClickHouse: the durable event buffer's format, schema migrations and the queries.

Producers (stream actors, playback replicas) append events to the Redis Stream `rl:analytics`
(`emit`); appending is the acknowledgement, so nothing acknowledged is lost while ClickHouse or
the writer is down. The one `AnalyticsWriter` actor reads them in a consumer group, inserts them
in batches through clickhouse-connect, then acknowledges and trims. Each row carries its Redis
entry id (`event_id`, ordered); the writer skips ids at or below a table's maximum, so a replay
after a crash between insert and acknowledgement never counts twice. The embedded default DSN is
`chdb:///<data-dir>/analytics`; `http://...` points the same code at a ClickHouse server.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

EVENTS_STREAM = "rl:analytics"
CONSUMER_GROUP = "writer"
HEARTBEAT_S = 5.0  # how often a playback replica reports each viewer session

SCHEMA_TABLE = "raylive_schema"
# Versioned migrations, applied in order once each (the version is recorded in SCHEMA_TABLE).
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE IF NOT EXISTS viewer_events (
                event_id UInt64, ts DateTime64(3, 'UTC'), stream LowCardinality(String), sid String,
                event LowCardinality(String), rendition LowCardinality(String), bytes UInt64, user_agent String
            ) ENGINE = MergeTree ORDER BY (stream, ts, event_id)""",
            """CREATE TABLE IF NOT EXISTS ingest_health (
                event_id UInt64, ts DateTime64(3, 'UTC'), stream LowCardinality(String), bitrate_kbps Float32,
                fps Float32, keyframe_interval_ms UInt32, late_frames UInt32, transcode_lag_s Float32,
                realtime_factor Map(String, Float32)
            ) ENGINE = MergeTree ORDER BY (stream, ts, event_id)""",
            """CREATE TABLE IF NOT EXISTS stream_sessions (
                event_id UInt64, ts DateTime64(3, 'UTC'), stream LowCardinality(String), event LowCardinality(String),
                video_codec String, audio_codec String, resolution String, node String, reason String
            ) ENGINE = MergeTree ORDER BY (stream, ts, event_id)""",
        ],
    ),
    (
        2,
        [
            """CREATE TABLE IF NOT EXISTS processor_events (
                event_id UInt64, ts DateTime64(3, 'UTC'), stream LowCardinality(String), processor LowCardinality(String),
                frame_ts Float64, payload String
            ) ENGINE = MergeTree ORDER BY (stream, processor, ts, event_id)""",
        ],
    ),
]

# Event kind -> (table, columns after event_id). Producers send these fields as JSON.
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "viewer": ("viewer_events", ("ts", "stream", "sid", "event", "rendition", "bytes", "user_agent")),
    "ingest": (
        "ingest_health",
        ("ts", "stream", "bitrate_kbps", "fps", "keyframe_interval_ms", "late_frames", "transcode_lag_s", "realtime_factor"),
    ),
    "session": ("stream_sessions", ("ts", "stream", "event", "video_codec", "audio_codec", "resolution", "node", "reason")),
    "processor": ("processor_events", ("ts", "stream", "processor", "frame_ts", "payload")),
}
_DEFAULTS: dict[str, Any] = {"bytes": 0, "user_agent": "", "rendition": "", "late_frames": 0, "keyframe_interval_ms": 0}
_DEFAULTS |= {"transcode_lag_s": 0.0, "realtime_factor": {}, "video_codec": "", "audio_codec": "", "resolution": ""}
_DEFAULTS |= {"node": "", "reason": "", "fps": 0.0, "bitrate_kbps": 0.0, "frame_ts": 0.0, "payload": "{}"}


class Client(Protocol):
    """The part of clickhouse-connect's client raylive uses (the chdb and the HTTP client both have it)."""

    def command(self, cmd: str, parameters: Any = None, settings: Any = None) -> Any: ...
    def query(self, query: str, parameters: Any = None, settings: Any = None) -> Any: ...
    def insert(self, table: str, data: Any, column_names: Any = None) -> Any: ...


class RedisLike(Protocol):
    def xadd(self, name: str, fields: Any) -> Any: ...


def emit(r: RedisLike, kind: str, **fields: Any) -> None:
    """Append one analytics event (a pipeline works too). `ts` defaults to now."""
    fields.setdefault("ts", time.time())
    r.xadd(EVENTS_STREAM, {"k": kind, "d": json.dumps(fields, separators=(",", ":"))})


def event_id(entry_id: str) -> int:
    """A Redis Stream id `ms-seq` as one ordered integer."""
    ms, _, seq = entry_id.partition("-")
    return int(ms) << 20 | int(seq or 0)


def migrate(client: Client) -> int:
    """Apply the migrations this database has not seen; return its schema version."""
    client.command(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version UInt32, applied_at DateTime) ENGINE = MergeTree ORDER BY version")
    current = int(client.query(f"SELECT max(version) FROM {SCHEMA_TABLE}").result_rows[0][0] or 0)
    for version, statements in MIGRATIONS:
        if version > current:
            for sql in statements:
                client.command(sql)
            client.command(f"INSERT INTO {SCHEMA_TABLE} VALUES ({version}, now())")
            current = version
    return current


def last_inserted(client: Client) -> dict[str, int]:
    return {table: int(client.query(f"SELECT max(event_id) FROM {table}").result_rows[0][0] or 0) for table, _ in TABLES.values()}


@dataclass
class Batch:
    rows: dict[str, list[list[Any]]]  # table -> rows (event_id first)
    ids: list[str]  # every entry id read, to acknowledge
    skipped: int = 0  # already inserted before a restart
    malformed: int = 0


def to_rows(entries: Iterable[tuple[str, dict[str, str]]], after: dict[str, int]) -> Batch:
    """Redis Stream entries -> rows per table, leaving out those already inserted (`after`)."""
    batch = Batch({}, [])
    for entry_id, fields in entries:
        batch.ids.append(entry_id)
        try:
            table, columns = TABLES[fields["k"]]
            data = json.loads(fields["d"])
            eid = event_id(entry_id)
            if eid <= after.get(table, 0):
                batch.skipped += 1
                continue
            row: list[Any] = [eid]
            for col in columns:
                value = data.get(col, _DEFAULTS.get(col))
                row.append(datetime.fromtimestamp(float(value), UTC) if col == "ts" else value)
            batch.rows.setdefault(table, []).append(row)
        except (KeyError, ValueError, TypeError):
            batch.malformed += 1  # a bad event must not block the ones behind it
    return batch


# -- queries ----------------------------------------------------------------------------
_SPAN = "ts >= fromUnixTimestamp64Milli(toInt64({a:Float64} * 1000)) AND ts < fromUnixTimestamp64Milli(toInt64({b:Float64} * 1000))"
_READ_ONLY = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN)\b", re.I)
READ_ONLY_SETTINGS = {"readonly": 1}


# `readonly=1` stops writes to tables, but not INTO OUTFILE or table functions that reach the
# server's files, network or processes.
_ESCAPES = re.compile(
    r"\binto\s+outfile\b|\b(file|url|s3|s3cluster|gcs|hdfs|remote|remotesecure|cluster|mysql|postgresql|mongodb|redis|"
    r"executable|jdbc|odbc|sqlite|azureblobstorage|deltalake|iceberg|hudi|input|python)\s*\(",
    re.I,
)


def check_read_only(sql: str) -> str:
    """A first guard for researchers' SQL; the query also runs with `readonly=1`."""
    if not _READ_ONLY.match(sql) or ";" in sql.strip().rstrip(";"):
        raise ValueError("only one SELECT/WITH/SHOW/DESCRIBE/EXPLAIN statement is allowed")
    if _ESCAPES.search(sql):
        raise ValueError("INTO OUTFILE and table functions that reach files, network or processes are not allowed")
    return sql


def stream_report(client: Client, stream: str, start: float, end: float, step: int) -> dict[str, Any]:
    """Viewers, watch time, rendition mix and ingest health of one stream over [start, end)."""
    p = {"s": stream, "a": start, "b": end, "step": step, "hb": HEARTBEAT_S}
    where = f"stream = {{s:String}} AND {_SPAN}"
    viewers = client.query(
        f"SELECT toUnixTimestamp(toStartOfInterval(ts, toIntervalSecond({{step:UInt32}}))) AS t, uniqExact(sid) "
        f"FROM viewer_events WHERE {where} AND event != 'end' GROUP BY t ORDER BY t",
        parameters=p,
    ).result_rows
    # Peak concurrency on the heartbeat grid, whatever the requested step.
    peak = client.query(
        f"SELECT max(n) FROM (SELECT toStartOfInterval(ts, toIntervalSecond({int(HEARTBEAT_S)})) AS t, uniqExact(sid) AS n "
        f"FROM viewer_events WHERE {where} AND event != 'end' GROUP BY t)",
        parameters=p,
    ).result_rows[0][0]
    totals = client.query(
        f"SELECT uniqExact(sid), sum(span) FROM (SELECT sid, toFloat64(max(ts)) - toFloat64(min(ts)) AS span "
        f"FROM viewer_events WHERE {where} GROUP BY sid)",
        parameters=p,
    ).result_rows[0]
    mix = client.query(
        f"SELECT rendition, count() FROM viewer_events WHERE {where} AND event = 'heartbeat' AND rendition != 'audio' "
        f"GROUP BY rendition ORDER BY rendition",
        parameters=p,
    ).result_rows
    ingest = client.query(
        f"SELECT toUnixTimestamp(toStartOfInterval(ts, toIntervalSecond({{step:UInt32}}))) AS t, avg(bitrate_kbps), avg(fps), "
        f"sum(late_frames), max(transcode_lag_s) FROM ingest_health WHERE {where} GROUP BY t ORDER BY t",
        parameters=p,
    ).result_rows
    mix_total = sum(n for _, n in mix) or 1
    return {
        "stream": stream,
        "from": start,
        "to": end,
        "step": step,
        "peak_viewers": int(peak or 0),
        "unique_viewers": int(totals[0] or 0),
        "watch_time_s": round(float(totals[1] or 0), 1),
        "viewers": [{"t": int(t), "viewers": int(n)} for t, n in viewers],
        "renditions": {r: round(n / mix_total, 3) for r, n in mix},
        "ingest": [
            {
                "t": int(t),
                "bitrate_kbps": round(float(b), 1),
                "fps": round(float(f), 2),
                "late_frames": int(lf),
                "transcode_lag_s": round(float(lag), 2),
            }
            for t, b, f, lf, lag in ingest
        ],
    }


def top_streams(client: Client, start: float, end: float, limit: int = 10) -> list[dict[str, Any]]:
    rows = client.query(
        "SELECT stream, sum(span) AS watch, count() AS sessions FROM (SELECT stream, sid, toFloat64(max(ts)) - toFloat64(min(ts)) AS span "
        f"FROM viewer_events WHERE {_SPAN} GROUP BY stream, sid) "
        "GROUP BY stream ORDER BY watch DESC LIMIT {n:UInt32}",
        parameters={"a": start, "b": end, "n": limit},
    ).result_rows
    return [{"stream": s, "watch_time_s": round(float(w), 1), "sessions": int(n)} for s, w, n in rows]
