"""Analytics schema, buffer format and queries against a real embedded ClickHouse (chdb)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from raylive import analytics, store
from raylive.actors.analytics import AnalyticsWriter, open_client
from raylive.launcher.redis_server import EmbeddedRedis


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    # chdb allows one data path per process: every test of this module shares this one.
    return f"chdb://{tmp_path_factory.mktemp('chdb') / 'analytics'}"


@pytest.fixture(scope="module")
def client(dsn: str) -> Iterator[Any]:
    c = open_client(dsn)
    assert analytics.migrate(c) == analytics.MIGRATIONS[-1][0]
    yield c


def entry(i: int, kind: str, **fields: Any) -> tuple[str, dict[str, str]]:
    return f"{1_700_000_000_000 + i}-0", {"k": kind, "d": json.dumps(fields)}


def insert(client: Any, entries: list[tuple[str, dict[str, str]]]) -> analytics.Batch:
    batch = analytics.to_rows(entries, analytics.last_inserted(client))
    for table, rows in batch.rows.items():
        columns = ["event_id", *next(cols for t, cols in analytics.TABLES.values() if t == table)]
        client.insert(table, rows, column_names=columns)
    return batch


def test_migrations_are_versioned_and_run_once(client: Any) -> None:
    assert analytics.migrate(client) == 2
    versions = client.query(f"SELECT version FROM {analytics.SCHEMA_TABLE} ORDER BY version").result_rows
    assert versions == [(1,), (2,)]
    tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
    assert {"viewer_events", "ingest_health", "stream_sessions", "processor_events"} <= tables


def test_a_replayed_buffer_is_not_counted_twice(client: Any) -> None:
    events = [entry(i, "viewer", ts=1000 + i, stream="replay", sid=f"s{i}", event="heartbeat", bytes=10) for i in range(50)]
    assert len(insert(client, events[:30]).rows["viewer_events"]) == 30
    # A writer that died after inserting but before acknowledging reads the same entries again.
    again = insert(client, events)
    assert again.skipped == 30 and len(again.rows["viewer_events"]) == 20
    count, ids = client.query("SELECT count(), uniqExact(event_id) FROM viewer_events WHERE stream = 'replay'").result_rows[0]
    assert count == ids == 50


def test_events_that_cannot_be_rows_are_rejected_one_by_one_with_the_reason(client: Any) -> None:
    bad = [
        ("1800000000000-0", {"k": "nope", "d": "{}"}),
        ("1800000000001-0", {"k": "viewer", "d": "not json"}),
        entry(102, "ingest", ts=5, stream="mal", keyframe_interval_ms=-40),  # timestamps went back
        entry(103, "viewer", ts=5, stream="mal", sid="s", event="heartbeat", bytes="lots"),
        entry(104, "ingest", ts=5, stream="mal", realtime_factor={"720p": "fast"}),
    ]
    good = [entry(105, "session", ts=5, stream="mal", event="start"), entry(106, "ingest", ts=5, stream="mal", fps=30)]
    batch = analytics.to_rows([*bad, *good], {})
    assert [r.entry_id for r in batch.rejected] == [e[0] for e in bad] and len(batch.ids) == 7
    reasons = [r.reason for r in batch.rejected]
    assert reasons[2] == "keyframe_interval_ms: -40 is out of range for UInt32", reasons
    assert reasons[3].startswith("bytes:") and reasons[4].startswith("realtime_factor:"), reasons
    assert len(batch.rows["stream_sessions"]) == 1 and len(batch.rows["ingest_health"]) == 1
    for table, rows in batch.rows.items():  # what passed the checks inserts
        client.insert(table, rows, column_names=["event_id", *next(c for t, c in analytics.TABLES.values() if t == table)])


def test_stream_report_counts_viewers_watch_time_mix_and_ingest(client: Any) -> None:
    t0 = 1_750_000_000.0
    events: list[tuple[str, dict[str, str]]] = []
    n = 1000

    def add(kind: str, **fields: Any) -> None:
        nonlocal n
        n += 1
        events.append(entry(n, kind, **fields))

    # Three sessions: a (0..20 s, 480p), b (2..12 s, source), c (30..35 s, 480p). Peak 2, watch 35 s.
    for sid, start, end, rendition in (("a", 0, 20, "480p"), ("b", 2, 12, "source"), ("c", 30, 35, "480p")):
        add("viewer", ts=t0 + start, stream="rep", sid=sid, event="start", rendition=rendition)
        for t in range(start + 5, end + 1, 5):
            add("viewer", ts=t0 + t, stream="rep", sid=sid, event="heartbeat", rendition=rendition, bytes=1000)
        add("viewer", ts=t0 + end, stream="rep", sid=sid, event="end", rendition=rendition)
    for s in range(40):
        add("ingest", ts=t0 + s, stream="rep", bitrate_kbps=2500 + s, fps=30, late_frames=1 if s == 7 else 0)
    insert(client, events)
    report = analytics.stream_report(client, "rep", t0, t0 + 60, 10)
    assert report["peak_viewers"] == 2 and report["unique_viewers"] == 3
    assert report["watch_time_s"] == 35.0
    assert report["viewers"] == [{"t": int(t0) + k * 10, "viewers": v} for k, v in ((0, 2), (1, 2), (2, 1), (3, 1))]
    # Finer than the heartbeats: a session counts in each second from its start to its end.
    by_second = {p["t"] - int(t0): p["viewers"] for p in analytics.stream_report(client, "rep", t0, t0 + 60, 1)["viewers"]}
    assert by_second == {t: (0 <= t <= 20) + (2 <= t <= 12) + (30 <= t <= 35) for t in (*range(21), *range(30, 36))}
    assert report["renditions"] == {"480p": pytest.approx(5 / 7, abs=0.01), "source": pytest.approx(2 / 7, abs=0.01)}
    assert sum(p["late_frames"] for p in report["ingest"]) == 1 and len(report["ingest"]) == 4
    assert report["ingest"][0]["bitrate_kbps"] == 2504.5 and report["ingest"][0]["fps"] == 30
    assert analytics.top_streams(client, t0, t0 + 60)[0] == {"stream": "rep", "watch_time_s": 35.0, "sessions": 3}


ALLOWED = [
    "SELECT 1",
    "with x as (select 1 AS one) select * from x;",
    "SELECT stream, countIf(event = 'heartbeat') AS n FROM viewer_events GROUP BY stream HAVING n >= 0 ORDER BY n DESC LIMIT 5",
    "SELECT v.stream, row_number() OVER (PARTITION BY v.stream ORDER BY v.ts) FROM viewer_events AS v "
    "JOIN ingest_health AS i ON v.stream = i.stream WHERE v.stream IN (SELECT stream FROM stream_sessions)",
    "SELECT toStartOfInterval(ts, INTERVAL 5 SECOND) AS t, avg(JSONExtractFloat(payload, 'mean')) FROM processor_events GROUP BY t",
    "/* a comment */ SELECT quantile(0.9)(bitrate_kbps), arrayMap(x -> x * 2, [1, 2]) FROM ingest_health -- and another",
    "SHOW TABLES",
    "DESCRIBE TABLE viewer_events",
]
# Each of these ran under the old keyword guard (readonly=1 does not stop them), or is another way
# out of raylive's tables: the file functions, a file written, other databases, settings.
REFUSED = {
    "SELECT file/**/('/etc/hostname')": "function file",
    "SELECT `file`('/etc/hostname')": "function file",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')": "table function file",
    "SELECT * FROM (SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'x String'))": "table function url",
    "DESCRIBE TABLE file('/etc/passwd')": "table function file",
    "SELECT * FROM viewer_events INTO/**/OUTFILE '/tmp/raylive-escape.txt'": "OUTFILE",
    "SELECT 1 SETTINGS readonly = 0": "SETTINGS",
    "SELECT * FROM system.users": "system.users",
    "SELECT stream FROM viewer_events WHERE stream IN system.users": "system.users",
    "SELECT dictGet('d', 'x', 1)": "function dictGet",
    "SELECT * FROM executable('id', 'TSV', 'x String')": "table function executable",
    "DROP TABLE viewer_events": "only SELECT",
    "INSERT INTO viewer_events SELECT * FROM viewer_events": "only SELECT",
    "SELECT 1; DROP TABLE viewer_events": "Multi-statements",
    "SELEC 1": "Syntax error",
}


def test_researcher_sql_is_checked_on_clickhouses_own_parse(client: Any) -> None:
    for sql in ALLOWED:
        analytics.read_only_query(client, sql)  # runs
    for sql, why in REFUSED.items():
        with pytest.raises(analytics.QueryRefused, match=why):
            analytics.read_only_query(client, sql)
    assert not Path("/tmp/raylive-escape.txt").exists()
    tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
    assert {"viewer_events", "ingest_health"} <= tables  # DROP did not run


def test_researcher_sql_runs_with_limits_even_behind_a_comment(dsn: str) -> None:
    client = open_client(dsn)  # as the writer's sandbox: a refused query leaves its limits on the client
    # clickhouse-connect adds the limits as a SETTINGS clause; the parser's rendering of the query
    # (comments gone) is what runs, so a trailing comment cannot swallow them.
    limits = "SELECT getSetting('readonly'), getSetting('max_execution_time'), getSetting('max_memory_usage') -- "
    assert analytics.read_only_query(client, limits).result_rows == [(2, 10, 512 << 20)]
    with pytest.raises(analytics.QueryRefused, match="more than 100000 rows"):
        analytics.read_only_query(client, "SELECT arrayJoin(range(200000)) -- one block")
    with pytest.raises(Exception, match="READONLY|readonly"):
        client.query("CREATE TABLE sneaky (x UInt8) ENGINE = Memory", settings=analytics.QUERY_LIMITS)
    result = analytics.read_only_query(client, "SELECT {a:UInt8} + 1", {"a": 1})
    assert result.result_rows == [(2,)]


def test_a_slow_researcher_query_does_not_hold_up_inserts(client: Any, dsn: str) -> None:
    reader = open_client(dsn)  # as in AnalyticsWriter: queries on a connection of their own
    # ≈ 2.4 s here: 3.6 billion rows of arithmetic.
    slow = (
        "SELECT sum(intDiv(a * b, 7) % 5) FROM (SELECT arrayJoin(range(60000)) AS a) AS x "
        "CROSS JOIN (SELECT arrayJoin(range(60000)) AS b) AS y"
    )
    done: list[float] = []
    thread = threading.Thread(target=lambda: (analytics.read_only_query(reader, slow), done.append(time.monotonic())))
    started = time.monotonic()
    thread.start()
    time.sleep(0.2)
    insert(client, [entry(5000, "viewer", ts=1_700_000_000, stream="concurrent", sid="s", event="start")])
    inserted = time.monotonic()
    thread.join(30)
    assert done, "the slow query did not finish"
    assert done[0] - started > 0.5, "the query was not slow enough to show anything"
    assert inserted < done[0], f"the insert waited for the query ({inserted - started:.2f}s vs {done[0] - started:.2f}s)"


def test_event_ids_keep_the_buffer_order() -> None:
    assert analytics.event_id("1700000000000-3") == (1_700_000_000_000 << 20) | 3
    assert analytics.event_id("1700000000000-3") < analytics.event_id("1700000000001-0")


OUTAGE_S = float(os.environ.get("RAYLIVE_ANALYTICS_OUTAGE_S", "60"))


def _set_inserts_failing(dsn: str, failing: bool) -> None:
    """A real ClickHouse failure: 'Too many parts' (merges stopped, the threshold at one part)."""
    client = open_client(dsn)
    for table, _ in analytics.TABLES.values():
        client.command(f"SYSTEM {'STOP' if failing else 'START'} MERGES {table}")
        client.command(f"ALTER TABLE {table} MODIFY SETTING parts_to_throw_insert = {1 if failing else 3000}")


@pytest.mark.timeout(OUTAGE_S + 120)
def test_a_clickhouse_outage_under_load_loses_no_event_and_bad_events_go_to_dead_letters(client: Any, dsn: str, tmp_path: Path) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis")
    url = redis_server.start()
    r = redis.Redis.from_url(url, decode_responses=True)
    writer = AnalyticsWriter(dsn, url)
    emitted = {"good": 0, "bad": 0}
    stop = threading.Event()

    def load() -> None:  # 100 events/s from "many streams", one in 50 out of range
        i = 0
        while not stop.is_set():
            pipe = r.pipeline(transaction=False)
            for _ in range(10):
                i += 1
                if i % 50 == 0:
                    analytics.emit(pipe, "ingest", stream="outage", keyframe_interval_ms=-33)
                    emitted["bad"] += 1
                else:
                    analytics.emit(pipe, "viewer", stream="outage", sid=f"s{i % 97}", event="heartbeat", bytes=i)
                    emitted["good"] += 1
            pipe.execute()
            time.sleep(0.1)

    emitter = threading.Thread(target=load)
    try:
        emitter.start()
        time.sleep(3)
        _set_inserts_failing(dsn, True)
        started = time.monotonic()
        while time.monotonic() - started < OUTAGE_S:
            time.sleep(1)
            status = writer.stats()
        assert status["failing_since"] and "Too many parts" in status["last_error"], status
        assert r.xlen(store.ANALYTICS_EVENTS) >= emitted["good"] * 0.5  # nothing trimmed while failing
        _set_inserts_failing(dsn, False)
        time.sleep(3)
        stop.set()
        emitter.join()
        deadline = time.monotonic() + 60
        status = writer.stats()
        # One reading of both (XINFO GROUPS): two calls raced the writer taking its last batch (pending
        # read before it, lag after: 0 and 0 with 1,150 events on their way to ClickHouse, seen in CI).
        while (status["pending"] or status["lag"]) and time.monotonic() < deadline:
            time.sleep(0.5)
            status = writer.stats()
        count, unique = client.query("SELECT count(), uniqExact(event_id) FROM viewer_events WHERE stream = 'outage'").result_rows[0]
        print(f"{OUTAGE_S:.0f} s outage: {emitted}, inserted {count}, dead letters {status['dead_letters']['kept']}")
        assert count == unique == emitted["good"], (count, unique, emitted, status)
        assert status["failing_since"] is None and status["dead_letters"]["kept"] == emitted["bad"]
        assert status["dead_letters"]["recent"][0]["reason"] == "keyframe_interval_ms: -33 is out of range for UInt32"
    finally:
        stop.set()
        _set_inserts_failing(dsn, False)
        writer.drain(timeout_s=1)
        redis_server.stop()
