"""`AnalyticsWriter`: the one actor that owns the ClickHouse database (chdb allows one process per
data path). A thread drains the Redis Stream buffer into ClickHouse on one connection; actor methods
answer queries for the control API and researchers on another, so a slow query never holds up
inserts (measured: an insert took 7 ms while a 3 s query ran on the other handle). Ray restarts it after a crash and it resumes from
the consumer group's pending entries (see `raylive.analytics` for why that never double counts).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import ray
import redis

from .. import analytics, metrics, store

log = logging.getLogger(__name__)

BATCH = 5000
BLOCK_MS = 1000
# At most one insert this often: inserting each stream's once-a-second row as it came cost the
# writer 0.85 % of a core per live stream (8.5 % at N = 10, 2 cores); a chdb insert costs about
# the same whatever its size.
INSERT_INTERVAL_S = 1.0
RETRY_FIRST_S = 1.0  # a failed batch is retried after 1, 2, 4 ... 30 s
RETRY_MAX_S = 30.0


def open_client(dsn: str) -> Any:
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=dsn)


class AnalyticsWriter:
    def __init__(self, dsn: str, redis_url: str, consumer: str = "writer-1") -> None:
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.client = open_client(dsn)  # inserts: only the drain thread uses it
        self.reader = open_client(dsn)  # reports (each client serialises its own calls)
        # Researchers' SQL on a client of its own: a query that fails keeps its limits on its
        # client (clickhouse-connect's chdb backend restores settings only after success).
        self.sandbox = open_client(dsn)
        self.version = analytics.migrate(self.client)
        try:
            self.redis.xgroup_create(store.ANALYTICS_EVENTS, analytics.CONSUMER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.consumer = consumer
        self.inserted = 0
        self.skipped = 0
        self.dead_lettered = 0
        self.last_error = ""
        self.failing_since = 0.0  # when inserting started to fail (0: it does not)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analytics-writer", daemon=True)
        self._thread.start()

    # -- the buffer -> ClickHouse loop ---------------------------------------------------
    def _run(self) -> None:
        after = analytics.last_inserted(self.client)
        pending = True  # first re-read what a previous incarnation read but did not acknowledge
        backoff = RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                cursor = "0" if pending else ">"
                reply: Any = self.redis.xreadgroup(
                    analytics.CONSUMER_GROUP,
                    self.consumer,
                    {store.ANALYTICS_EVENTS: cursor},
                    count=BATCH,
                    block=None if pending else BLOCK_MS,
                )
                entries = reply[0][1] if reply else []
                if pending and not entries:
                    pending = False
                    continue
                if entries:
                    started = time.monotonic()
                    self._write(entries, after)
                    if len(entries) < BATCH:  # caught up: let the next batch gather
                        self._stop.wait(max(0.0, INSERT_INTERVAL_S - (time.monotonic() - started)))
                self.failing_since, backoff = 0.0, RETRY_FIRST_S
            except Exception as exc:  # noqa: BLE001 - keep draining; the buffer holds the events meanwhile
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                self.failing_since = self.failing_since or time.time()
                log.warning("analytics writer: %s; retrying in %.0f s", self.last_error, backoff)
                # What was read and not acknowledged is read again, before anything newer: the
                # buffer is only ever trimmed below an entry that is in ClickHouse.
                pending = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)

    def _write(self, entries: list[tuple[str, dict[str, str]]], after: dict[str, int]) -> None:
        batch = analytics.to_rows(entries, after)
        for table, rows in batch.rows.items():
            self._insert(table, rows, batch, after)
        # After the inserts: a batch that fails is read again whole, and its rejects with it.
        self._dead_letter(batch.rejected)
        # Only now: an entry acknowledged is in ClickHouse (or a dead letter).
        self.redis.xack(store.ANALYTICS_EVENTS, analytics.CONSUMER_GROUP, *batch.ids)
        self.redis.xtrim(store.ANALYTICS_EVENTS, minid=batch.ids[-1], approximate=False)
        metrics.set_gauge("raylive_analytics_pending_events", max(0, self.redis.xlen(store.ANALYTICS_EVENTS) - 1))
        self.skipped += batch.skipped

    def _insert(self, table: str, rows: list[list[Any]], batch: analytics.Batch, after: dict[str, int]) -> None:
        """Insert rows in buffer order. ClickHouse refusing or unreachable: raise (the batch is
        retried whole; `after` skips what is already in). The client failing to serialise a row
        the checks let through: halve until that row is found, dead-letter it, insert the rest."""
        from clickhouse_connect.driver.exceptions import ClickHouseError, DataError

        columns = ["event_id", *next(cols for t, cols in analytics.TABLES.values() if t == table)]
        try:
            self.client.insert(table, rows, column_names=columns)
        except Exception as exc:
            if isinstance(exc, ClickHouseError) and not isinstance(exc, DataError):
                raise
            if len(rows) > 1:
                half = len(rows) // 2
                self._insert(table, rows[:half], batch, after)
                self._insert(table, rows[half:], batch, after)
                return
            entry_id, fields = batch.entries[rows[0][0]]
            self._dead_letter([analytics.Rejected(entry_id, fields, f"{type(exc).__name__}: {exc}"[:300])])
            return
        after[table] = max(after.get(table, 0), rows[-1][0])
        self.inserted += len(rows)

    def _dead_letter(self, rejected: list[analytics.Rejected]) -> None:
        if not rejected:
            return
        pipe = self.redis.pipeline(transaction=False)
        for r in rejected:
            fields: dict[Any, Any] = {"id": r.entry_id, "reason": r.reason, "k": r.fields.get("k", ""), "d": r.fields.get("d", "")}
            pipe.xadd(store.ANALYTICS_DEAD_LETTERS, fields, maxlen=analytics.DEAD_LETTERS_KEPT, approximate=True)
        pipe.execute()
        self.dead_lettered += len(rejected)
        log.warning("analytics writer: %d event(s) to %s, the first: %s", len(rejected), store.ANALYTICS_DEAD_LETTERS, rejected[0].reason)

    # -- queries ---------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        info = self.redis.xinfo_groups(store.ANALYTICS_EVENTS)
        group: dict[str, Any] = next((g for g in info if g["name"] == analytics.CONSUMER_GROUP), {})
        return {
            "pid": os.getpid(),
            "schema_version": self.version,
            "inserted": self.inserted,
            "skipped_replayed": self.skipped,
            "pending": int(group.get("pending", 0)),
            "lag": int(group.get("lag") or 0),
            "last_error": self.last_error,
            "failing_since": self.failing_since or None,
            "dead_letters": self.dead_letters(),
        }

    def dead_letters(self, recent: int = 10) -> dict[str, Any]:
        """Events kept out of ClickHouse, with why: how many are kept and the latest few."""
        latest: Any = self.redis.xrevrange(store.ANALYTICS_DEAD_LETTERS, count=recent)
        return {
            "written": self.dead_lettered,
            "kept": int(self.redis.xlen(store.ANALYTICS_DEAD_LETTERS)),
            "recent": [{"id": f["id"], "kind": f["k"], "reason": f["reason"], "event": f["d"]} for _, f in latest],
        }

    def stream_report(self, stream: str, start: float, end: float, step: int) -> dict[str, Any]:
        return analytics.stream_report(self.reader, stream, start, end, step)

    def top_streams(self, start: float, end: float, limit: int = 10) -> list[dict[str, Any]]:
        return analytics.top_streams(self.reader, start, end, limit)

    def sql(self, query: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read-only SQL for researchers (`analytics.read_only_query`): column names and rows."""
        result = analytics.read_only_query(self.sandbox, query, parameters)
        return {"columns": list(result.column_names), "rows": [list(r) for r in result.result_rows]}

    def drain(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Wait (bounded) until every buffered event is in ClickHouse; then stop reading."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            s = self.stats()
            if s["pending"] == 0 and s["lag"] == 0:
                break
            time.sleep(0.1)
        self._stop.set()
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()) + BLOCK_MS / 1000)
        return self.stats()


AnalyticsWriterActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=2, max_concurrency=4)(AnalyticsWriter)  # type: ignore[call-overload]
