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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from .store import ANALYTICS_EVENTS

# Events that cannot be rows (a value out of its column's range, a field of the wrong type): kept
# in store.ANALYTICS_DEAD_LETTERS with the reason instead of failing the batch they came in, newest 10,000.
DEAD_LETTERS_KEPT = 10_000
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
    r.xadd(ANALYTICS_EVENTS, {"k": kind, "d": json.dumps(fields, separators=(",", ":"))})


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
class Rejected:
    entry_id: str
    fields: dict[str, str]
    reason: str


@dataclass
class Batch:
    rows: dict[str, list[list[Any]]]  # table -> rows (event_id first), in buffer order
    ids: list[str]  # every entry id read, to acknowledge
    skipped: int = 0  # already inserted before a restart
    rejected: list[Rejected] = field(default_factory=list)  # to the dead letters
    entries: dict[int, tuple[str, dict[str, str]]] = field(default_factory=dict)  # event_id -> its entry


def _uint(bits: int) -> Any:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise ValueError(f"{value!r} is not an integer")
        if not 0 <= value < 1 << bits:
            raise ValueError(f"{value!r} is out of range for UInt{bits}")
        return int(value)

    return convert


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _float_map(value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{value!r} is not a map of names to numbers")
    return {k: _float(v) for k, v in value.items()}


def _timestamp(value: Any) -> datetime:
    seconds = _float(value)
    if not 0 <= seconds < 1 << 32:
        raise ValueError(f"{value!r} is not a Unix time")
    return datetime.fromtimestamp(seconds, UTC)


# Each column's ClickHouse type, as a check and conversion in Python: clickhouse-connect serialises
# a whole batch at once, and one value out of range (a negative UInt32) failed every row with it.
_CONVERT: dict[str, Any] = {"ts": _timestamp, "bytes": _uint(64), "keyframe_interval_ms": _uint(32), "late_frames": _uint(32)}
_CONVERT |= dict.fromkeys(("bitrate_kbps", "fps", "transcode_lag_s", "frame_ts"), _float) | {"realtime_factor": _float_map}


def to_rows(entries: Iterable[tuple[str, dict[str, str]]], after: dict[str, int]) -> Batch:
    """Redis Stream entries -> rows per table, leaving out those already inserted (`after`);
    an event that cannot be a row is rejected with the reason, the others are unaffected."""
    batch = Batch({}, [])
    for entry_id, fields in entries:
        batch.ids.append(entry_id)
        column = ""
        try:
            table, columns = TABLES[fields["k"]]
            data = json.loads(fields["d"])
            eid = event_id(entry_id)
            if eid <= after.get(table, 0):
                batch.skipped += 1
                continue
            row: list[Any] = [eid]
            for column in columns:
                row.append(_CONVERT.get(column, _string)(data.get(column, _DEFAULTS.get(column))))
            batch.rows.setdefault(table, []).append(row)
            batch.entries[eid] = (entry_id, fields)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            what = f"{column}: {exc}" if column else f"{type(exc).__name__}: {exc}"
            batch.rejected.append(Rejected(entry_id, dict(fields), what[:300]))
    return batch


# -- queries ----------------------------------------------------------------------------
_SPAN = "ts >= fromUnixTimestamp64Milli(toInt64({a:Float64} * 1000)) AND ts < fromUnixTimestamp64Milli(toInt64({b:Float64} * 1000))"
# Researchers' SQL runs with these limits (ClickHouse settings), so that one query cannot take the
# writer's memory or time; inserts use another connection and never wait for it.
QUERY_LIMITS: dict[str, Any] = {
    # 2, not 1: reads only, and settings may still change, which clickhouse-connect needs to restore
    # them after a SHOW/DESCRIBE (with 1 the connection stayed read-only for good). The statement's
    # own SETTINGS are refused by check_query_ast.
    "readonly": 2,
    "max_execution_time": 10,
    "timeout_overflow_mode": "throw",
    "max_memory_usage": 512 << 20,
    "max_result_rows": 100_000,
    "max_result_bytes": 64 << 20,
    "result_overflow_mode": "throw",
}


class QueryRefused(ValueError):
    """A researcher's SQL that raylive will not run, with the reason."""


# What a researcher's statement may be made of, decided on ClickHouse's own parse of it (EXPLAIN AST)
# rather than on its text: node kinds, functions and tables outside these lists are refused.
# (Embedded chdb is clickhouse-local, which never confines file() paths to user_files_path, so
# the parse is the guard there; see docs/deployment.md for a ClickHouse server's read-only user.)
_STATEMENTS = {"SelectWithUnionQuery", "ShowTables", "DescribeQuery"}
_NODES = _STATEMENTS | {
    "SelectQuery", "SelectIntersectExceptQuery", "ExpressionList", "Literal", "Identifier", "Function",
    "Asterisk", "QualifiedAsterisk", "ColumnsRegexpMatcher", "ColumnsListMatcher", "QualifiedColumnsRegexpMatcher",
    "QualifiedColumnsListMatcher", "ColumnsTransformerList", "ColumnsExceptTransformer", "ColumnsReplaceTransformer",
    "ColumnsReplaceTransformerReplacement", "TablesInSelectQuery", "TablesInSelectQueryElement", "TableExpression",
    "TableIdentifier", "TableJoin", "ArrayJoin", "Subquery", "WithElement", "OrderByElement", "WindowDefinition",
    "WindowListElement", "SampleRatio",
}  # fmt: skip
_FUNCTIONS = set(
    """count sum avg min max any anyLast argMin argMax uniq uniqExact uniqCombined uniqHLL12 median quantile quantiles
    quantileExact quantilesExact quantileTDigest quantileTiming groupArray groupUniqArray groupArraySorted topK
    stddevPop stddevSamp varPop varSamp corr covarPop covarSamp sumWithOverflow histogram simpleLinearRegression
    row_number rank dense_rank percent_rank cume_dist ntile first_value last_value nth_value lagInFrame leadInFrame
    plus minus multiply divide intDiv intDivOrZero modulo negate abs round roundDown floor ceil trunc sqrt cbrt exp
    log log2 log10 ln pow power greatest least sign
    equals notEquals less greater lessOrEquals greaterOrEquals and or not xor in notIn globalIn globalNotIn
    like notLike ilike notILike match if multiIf isNull isNotNull coalesce ifNull nullIf assumeNotNull toNullable
    now now64 today yesterday toDate toDate32 toDateTime toDateTime64 toStartOfInterval toStartOfSecond
    toStartOfMinute toStartOfFiveMinutes toStartOfTenMinutes toStartOfFifteenMinutes toStartOfHour toStartOfDay
    toStartOfWeek toStartOfMonth toMonday toYear toMonth toDayOfMonth toDayOfWeek toHour toMinute toSecond
    toUnixTimestamp toUnixTimestamp64Milli fromUnixTimestamp fromUnixTimestamp64Milli dateDiff date_diff dateAdd
    dateSub addSeconds addMinutes addHours addDays subtractSeconds subtractMinutes subtractHours subtractDays
    toIntervalSecond toIntervalMinute toIntervalHour toIntervalDay toIntervalWeek toIntervalMonth formatDateTime
    toYYYYMM toYYYYMMDD toTimeZone timeSlot
    CAST _CAST accurateCast toString toFixedString toInt8 toInt16 toInt32 toInt64 toUInt8 toUInt16 toUInt32 toUInt64 toFloat32
    toFloat64 toDecimal64 toInt64OrZero toFloat64OrZero toUInt32OrZero toTypeName reinterpretAsString
    length lengthUTF8 empty notEmpty lower upper lowerUTF8 upperUTF8 concat substring substringUTF8 position
    positionCaseInsensitive startsWith endsWith replaceAll replaceOne replaceRegexpAll replaceRegexpOne trim
    trimBoth trimLeft trimRight splitByChar splitByString extract extractAll format leftPad rightPad repeat
    reverse base64Encode hex unhex
    JSONHas JSONLength JSONType JSONExtract JSONExtractString JSONExtractInt JSONExtractUInt JSONExtractFloat
    JSONExtractBool JSONExtractRaw JSONExtractKeys JSONExtractKeysAndValues JSONExtractArrayRaw
    visitParamExtractString visitParamExtractFloat visitParamExtractInt
    array tuple arrayElement tupleElement has hasAll hasAny indexOf arrayJoin arrayMap arrayFilter arrayCount
    arraySum arrayAvg arrayMin arrayMax arraySort arrayReverseSort arrayDistinct arraySlice arrayConcat
    arrayEnumerate arrayStringConcat arrayZip arrayExists arrayAll range emptyArrayString lambda
    map mapKeys mapValues mapContains
    bar formatReadableSize formatReadableQuantity formatReadableTimeDelta getSetting
    """.split()
)
_AGGREGATE_SUFFIXES = ("If", "Array", "Distinct", "OrNull", "OrDefault", "State", "Merge", "ForEach")
_OTHER_DATABASES = ("system.", "information_schema.")


@dataclass
class _Node:
    kind: str
    name: str  # a function's or a table's name, else the rest of the line
    children: list[_Node]


def _parse_ast(lines: list[str]) -> _Node:
    """`EXPLAIN AST` output (one node a line, one space of indent per level) as a tree."""
    root = _Node("", "", [])
    stack: list[tuple[int, _Node]] = [(-1, root)]
    for line in lines:
        depth = len(line) - len(line.lstrip(" "))
        kind, _, rest = line.strip().partition(" ")
        name = re.sub(r"( \((alias [^)]*|children \d+)\))+$", "", rest)
        node = _Node(kind, name, [])
        while stack[-1][0] >= depth:
            stack.pop()
        stack[-1][1].children.append(node)
        stack.append((depth, node))
    if len(root.children) != 1:
        raise QueryRefused("one statement only")
    return root.children[0]


def _base_function(name: str) -> str:
    """`countIf`, `uniqExactArrayIf`... -> the function the combinators apply to."""
    while name not in _FUNCTIONS and (suffix := next((s for s in _AGGREGATE_SUFFIXES if name.endswith(s) and name != s), None)):
        name = name[: -len(suffix)]
    return name


def check_query_ast(lines: list[str], tables: set[str]) -> None:
    """Refuse (QueryRefused) a parsed statement that is not a read of raylive's own tables.

    Allowed: SELECT (with WITH, JOIN, UNION, subqueries, window functions), SHOW TABLES, DESCRIBE of
    a table; functions from an allowlist; tables by plain name (raylive's tables or the query's own
    CTEs, which is all an unqualified name can reach). Refused: table functions (file, url, s3...),
    other databases (system...), SETTINGS, INTO OUTFILE, FORMAT, and any node kind not listed.
    """
    statement = _parse_ast(lines)
    if statement.kind not in _STATEMENTS:
        raise QueryRefused(f"only SELECT, SHOW TABLES and DESCRIBE are allowed, not {statement.kind}")
    # clickhouse-connect appends its own `FORMAT Native`; anything else beside the statement's body
    # (INTO OUTFILE's path, the user's own FORMAT or SETTINGS) is refused.
    *body, last = statement.children or [_Node("", "", [])]
    if last.kind == "Identifier" and last.name == "Native":
        statement.children = body
    if statement.kind == "SelectWithUnionQuery" and len(statement.children) != 1:
        raise QueryRefused("INTO OUTFILE, FORMAT and SETTINGS are not allowed")

    def visit(node: _Node, parent: _Node) -> None:
        if node.kind not in _NODES:
            raise QueryRefused(f"{node.kind} is not allowed" if node.kind != "Set" else "SETTINGS are not allowed")
        if node.kind in _STATEMENTS and node is not statement and len(node.children) != 1:
            raise QueryRefused("INTO OUTFILE, FORMAT and SETTINGS are not allowed")
        if node.kind == "Function":
            if parent.kind == "TableExpression":
                raise QueryRefused(f"table function {node.name}() is not allowed; read raylive's tables ({', '.join(sorted(tables))})")
            if _base_function(node.name) not in _FUNCTIONS:
                raise QueryRefused(f"function {node.name}() is not allowed")
        elif node.kind == "TableIdentifier":
            name = node.name.removeprefix("default.")
            if "." in name:
                raise QueryRefused(f"table {node.name} is not allowed; read raylive's tables ({', '.join(sorted(tables))})")
        elif node.kind == "Identifier" and node.name.lower().startswith(_OTHER_DATABASES):
            raise QueryRefused(f"{node.name} is not allowed")
        for child in node.children:
            visit(child, node)

    for child in statement.children:
        visit(child, statement)


def read_only_query(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> Any:
    """Run a researcher's SQL: ClickHouse parses it, the parse is checked (`check_query_ast`),
    and what runs is the parser's own rendering of it (comments gone, one statement), with
    QUERY_LIMITS."""
    try:
        formatted = client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": sql}).result_rows[0][0]
        lines = [row[0] for row in client.query(f"EXPLAIN AST {formatted}", parameters=parameters).result_rows]
    except Exception as exc:  # noqa: BLE001 - a syntax error or a missing parameter: the parser's own words
        raise QueryRefused(_first_line(exc)) from None
    check_query_ast(lines, {table for table, _ in TABLES.values()})
    result = client.query(formatted, parameters=parameters, settings=QUERY_LIMITS)
    # ClickHouse checks max_result_rows between blocks, so one large block passes it.
    if len(result.result_rows) > QUERY_LIMITS["max_result_rows"]:
        raise QueryRefused(f"the result has more than {QUERY_LIMITS['max_result_rows']} rows; add a LIMIT or aggregate")
    return result


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:500]


def stream_report(client: Client, stream: str, start: float, end: float, step: int) -> dict[str, Any]:
    """Viewers, watch time, rendition mix and ingest health of one stream over [start, end)."""
    p = {"s": stream, "a": start, "b": end, "step": step, "hb": HEARTBEAT_S}
    where = f"stream = {{s:String}} AND {_SPAN}"
    # A session counts in every point from its first request to its last (what its watch time
    # spans), not only in those that hold one of its events: a heartbeat comes every 5 s, so with a
    # 1 s step the line dropped between them. Its events are within [start, end), so a session
    # yields at most MAX_POINTS rows.
    viewers = client.query(
        "SELECT t, count() FROM (SELECT arrayJoin(range(intDiv(toUInt32(min(ts)), {step:UInt32}) * {step:UInt32}, "
        "intDiv(toUInt32(max(ts)), {step:UInt32}) * {step:UInt32} + 1, {step:UInt32})) AS t "
        f"FROM viewer_events WHERE {where} GROUP BY sid) GROUP BY t ORDER BY t",
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
        f"sum(late_frames), max(transcode_lag_s), max(keyframe_interval_ms) FROM ingest_health WHERE {where} GROUP BY t ORDER BY t",
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
                "keyframe_interval_ms": int(kf),
            }
            for t, b, f, lf, lag, kf in ingest
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
