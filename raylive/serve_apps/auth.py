"""Who may call the control API: the admin token, or API tokens with scopes; WebSocket tickets.

Scopes: `admin` (everything: streams, keys, tokens), `read` (streams, cluster, metrics, analytics
reports, WebSocket push: what a dashboard or Prometheus needs), `analytics` (read, plus the SQL
endpoint). Tokens travel only in the `Authorization: Bearer` header. Browsers cannot set headers on
a WebSocket, so a client with a token first asks `POST /api/v1/ws-tickets` for a ticket, used once
within 30 s as `?ticket=`: what lands in an access log is spent.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket
from pydantic import BaseModel, ConfigDict, Field

from .. import store
from .context import STATE, call

ADMIN, READ, ANALYTICS = "admin", "read", "analytics"
IMPLIED = {ADMIN: {ADMIN, READ, ANALYTICS}, ANALYTICS: {ANALYTICS, READ}, READ: {READ}}
TICKET_TTL_S = 30


@dataclass(frozen=True)
class Caller:
    name: str  # "admin" or the API token's name
    scopes: frozenset[str]


async def caller_of(token: str) -> Caller | None:
    if not token:
        return None
    digest = store.secret_digest(token)
    if hmac.compare_digest(digest, STATE.admin_digest):
        return Caller(ADMIN, frozenset(IMPLIED[ADMIN]))
    raw = await STATE.redis.hget(store.TOKENS, digest)  # looked up by digest: nothing to compare
    if raw is None:
        return None
    record = json.loads(raw)
    return Caller(str(record["name"]), frozenset(s for scope in record["scopes"] for s in IMPLIED.get(scope, ())))


def require(scope: str) -> Any:
    async def check(request: Request) -> Caller:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        caller = await caller_of(token.strip()) if scheme.lower() == "bearer" else None
        if caller is None:
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        if scope not in caller.scopes:
            raise HTTPException(403, f"this token lacks the '{scope}' scope (it has: {', '.join(sorted(caller.scopes))})")
        return caller

    return Depends(check)


Admin = Annotated[Caller, require(ADMIN)]
Reader = Annotated[Caller, require(READ)]
Analyst = Annotated[Caller, require(ANALYTICS)]


async def websocket_caller(ws: WebSocket, scope: str = READ) -> Caller | None:
    """A spent-once ticket (`?ticket=`), or a Bearer header (clients that can set one)."""
    ticket = ws.query_params.get("ticket")
    if ticket:
        raw = await STATE.redis.getdel(store.ws_ticket_key(store.secret_digest(ticket)))
        record = json.loads(raw) if raw else None
        caller = Caller(str(record["name"]), frozenset(record["scopes"])) if record else None
    else:
        scheme, _, token = ws.headers.get("authorization", "").partition(" ")
        caller = await caller_of(token.strip()) if scheme.lower() == "bearer" else None
    return caller if caller is not None and scope in caller.scopes else None


router = APIRouter()


class Ticket(BaseModel):
    ticket: str = Field(description="pass as ?ticket= on a WebSocket URL, once, within expires_in seconds")
    expires_in: int


@router.post("/api/v1/ws-tickets", response_model=Ticket, status_code=201)
async def ws_ticket(caller: Reader) -> Ticket:
    """A one-time ticket for a WebSocket (browsers cannot send the Authorization header there)."""
    ticket = secrets.token_urlsafe(24)
    record = json.dumps({"name": caller.name, "scopes": sorted(caller.scopes)})
    await STATE.redis.set(store.ws_ticket_key(store.secret_digest(ticket)), record, ex=TICKET_TTL_S)
    return Ticket(ticket=ticket, expires_in=TICKET_TTL_S)


class Me(BaseModel):
    name: str = Field(description='"admin" for the admin token, else the API token\'s name')
    scopes: list[str]


@router.get("/api/v1/me", response_model=Me)
async def me(caller: Reader) -> Me:
    """Who this token is and what it may do (the console shows a read-only view without `admin`)."""
    return Me(name=caller.name, scopes=sorted(caller.scopes))


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["grafana"])
    scopes: list[str] = Field(min_length=1, examples=[[READ]], description=f"of {ADMIN}, {READ}, {ANALYTICS}")


class TokenCreated(BaseModel):
    name: str
    scopes: list[str]
    token: str = Field(description="The secret token. Shown once; only its hash is stored.")


class TokenInfo(BaseModel):
    name: str
    scopes: list[str]
    created_at: float


@router.post("/api/v1/tokens", response_model=TokenCreated, status_code=201)
async def create_token(body: TokenCreate, _: Admin) -> TokenCreated:
    unknown = sorted(set(body.scopes) - set(IMPLIED))
    if unknown:
        raise HTTPException(422, f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(IMPLIED)}")
    try:
        token = await call(store.create_token, body.name, body.scopes)
    except store.TokenExists:
        raise HTTPException(409, f"a token named {body.name!r} exists; delete it first") from None
    return TokenCreated(name=body.name, scopes=sorted(set(body.scopes)), token=token)


@router.get("/api/v1/tokens", response_model=list[TokenInfo])
async def list_tokens(_: Admin) -> list[dict[str, Any]]:
    return await call(store.list_tokens)  # type: ignore[no-any-return]


@router.delete("/api/v1/tokens/{name}", status_code=204)
async def delete_token(name: str, _: Admin) -> None:
    if not await call(store.delete_token, name):
        raise HTTPException(404, f"no token named {name!r}")
