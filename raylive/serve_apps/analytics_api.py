"""The analytics endpoints of the control API: reports, top streams, read-only SQL, the pipeline."""

from __future__ import annotations

import time
from typing import Annotated, Any

import ray
from fastapi import APIRouter, HTTPException, Query

from ..names import NAMESPACE, WRITER_NAME
from .auth import Analyst, Reader
from .context import stream
from .models import ERRORS, ErrorBody, SqlQuery, SqlResult, StreamAnalytics, TopStream

router = APIRouter()


PERIOD_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_POINTS = 10_000


async def _analytics(method: str, *args: Any) -> Any:
    try:
        writer = ray.get_actor(WRITER_NAME, namespace=NAMESPACE)
    except ValueError:
        raise HTTPException(503, "analytics are not running") from None
    return await getattr(writer, method).remote(*args)


@router.get("/api/v1/streams/{name}/analytics", response_model=StreamAnalytics, responses=ERRORS)
async def stream_analytics(
    name: str,
    _: Reader,
    from_: Annotated[float | None, Query(alias="from", description="unix seconds; default: an hour before `to`")] = None,
    to: Annotated[float | None, Query(description="unix seconds; default: now")] = None,
    step: Annotated[int, Query(ge=1, le=86400, description="seconds per timeline point")] = 60,
) -> dict[str, Any]:
    await stream(name)  # 404 for an unknown stream
    end = time.time() if to is None else to
    start = end - 3600 if from_ is None else from_
    if not 0 <= start < end or (end - start) / step > MAX_POINTS:
        raise HTTPException(422, f"need 0 <= from < to and at most {MAX_POINTS} points of `step` seconds")
    return await _analytics("stream_report", name, start, end, step)  # type: ignore[no-any-return]


@router.get("/api/v1/analytics/top", response_model=list[TopStream], responses=ERRORS)
async def top_streams(
    _: Reader,
    period: Annotated[str, Query(pattern=r"^[1-9][0-9]{0,5}[smhd]$", description="e.g. 15m, 24h, 7d")] = "24h",
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[dict[str, Any]]:
    end = time.time()
    return await _analytics("top_streams", end - int(period[:-1]) * PERIOD_S[period[-1]], end, limit)  # type: ignore[no-any-return]


@router.post("/api/v1/analytics/sql", response_model=SqlResult, responses={**ERRORS, 422: {"model": ErrorBody}})
async def analytics_sql(body: SqlQuery, _: Analyst) -> dict[str, Any]:
    """Read-only SQL over the analytics tables (viewer_events, ingest_health, stream_sessions)."""
    try:
        return await _analytics("sql", body.sql, body.parameters)  # type: ignore[no-any-return]
    except ray.exceptions.RayTaskError as exc:  # refused (not read-only) or failed in ClickHouse
        raise HTTPException(422, f"query refused: {str(exc.cause).strip().splitlines()[0][:500]}") from None


@router.get("/api/v1/analytics/status", responses=ERRORS)
async def analytics_status(_: Reader) -> dict[str, Any]:
    """The analytics pipeline: events buffered in Redis and not yet in ClickHouse, inserts, errors."""
    return await _analytics("stats")  # type: ignore[no-any-return]
