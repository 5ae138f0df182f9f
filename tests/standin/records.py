"""What the stand-in keeps: Discord's numbers and errors, the logs, gateway sessions, interactions."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from aiohttp import web

try:  # discord.py asks for zstd-stream when it can decompress it
    import zstandard as _zstandard  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    _zstandard = None

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
RESPONSE_DEADLINE_S = 3.0
TOKEN_LIFETIME_S = 15 * 60

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE = 0, 1, 2, 3, 4
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION = 6, 7, 8, 9
OP_HELLO, OP_HEARTBEAT_ACK = 10, 11

PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, message content
ADMINISTRATOR = 1 << 3
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31)
EPHEMERAL, LOADING = 1 << 6, 1 << 7

# Interaction and callback types (Discord's numbers).
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE = 1, 4, 5
DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE, AUTOCOMPLETE_RESULT, MODAL = 6, 7, 8, 9

_counter = itertools.count()


def snowflake(at_ms: int | None = None) -> int:
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    return ((ms - DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def shard_of(guild_id: int, shard_count: int) -> int:
    """Discord's rule for which shard receives a guild's events."""
    return (int(guild_id) >> 22) % shard_count


class DiscordError(Exception):
    """An error answer in Discord's shape: ``{"message": ..., "code": ...[, "errors": ...]}``."""

    def __init__(self, status: int, code: int, message: str, errors: dict | None = None):
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def invalid_form(errors: dict) -> DiscordError:
    return DiscordError(400, 50035, "Invalid Form Body", errors)


UNKNOWN_INTERACTION = (404, 10062, "Unknown interaction")
ALREADY_ACKNOWLEDGED = (400, 40060, "Interaction has already been acknowledged.")
UNKNOWN_WEBHOOK = (404, 10015, "Unknown Webhook")
UNKNOWN_MESSAGE = (404, 10008, "Unknown Message")
MISSING_ACCESS = (403, 50001, "Missing Access")
UNKNOWN_APPLICATION = (404, 10002, "Unknown Application")
INVALID_WEBHOOK_TOKEN = (401, 50027, "Invalid Webhook Token")
EMPTY_MESSAGE = (400, 50006, "Cannot send an empty message")
UNAUTHORIZED = (401, 0, "401: Unauthorized")


# --------------------------------------------------------------------------- records


@dataclass
class Call:
    """One REST call as the stand-in received it."""

    method: str
    path: str  # without the /api/v10 prefix
    route: str  # "METHOD /template/{param}", the matched route
    query: dict[str, str]
    body: Any
    status: int = 0
    answer: Any = None
    at: float = field(default_factory=time.monotonic)

    @property
    def code(self) -> int | None:
        return self.answer.get("code") if isinstance(self.answer, dict) else None


@dataclass
class Frame:
    """One gateway frame: received from a client (``StandIn.frames``) or sent (``StandIn.sent``)."""

    op: int
    shard: tuple[int, int] | None
    d: Any
    connection: int
    at: float = field(default_factory=time.monotonic)
    t: str | None = None  # the event name of a dispatch (frames the stand-in sent)


@dataclass
class Fault:
    route: str  # "METHOD /template", placeholders' names do not matter
    times: int
    status: int
    retry_after: float = 0.0
    is_global: bool = False
    hits: int = 0


def normal_route(route: str) -> str:
    method, _, path = route.strip().partition(" ")
    path = _PLACEHOLDER.sub("{}", path.removeprefix(API_PREFIX))
    return f"{method.upper()} {path}"


_PLACEHOLDER = re.compile(r"\{[^}]*\}")


class Connection:
    """One gateway websocket, with its own compression stream."""

    ids = itertools.count(1)

    def __init__(self, ws: web.WebSocketResponse, path: str, query: dict[str, str],
                 on_send: Callable[["Connection", dict[str, Any]], None]):
        self.id = next(self.ids)
        self.on_send = on_send
        self.ws, self.path, self.query = ws, path, query
        self.compress = query.get("compress")
        self.session: Session | None = None
        self.identified = False
        self._zlib = zlib.compressobj() if self.compress == "zlib-stream" else None
        # One compression stream per connection, flushed after each message (what discord.py reads).
        self._zstd = (
            _zstandard.ZstdCompressor().compressobj() if (self.compress == "zstd-stream" and _zstandard) else None
        )

    @property
    def open(self) -> bool:
        return not self.ws.closed

    async def send(self, payload: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        self.on_send(self, payload)
        data = json.dumps(payload, separators=(",", ":"))
        try:
            if self._zlib is not None:
                raw = self._zlib.compress(data.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(raw)
            elif self._zstd is not None:
                raw = self._zstd.compress(data.encode()) + self._zstd.flush(_zstandard.COMPRESSOBJ_FLUSH_BLOCK)
                await self.ws.send_bytes(raw)
            else:
                await self.ws.send_str(data)
        except (ConnectionError, RuntimeError):
            pass

    async def close(self, code: int, message: str = "") -> None:
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close(code=code, message=message.encode())


@dataclass
class Session:
    """A gateway session: what survives a reconnect and is replayed on RESUME."""

    session_id: str
    shard: tuple[int, int]
    sharded: bool
    token: str
    intents: int | None
    connection: Connection | None
    seq: int = 0
    events: list[tuple[int, str, Any]] = field(default_factory=list)
    resumable: bool = True
    resumes: int = 0
    ready_sent: bool = False

    def owns(self, guild_id: int) -> bool:
        return shard_of(guild_id, self.shard[1]) == self.shard[0]


class InteractionHandle:
    """One interaction sent to the bot: what the bot answered, edited and followed up with.

    ``events`` holds ``(kind, body)`` in order, kinds: ``response``, ``edit_original``,
    ``delete_original``, ``followup``, ``edit_followup``, ``delete_followup``. ``refused`` holds
    ``(route, DiscordError)`` for what the stand-in refused for this interaction.
    """

    def __init__(self, payload: dict[str, Any], shard: tuple[int, int]):
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.guild_id = int(payload["guild_id"]) if payload.get("guild_id") else None
        self.shard = shard
        self.created = time.monotonic()
        self.response_type: int | None = None
        self.original: dict[str, Any] | None = None
        self.followups: dict[int, dict[str, Any]] = {}
        self.events: list[tuple[str, Any]] = []
        self.refused: list[tuple[str, DiscordError]] = []
        self._changed = asyncio.Condition()

    @property
    def responded(self) -> bool:
        return self.response_type is not None

    async def record(self, kind: str, body: Any) -> None:
        async with self._changed:
            self.events.append((kind, body))
            self._changed.notify_all()

    async def refuse(self, route: str, exc: DiscordError) -> None:
        async with self._changed:
            self.refused.append((route, exc))
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[["InteractionHandle"], Any], timeout: float = 10.0) -> Any:
        async with self._changed:
            return await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)

    async def wait(self, kind: str = "response", count: int = 1, timeout: float = 10.0) -> Any:
        """The body of the ``count``-th event of ``kind`` (waits for it)."""

        def found(h: InteractionHandle):
            bodies = [b for k, b in h.events if k == kind]
            return len(bodies) >= count

        await self.wait_until(found, timeout)
        return [b for k, b in self.events if k == kind][count - 1]

    async def response(self, timeout: float = 10.0) -> dict[str, Any]:
        """The initial response's body: ``{"type": ..., "data": {...}}``."""
        return await self.wait("response", timeout=timeout)

    async def refusal(self, count: int = 1, timeout: float = 10.0) -> DiscordError:
        await self.wait_until(lambda h: len(h.refused) >= count, timeout)
        return self.refused[count - 1][1]

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def __repr__(self) -> str:
        return f"<InteractionHandle id={self.id} events={self.kinds()} refused={len(self.refused)}>"
