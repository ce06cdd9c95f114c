"""Analytics schema, buffer format and queries against a real embedded ClickHouse (chdb)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from raylive import analytics
from raylive.actors.analytics import open_client


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # chdb allows one data path per process: every test of this module shares this one.
    c = open_client(f"chdb://{tmp_path_factory.mktemp('chdb') / 'analytics'}")
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


def test_malformed_events_are_counted_and_skipped(client: Any) -> None:
    bad = [("1800000000000-0", {"k": "nope", "d": "{}"}), ("1800000000001-0", {"k": "viewer", "d": "not json"})]
    good = entry(200_000_000_000, "session", ts=5, stream="mal", event="start")
    batch = analytics.to_rows([*bad, good], {})
    assert batch.malformed == 2 and len(batch.rows["stream_sessions"]) == 1 and len(batch.ids) == 3


def test_stream_report_counts_viewers_watch_time_mix_and_ingest(client: Any) -> None:
    t0 = 1_750_000_000.0
    events: list[tuple[str, dict[str, str]]] = []
    n = 300_000_000_000

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
    assert report["renditions"] == {"480p": pytest.approx(5 / 7, abs=0.01), "source": pytest.approx(2 / 7, abs=0.01)}
    assert sum(p["late_frames"] for p in report["ingest"]) == 1 and len(report["ingest"]) == 4
    assert report["ingest"][0]["bitrate_kbps"] == 2504.5 and report["ingest"][0]["fps"] == 30
    assert analytics.top_streams(client, t0, t0 + 60)[0] == {"stream": "rep", "watch_time_s": 35.0, "sessions": 3}


def test_only_read_only_sql_is_accepted(client: Any) -> None:
    assert analytics.check_read_only("SELECT 1")
    assert analytics.check_read_only("with x as (select 1) select * from x;")
    for sql in ("DROP TABLE viewer_events", "SELECT 1; DROP TABLE viewer_events", "INSERT INTO viewer_events SELECT * FROM viewer_events"):
        with pytest.raises(ValueError, match="only one SELECT"):
            analytics.check_read_only(sql)
    # readonly=1 lets these through, so the guard refuses them.
    for sql in ("SELECT * FROM viewer_events INTO OUTFILE '/tmp/x'", "SELECT * FROM file('/etc/passwd', 'LineAsString')"):
        with pytest.raises(ValueError, match="not allowed"):
            analytics.check_read_only(sql)
    # And ClickHouse itself refuses writes in a read-only query.
    with pytest.raises(Exception, match="READONLY|readonly"):
        client.query("CREATE TABLE sneaky (x UInt8) ENGINE = Memory", settings=analytics.READ_ONLY_SETTINGS)


def test_event_ids_keep_the_buffer_order() -> None:
    assert analytics.event_id("1700000000000-3") == (1_700_000_000_000 << 20) | 3
    assert analytics.event_id("1700000000000-3") < analytics.event_id("1700000000001-0")
