"""A stand-in for Discord: its gateway (v10, JSON, zlib-stream) and the REST routes a bot uses.

The real discord.py client talks to it over real sockets on 127.0.0.1; it is pointed here by
base URLs only (see :meth:`StandIn.point_discord_py` and ``tests/standin/__init__.py``). What
Discord refuses, the stand-in refuses with Discord's status, JSON error body and code; faults
(429s, 5xx, gateway closes, RECONNECT) are injected by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
import uuid
import zlib
from typing import Any, Callable, Iterable

from aiohttp import WSMsgType, web

from . import schema
from .records import (
    ADMINISTRATOR,
    ALREADY_ACKNOWLEDGED,
    API_PREFIX,
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    Call,
    Connection,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    DISCORD_EPOCH_MS,
    DiscordError,
    EMPTY_MESSAGE,
    EPHEMERAL,
    Fault,
    Frame,
    INVALID_WEBHOOK_TOKEN,
    InteractionHandle,
    LOADING,
    MEMBER_PERMISSIONS,
    MESSAGE_COMPONENT,
    MISSING_ACCESS,
    MODAL,
    MODAL_SUBMIT,
    OP_DISPATCH,
    OP_HEARTBEAT,
    OP_HEARTBEAT_ACK,
    OP_HELLO,
    OP_IDENTIFY,
    OP_INVALID_SESSION,
    OP_PRESENCE,
    OP_RECONNECT,
    OP_REQUEST_MEMBERS,
    OP_RESUME,
    OP_VOICE,
    PRIVILEGED_INTENTS,
    RESPONSE_DEADLINE_S,
    Session,
    TOKEN_LIFETIME_S,
    UNAUTHORIZED,
    UNKNOWN_APPLICATION,
    UNKNOWN_INTERACTION,
    UNKNOWN_MESSAGE,
    UNKNOWN_WEBHOOK,
    UPDATE_MESSAGE,
    invalid_form,
    normal_route,
    now_iso,
    shard_of,
    snowflake,
)

if hasattr(web, "RequestKey"):  # aiohttp >= 3.12
    BODY: Any = web.RequestKey("standin.body", object)
    ROUTE: Any = web.RequestKey("standin.route", str)
else:  # pragma: no cover
    BODY, ROUTE = "standin.body", "standin.route"

# --------------------------------------------------------------------------- the stand-in


class StandIn:
    """Discord, for tests: ``async with StandIn(guilds=4) as discord: ...``.

    ``port=0`` picks a free port. Attributes a test reads: ``api_base`` (what
    ``discord.http.Route.BASE`` is set to), ``gateway_url`` (what GET /gateway/bot answers and what
    ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` is set to), ``token``, ``application_id``,
    ``guilds``, ``calls`` (REST log), ``frames`` (gateway log), ``commands``.
    """

    def __init__(
        self,
        *,
        guilds: int | Iterable[dict[str, Any]] = 2,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        shards: int = 1,
        team: list[tuple[int, str]] | None = None,
        owner_id: int | None = None,
        heartbeat_interval_ms: int = 41250,
        response_deadline_s: float = RESPONSE_DEADLINE_S,
        privileged_intents: int = PRIVILEGED_INTENTS,
        identify_interval_s: float | None = None,
        max_concurrency: int = 1,
    ):
        self.host, self.port = host, port
        self.token = token or f"standin.{secrets.token_urlsafe(24)}"
        self.recommended_shards = shards
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.response_deadline_s = response_deadline_s
        self.privileged_intents = privileged_intents
        # Discord lets max_concurrency shards (by shard_id % max_concurrency) identify per 5 s and
        # answers a faster IDENTIFY with INVALID_SESSION; None leaves it unenforced (fast tests).
        self.identify_interval_s = identify_interval_s
        self.max_concurrency = max_concurrency
        self.application_id = snowflake()
        self.bot_user = self.make_user(self.application_id, "playbill-standin", bot=True)
        self.owner = self.make_user(owner_id or snowflake(), "owner")
        self.team = [(self.make_user(uid, f"member{uid % 1000}"), role) for uid, role in (team or [])]
        self.guilds: dict[int, dict[str, Any]] = {}
        if isinstance(guilds, int):
            base = int(time.time() * 1000) - 10_000_000
            for index in range(guilds):
                self.add_guild(id=((base + index - DISCORD_EPOCH_MS) << 22) | 1, name=f"Guild {index}")
        else:
            for spec in guilds:
                self.add_guild(**spec)
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # None: global
        self._command_ids: dict[tuple[int | None, int, str], int] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}  # attachment id -> the uploaded bytes
        self.posted: list[dict[str, Any]] = []  # messages the bot posted to channels
        self.interactions: dict[int, InteractionHandle] = {}
        self.sessions: dict[str, Session] = {}
        self.connections: list[Connection] = []
        self.calls: list[Call] = []
        self.frames: list[Frame] = []
        self.sent: list[Frame] = []
        self._identified_at: dict[int, float] = {}  # rate-limit key -> last IDENTIFY
        self.faults: list[Fault] = []
        self.identifies = 0
        self.identify_refusals: list[tuple[int, int]] = []  # (shard_id, shard_count) of each IDENTIFY refused
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> "StandIn":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the free port the OS picked for port=0

    async def stop(self) -> None:
        for connection in list(self.connections):
            await connection.close(1001, "stand-in stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/resume"

    @contextlib.contextmanager
    def point_discord_py(self):
        """Point the imported discord.py at this stand-in (the two base URLs), and restore them."""
        import discord.gateway
        import discord.http
        import yarl

        old_base = discord.http.Route.BASE
        old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield self
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    def environment(self) -> dict[str, str]:
        """What a separate bot process needs to reach this stand-in (names proposed, see status)."""
        return {
            "PLAYBILL_DISCORD_TOKEN": self.token,
            "PLAYBILL_DISCORD_API_BASE": self.api_base,
            "PLAYBILL_DISCORD_GATEWAY_URL": self.gateway_url,
        }

    # ------------------------------------------------------------------ world

    @staticmethod
    def make_user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": str(user_id), "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot, "system": False, "public_flags": 0, "flags": 0,
            "mfa_enabled": True, "verified": True, "banner": None, "accent_color": None,
        }

    def add_guild(self, *, id: int | None = None, name: str = "Guild", owner_id: int | None = None) -> dict[str, Any]:
        guild_id = int(id) if id is not None else snowflake()
        channel_id = guild_id + 1
        guild = {
            "id": str(guild_id), "name": name, "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": str(owner_id or self.owner["id"]), "afk_channel_id": None, "afk_timeout": 300,
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "roles": [{
                "id": str(guild_id), "name": "@everyone", "color": 0, "hoist": False, "position": 0,
                "permissions": str(MEMBER_PERMISSIONS), "managed": False, "mentionable": False, "flags": 0,
            }],
            "emojis": [], "stickers": [], "features": [], "mfa_level": 0, "application_id": None,
            "system_channel_id": str(channel_id), "system_channel_flags": 0, "rules_channel_id": None,
            "vanity_url_code": None, "description": None, "banner": None, "premium_tier": 0,
            "premium_subscription_count": 0, "preferred_locale": "en-US", "nsfw_level": 0,
            "premium_progress_bar_enabled": False, "joined_at": now_iso(), "large": False,
            "unavailable": False, "member_count": 2, "voice_states": [], "presences": [], "threads": [],
            "stage_instances": [], "guild_scheduled_events": [],
            "channels": [{
                "id": str(channel_id), "type": 0, "name": "general", "position": 0, "topic": None,
                "nsfw": False, "permission_overwrites": [], "parent_id": None, "rate_limit_per_user": 0,
                "last_message_id": None,
            }],
            "members": [self.make_member(self.bot_user, guild_id)],
        }
        self.guilds[guild_id] = guild
        return guild

    def make_member(self, user: dict[str, Any], guild_id: int, permissions: int | None = None) -> dict[str, Any]:
        member = {
            "user": user, "nick": None, "avatar": None, "roles": [], "joined_at": now_iso(),
            "premium_since": None, "deaf": False, "mute": False, "flags": 0, "pending": False,
        }
        if permissions is not None:
            member["permissions"] = str(permissions)
        return member

    def channel_of(self, guild_id: int) -> dict[str, Any]:
        return self.guilds[int(guild_id)]["channels"][0]

    def guilds_of(self, shard_id: int, shard_count: int) -> list[int]:
        return [gid for gid in self.guilds if shard_of(gid, shard_count) == shard_id]

    # ------------------------------------------------------------------ waiting

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        async with self._changed:
            return await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    def session_for(self, shard_id: int = 0, shard_count: int | None = None) -> Session | None:
        """The newest live session of a shard."""
        for session in reversed(list(self.sessions.values())):
            if session.shard[0] == shard_id and (shard_count is None or session.shard[1] == shard_count):
                if session.resumable:
                    return session
        return None

    def session_owning(self, guild_id: int) -> Session:
        for session in reversed(list(self.sessions.values())):
            if session.resumable and session.owns(guild_id):
                return session
        raise LookupError(f"no gateway session owns guild {guild_id}")

    async def wait_ready(self, shard_id: int = 0, timeout: float = 10.0) -> Session:
        """Wait for a live session of this shard whose READY and GUILD_CREATEs went out."""
        def ready():
            s = self.session_for(shard_id)
            return s if s is not None and s.connection is not None and s.ready_sent else None
        return await self.wait_until(ready, timeout)

    def frames_of(self, op: int, shard: int | None = None) -> list[Frame]:
        return [f for f in self.frames if f.op == op and (shard is None or (f.shard and f.shard[0] == shard))]

    def calls_to(self, route: str) -> list[Call]:
        """REST calls to a route, given as "METHOD /template" (placeholder names do not matter)."""
        wanted = normal_route(route)
        return [c for c in self.calls if normal_route(c.route) == wanted]

    @property
    def unserved(self) -> list[Call]:
        """Calls to routes the stand-in does not serve (answered 404 or 405): what to add here."""
        return [c for c in self.calls if UNSERVED in c.route]

    # ------------------------------------------------------------------ faults

    def rate_limit(self, route: str, times: int = 1, retry_after: float = 0.25, is_global: bool = False) -> Fault:
        """The next ``times`` calls of ``route`` get Discord's 429."""
        fault = Fault(normal_route(route), times, 429, retry_after, is_global)
        self.faults.append(fault)
        return fault

    def fail(self, route: str, times: int = 1, status: int = 500) -> Fault:
        """The next ``times`` calls of ``route`` get a server error."""
        fault = Fault(normal_route(route), times, status)
        self.faults.append(fault)
        return fault

    def _take_fault(self, route: str) -> Fault | None:
        wanted = normal_route(route)
        for fault in self.faults:
            if fault.route == wanted and fault.hits < fault.times:
                fault.hits += 1
                return fault
        return None

    async def reconnect(self, shard_id: int = 0, *, resumable: bool = True) -> Session:
        """Send RECONNECT (op 7) to a shard. Dispatches until it resumes are held and replayed.

        ``resumable=False`` forgets the session first, so the client's RESUME gets INVALID_SESSION.
        """
        session = self.session_for(shard_id)
        if session is None or session.connection is None:
            raise LookupError(f"shard {shard_id} is not connected")
        connection, session.connection = session.connection, None
        session.resumable = resumable
        await connection.send({"op": OP_RECONNECT, "d": None, "s": None, "t": None})
        return session

    async def close_gateway(self, shard_id: int = 0, code: int = 4000, message: str = "") -> Session:
        """Close a shard's websocket with a close code (4000: reconnect and resume; 4004: fatal)."""
        session = self.session_for(shard_id)
        if session is None or session.connection is None:
            raise LookupError(f"shard {shard_id} is not connected")
        connection, session.connection = session.connection, None
        await connection.close(code, message)
        return session

    async def invalidate_session(self, shard_id: int = 0, resumable: bool = False) -> Session:
        session = self.session_for(shard_id)
        if session is None or session.connection is None:
            raise LookupError(f"shard {shard_id} is not connected")
        connection = session.connection
        if not resumable:
            session.resumable, session.connection = False, None
        await connection.send({"op": OP_INVALID_SESSION, "d": resumable, "s": None, "t": None})
        return session

    # ------------------------------------------------------------------ gateway

    async def dispatch(self, session: Session, event: str, data: Any) -> int:
        """Send a dispatch on a session (held for replay while it is disconnected)."""
        session.seq += 1
        session.events.append((session.seq, event, data))
        if session.connection is not None and session.connection.open:
            await session.connection.send({"op": OP_DISPATCH, "d": data, "s": session.seq, "t": event})
        await self._notify()
        return session.seq

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        connection = Connection(ws, request.path, dict(request.query), self._sent)
        self.connections.append(connection)
        await connection.send({
            "op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["standin"]},
            "s": None, "t": None,
        })
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await connection.close(4002, "Error while decoding payload.")
                    break
                await self._on_frame(connection, payload)
        finally:
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
            await self._notify()
        return ws

    def _sent(self, connection: Connection, payload: dict[str, Any]) -> None:
        shard = connection.session.shard if connection.session else None
        self.sent.append(Frame(payload["op"], shard, payload.get("d"), connection.id, t=payload.get("t")))

    async def _on_frame(self, connection: Connection, payload: dict[str, Any]) -> None:
        op, d = payload.get("op"), payload.get("d")
        shard = connection.session.shard if connection.session else None
        if op == OP_IDENTIFY and isinstance(d, dict):
            shard = tuple(d["shard"]) if d.get("shard") else (0, 1)
        self.frames.append(Frame(op, shard, d, connection.id))
        if op == OP_HEARTBEAT:
            await connection.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY:
            await self._identify(connection, d)
        elif op == OP_RESUME:
            await self._resume(connection, d)
        elif op == OP_REQUEST_MEMBERS:
            await self._request_members(connection, d)
        elif op in (OP_PRESENCE, OP_VOICE):
            pass
        else:
            await connection.close(4001, "Unknown opcode.")
        await self._notify()

    async def _identify(self, connection: Connection, d: dict[str, Any]) -> None:
        if connection.identified:
            return await connection.close(4005, "Already authenticated.")
        if d.get("token") != self.token:
            return await connection.close(4004, "Authentication failed.")
        shard = d.get("shard")
        if shard is not None:
            if (not isinstance(shard, list) or len(shard) != 2 or not 0 <= shard[0] < shard[1]):
                return await connection.close(4010, "Invalid shard.")
        intents = d.get("intents")
        if intents is None:
            return await connection.close(4013, "Invalid intent(s).")
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            return await connection.close(4014, "Disallowed intent(s).")
        shard_id, shard_count = shard if shard is not None else (0, 1)
        key, now = shard_id % self.max_concurrency, time.monotonic()
        if self.identify_interval_s is not None:
            last = self._identified_at.get(key)
            if last is not None and now - last < self.identify_interval_s:
                self.identify_refusals.append((shard_id, shard_count))
                await connection.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
                return
        self._identified_at[key] = now
        connection.identified = True
        self.identifies += 1
        session = Session(
            uuid.uuid4().hex, (shard_id, shard_count), shard is not None, d["token"], intents, connection
        )
        connection.session = session
        self.sessions[session.session_id] = session
        owned = self.guilds_of(shard_id, shard_count)
        ready = {
            "v": 10, "user": self.bot_user, "guilds": [{"id": str(g), "unavailable": True} for g in owned],
            "session_id": session.session_id, "resume_gateway_url": self.resume_gateway_url,
            "session_type": "normal", "user_settings": {}, "relationships": [], "private_channels": [],
            "presences": [], "guild_join_requests": [], "geo_ordered_rtc_regions": [], "auth": {},
            "application": {"id": str(self.application_id), "flags": 0},
            "_trace": ["standin"],
        }
        if shard is not None:
            ready["shard"] = [shard_id, shard_count]
        await self.dispatch(session, "READY", ready)
        for guild_id in owned:
            await self.dispatch(session, "GUILD_CREATE", self.guilds[guild_id])
        session.ready_sent = True

    async def _resume(self, connection: Connection, d: dict[str, Any]) -> None:
        session = self.sessions.get((d or {}).get("session_id", ""))
        if session is None or not session.resumable or d.get("token") != session.token:
            await connection.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.connection is not None and session.connection is not connection:
            await session.connection.close(4009, "Session timed out.")
        connection.identified = True
        connection.session = session
        session.connection = connection
        session.resumes += 1
        last = d.get("seq") or 0
        for seq, event, data in session.events:
            if seq > last:
                await connection.send({"op": OP_DISPATCH, "d": data, "s": seq, "t": event})
        await self.dispatch(session, "RESUMED", {"_trace": ["standin"]})

    async def _request_members(self, connection: Connection, d: dict[str, Any]) -> None:
        if connection.session is None:
            return await connection.close(4003, "Not authenticated.")
        guild = self.guilds.get(int(d.get("guild_id", 0)))
        members = guild["members"] if guild else []
        await self.dispatch(connection.session, "GUILD_MEMBERS_CHUNK", {
            "guild_id": d.get("guild_id"), "members": members, "chunk_index": 0, "chunk_count": 1,
            "not_found": [], "nonce": d.get("nonce"),
        })

    # ------------------------------------------------------------------ interactions (test side)

    def command(self, name: str, guild_id: int | None = None, kind: int = schema.CHAT_INPUT) -> dict[str, Any]:
        """A synced command (guild commands first, then global), as Discord stored it."""
        for scope in ((int(guild_id),) if guild_id else ()) + (None,):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == kind:
                    return command
        raise LookupError(f"command {name!r} was never synced (Discord only sends known commands)")

    def command_data(self, guild_id: int, path: str, **values: Any) -> dict[str, Any]:
        """APPLICATION_COMMAND data for ``/path`` (e.g. ``"admin retrain"``) with option values."""
        root, *subs = path.split()
        command = self.command(root, guild_id)
        data: dict[str, Any] = {"id": command["id"], "name": root, "type": command.get("type", 1)}
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        holder, schema_options = data, command.get("options") or []
        for sub in subs:
            spec = next((o for o in schema_options if o["name"] == sub), None)
            if spec is None:
                raise LookupError(f"{path!r}: no sub-command {sub!r}")
            node = {"name": sub, "type": spec["type"], "options": []}
            holder.setdefault("options", []).append(node)
            holder, schema_options = node, spec.get("options") or []
        for key, value in values.items():
            spec = next((o for o in schema_options if o["name"] == key), None)
            if spec is None:
                raise LookupError(f"{path!r} has no option {key!r}")
            holder.setdefault("options", []).append({"name": key, "type": spec["type"], "value": value})
        return data

    async def slash(self, guild_id: int, path: str, *, user: dict[str, Any] | None = None,
                    permissions: int = MEMBER_PERMISSIONS, overridden: bool = False,
                    **values: Any) -> InteractionHandle:
        """A member runs ``/path`` with options in a guild; returns the handle.

        Like Discord, a member without the command's ``default_member_permissions`` cannot run it
        (PermissionError), unless the guild overrode the command's permissions (``overridden``).
        """
        required = self.command(path.split()[0], guild_id).get("default_member_permissions")
        if required is not None and not overridden and not permissions & ADMINISTRATOR:
            need = int(required)
            if need == 0 or permissions & need != need:
                raise PermissionError(f"Discord does not offer /{path} to this member (needs permissions {need})")
        return await self.send_interaction(
            guild_id, self.command_data(guild_id, path, **values), user=user, permissions=permissions
        )

    async def autocomplete(self, guild_id: int, path: str, focused: str, *, user: dict[str, Any] | None = None,
                           **values: Any) -> InteractionHandle:
        """A member is typing option ``focused`` of ``/path`` (APPLICATION_COMMAND_AUTOCOMPLETE)."""
        values.setdefault(focused, "")
        data = self.command_data(guild_id, path, **values)
        holder = data
        while holder.get("options") and holder["options"][0]["type"] in (schema.SUB_COMMAND, schema.SUB_COMMAND_GROUP):
            holder = holder["options"][0]
        for option in holder.get("options") or []:
            if option["name"] == focused:
                option["focused"] = True
        return await self.send_interaction(guild_id, data, type=AUTOCOMPLETE, user=user)

    async def submit(self, modal: InteractionHandle, values: dict[str, str], *,
                     user: dict[str, Any] | None = None) -> InteractionHandle:
        """A member submits the modal the bot showed in answer to ``modal`` (MODAL_SUBMIT)."""
        if modal.response_type != MODAL:
            raise LookupError("that interaction was not answered with a modal")
        shown = modal.events[0][1]["data"]
        rows = []
        for row in shown.get("components") or []:
            inputs = [c for c in _components([row]) if c.get("type") == 4]
            rows.append({"type": 1, "components": [
                {"type": 4, "custom_id": c["custom_id"], "value": values.get(c["custom_id"], "")} for c in inputs
            ]})
        data = {"custom_id": shown["custom_id"], "components": rows}
        return await self.send_interaction(
            modal.guild_id, data, type=MODAL_SUBMIT, user=user or _user_of(modal.payload),
            message=modal.payload.get("message"),
        )

    async def click(self, message: dict[str, Any], custom_id: str, *, user: dict[str, Any] | None = None,
                    permissions: int = MEMBER_PERMISSIONS, values: list[str] | None = None) -> InteractionHandle:
        """A member presses a button (or picks from a select) on a message the bot sent."""
        component = next((c for c in _components(message.get("components") or []) if c.get("custom_id") == custom_id), None)
        if component is None:
            raise LookupError(f"message {message.get('id')} has no component {custom_id!r}")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] != 2:
            data["values"] = values or []
        guild_id = int(message["guild_id"]) if message.get("guild_id") else None
        stored = self.messages.get(int(message["id"]), message)
        return await self.send_interaction(
            guild_id, data, type=MESSAGE_COMPONENT, user=user, permissions=permissions, message=stored
        )

    async def send_interaction(
        self,
        guild_id: int | None,
        data: dict[str, Any],
        *,
        type: int = APPLICATION_COMMAND,
        user: dict[str, Any] | None = None,
        permissions: int = MEMBER_PERMISSIONS,
        message: dict[str, Any] | None = None,
        channel_id: int | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Dispatch INTERACTION_CREATE on the shard that owns the guild; returns its handle."""
        guild_id = int(guild_id) if guild_id is not None else None
        user = user or self.make_user(4242, "member")
        if guild_id is not None:
            session = self.session_owning(guild_id)
        else:
            session = self.session_for(0)
            if session is None:
                raise LookupError("no gateway session")
        channel = dict(self.channel_of(guild_id)) if guild_id is not None else {"id": str(snowflake()), "type": 1}
        if channel_id is not None:
            channel["id"] = str(channel_id)
        if guild_id is not None:
            channel["guild_id"] = str(guild_id)
        app_permissions = MEMBER_PERMISSIONS | (1 << 13)
        payload: dict[str, Any] = {
            "id": str(snowflake()), "application_id": str(self.application_id), "type": type, "data": data,
            "channel": channel, "channel_id": channel["id"], "token": secrets.token_urlsafe(48), "version": 1,
            "locale": locale, "app_permissions": str(app_permissions), "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild_id)} if guild_id else {"1": user["id"]},
            "context": 0 if guild_id else 1, "attachment_size_limit": 10 * 1024 * 1024,
        }
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
            payload["member"] = self.make_member(user, guild_id, permissions)
        else:
            payload["user"] = user
        if message is not None:
            payload["message"] = message
        handle = InteractionHandle(payload, session.shard)
        self.interactions[handle.id] = handle
        await self.dispatch(session, "INTERACTION_CREATE", payload)
        return handle

    # ------------------------------------------------------------------ REST

    def _add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._gateway)
        r.add_get("/resume", self._gateway)
        p = API_PREFIX
        r.add_get(p + "/gateway", self._get_gateway)
        r.add_get(p + "/gateway/bot", self._get_gateway_bot)
        r.add_get(p + "/users/@me", self._get_me)
        r.add_get(p + "/oauth2/applications/@me", self._get_application)
        r.add_get(p + "/applications/@me", self._get_application)
        r.add_get(p + "/applications/{app}/commands", self._get_commands)
        r.add_put(p + "/applications/{app}/commands", self._put_commands)
        r.add_get(p + "/applications/{app}/guilds/{guild}/commands", self._get_commands)
        r.add_put(p + "/applications/{app}/guilds/{guild}/commands", self._put_commands)
        r.add_post(p + "/interactions/{interaction}/{token}/callback", self._callback)
        r.add_post(p + "/webhooks/{app}/{token}", self._followup)
        for which in ("@original", "{message}"):
            path = p + "/webhooks/{app}/{token}/messages/" + which
            r.add_get(path, self._get_webhook_message)
            r.add_patch(path, self._edit_webhook_message)
            r.add_delete(path, self._delete_webhook_message)
        r.add_get(p + "/channels/{channel}", self._get_channel)
        r.add_post(p + "/channels/{channel}/messages", self._post_channel_message)
        r.add_get("/attachments/{id}/{filename}", self._get_attachment)
        r.add_get("/_standin/state", self._control_state)
        r.add_post("/_standin/interactions", self._control_interaction)

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        resource = request.match_info.route.resource
        path = request.path.removeprefix(API_PREFIX)
        template = resource.canonical.removeprefix(API_PREFIX) if resource is not None else UNSERVED + path
        route = f"{request.method} {template}"
        body = await _read_body(request)
        call = Call(request.method, path, route, dict(request.query), body)
        self.calls.append(call)
        try:
            fault = self._take_fault(route)
            if fault is not None:
                response = self._fault_response(fault)
            else:
                if _needs_bot_auth(template) and request.headers.get("Authorization") != f"Bot {self.token}":
                    raise DiscordError(*UNAUTHORIZED)
                request[BODY] = body
                request[ROUTE] = route
                response = await handler(request)
        except DiscordError as exc:
            response = _json(exc.body(), status=exc.status)
        except web.HTTPException as exc:  # a route the stand-in does not serve: see `unserved`
            response = _json({"message": f"{exc.status}: {exc.reason}", "code": 0}, status=exc.status)
        call.status = response.status
        if isinstance(response, web.Response) and response.body is not None and response.content_type == "application/json":
            call.answer = json.loads(response.body)
        await self._notify()
        return response

    def _fault_response(self, fault: Fault) -> web.Response:
        if fault.status != 429:
            return _json({"message": f"{fault.status}: {_REASONS.get(fault.status, 'Server Error')}", "code": 0},
                         status=fault.status)
        reset = time.time() + fault.retry_after
        headers = {
            "Retry-After": str(max(1, int(fault.retry_after + 0.999))),
            "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{reset:.3f}", "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
            "X-RateLimit-Bucket": format(zlib.crc32(fault.route.encode()), "08x"),  # one bucket a route
            "X-RateLimit-Scope": "global" if fault.is_global else "user",
            "Via": "1.1 google",
        }
        if fault.is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": fault.retry_after, "global": fault.is_global}
        return _json(body, status=429, headers=headers)

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url.rstrip("/")})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        return _json({
            "url": self.gateway_url.rstrip("/"), "shards": self.recommended_shards,
            "session_start_limit": {
                "total": 1000, "remaining": max(0, 1000 - self.identifies),
                "reset_after": 14_400_000, "max_concurrency": self.max_concurrency,
            },
        })

    async def _get_me(self, request: web.Request) -> web.Response:
        return _json(self.bot_user)

    async def _get_application(self, request: web.Request) -> web.Response:
        app: dict[str, Any] = {
            "id": str(self.application_id), "name": "Playbill stand-in", "icon": None, "description": "",
            "summary": "", "bot_public": False, "bot_require_code_grant": False, "verify_key": "00" * 32,
            "owner": self.owner, "flags": 0, "tags": [], "rpc_origins": [], "bot": self.bot_user,
            "interactions_endpoint_url": None, "redirect_uris": [], "approximate_guild_count": len(self.guilds),
            "team": None,
        }
        if self.team:
            team_id = snowflake()
            app["team"] = {
                "id": str(team_id), "name": "Playbill team", "icon": None,
                "owner_user_id": self.team[0][0]["id"],
                "members": [
                    {"user": user, "team_id": str(team_id), "membership_state": 2, "permissions": ["*"], "role": role}
                    for user, role in self.team
                ],
            }
            app["owner"] = {**self.make_user(team_id, f"team{team_id}"), "flags": 1024}
        return _json(app)

    def _check_app(self, request: web.Request) -> int | None:
        if request.match_info["app"] != str(self.application_id):
            raise DiscordError(*UNKNOWN_APPLICATION)
        guild = request.match_info.get("guild")
        if guild is None:
            return None
        if not guild.isdigit() or int(guild) not in self.guilds:
            raise DiscordError(*MISSING_ACCESS)
        return int(guild)

    async def _get_commands(self, request: web.Request) -> web.Response:
        scope = self._check_app(request)
        return _json(self.commands.get(scope, []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        scope = self._check_app(request)
        payload = request[BODY]
        if errors := schema.check_commands(payload):
            raise invalid_form(errors)
        stored = []
        for command in payload:
            kind = command.get("type", 1)
            key = (scope, kind, command["name"])
            command_id = self._command_ids.setdefault(key, snowflake())
            entry = {
                "id": str(command_id), "application_id": str(self.application_id), "version": str(snowflake()),
                "type": kind, "name": command["name"], "description": command.get("description", ""),
                "options": command.get("options") or [], "default_member_permissions": _permission_string(command.get("default_member_permissions")),
                "dm_permission": command.get("dm_permission", True), "nsfw": command.get("nsfw", False),
                "name_localizations": command.get("name_localizations"),
                "description_localizations": command.get("description_localizations"),
                "contexts": command.get("contexts"), "integration_types": command.get("integration_types", [0]),
            }
            if scope is not None:
                entry["guild_id"] = str(scope)
            stored.append(entry)
        self.commands[scope] = stored
        return _json(stored)

    # interactions and webhooks ------------------------------------------------

    def _interaction_by_token(self, request: web.Request) -> InteractionHandle:
        if request.match_info["app"] != str(self.application_id):
            raise DiscordError(*UNKNOWN_WEBHOOK)
        token = request.match_info["token"]
        handle = next((h for h in self.interactions.values() if h.token == token), None)
        if handle is None:
            raise DiscordError(*UNKNOWN_WEBHOOK)
        if time.monotonic() - handle.created > TOKEN_LIFETIME_S:
            raise DiscordError(*INVALID_WEBHOOK_TOKEN)
        return handle

    def _new_message(self, handle: InteractionHandle, data: dict[str, Any], *, kind: int, flags: int = 0) -> dict[str, Any]:
        message_id = snowflake()
        message = {
            "id": str(message_id), "type": kind, "channel_id": handle.payload["channel"]["id"],
            "author": self.bot_user, "content": data.get("content") or "", "timestamp": now_iso(),
            "edited_timestamp": None, "tts": bool(data.get("tts", False)), "mention_everyone": False,
            "mentions": [], "mention_roles": [], "attachments": data.get("attachments") or [],
            "embeds": data.get("embeds") or [], "pinned": False, "webhook_id": str(self.application_id),
            "application_id": str(self.application_id), "flags": (data.get("flags") or 0) | flags,
            "components": data.get("components") or [], "allowed_mentions": data.get("allowed_mentions"),
            "interaction_metadata": {
                "id": str(handle.id), "type": handle.payload["type"], "user": _user_of(handle.payload),
                "authorizing_integration_owners": handle.payload["authorizing_integration_owners"],
            },
        }
        if handle.guild_id is not None:
            message["guild_id"] = str(handle.guild_id)
        self._resolve_mentions(message)
        self.messages[message_id] = message
        return message

    def _resolve_mentions(self, message: dict[str, Any]) -> None:
        """Fill ``mentions``/``mention_roles``/``mention_everyone`` as Discord does."""
        pinged = self.pings(message)
        message["mentions"] = [self.make_user(int(u), f"user{u}") for u in pinged["users"]]
        message["mention_roles"] = pinged["roles"]
        message["mention_everyone"] = pinged["everyone"]

    @staticmethod
    def pings(body: dict[str, Any]) -> dict[str, Any]:
        """Who a message (or a body the bot sent) pings under Discord's rules for its
        ``allowed_mentions`` (absent: every mention in the content pings):
        ``{"users": [ids], "roles": [ids], "everyone": bool}``."""
        content = body.get("content") or ""
        allowed = body.get("allowed_mentions")
        parse = {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse") or [])
        users = set() if allowed is None else {str(u) for u in allowed.get("users") or []}
        roles = set() if allowed is None else {str(r) for r in allowed.get("roles") or []}
        named_users = dict.fromkeys(re.findall(r"<@!?(\d+)>", content))
        named_roles = dict.fromkeys(re.findall(r"<@&(\d+)>", content))
        return {
            "users": [u for u in named_users if "users" in parse or u in users],
            "roles": [r for r in named_roles if "roles" in parse or r in roles],
            "everyone": "everyone" in parse and bool(re.search(r"@(everyone|here)", content)),
        }

    def _with_attachments(self, data: dict[str, Any], keep: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Turn uploaded ``files[n]`` parts into Discord attachment objects (contents in ``self.files``)."""
        files = {f["field"]: f for f in data.get("_files") or []}
        if not files and "attachments" not in data:
            return data
        known = {a["id"]: a for a in (keep or [])}
        out = []
        for spec in data.get("attachments") or [{"id": i} for i in range(len(files))]:
            upload = files.get(f"files[{spec.get('id')}]")
            if upload is None:
                if str(spec.get("id")) in known:
                    out.append(known[str(spec.get("id"))])
                continue
            attachment_id = str(snowflake())
            self.files[attachment_id] = upload["content"]
            url = f"{self.base_url}/attachments/{attachment_id}/{upload['filename']}"
            out.append({
                "id": attachment_id, "filename": spec.get("filename") or upload["filename"],
                "size": len(upload["content"]), "url": url, "proxy_url": url,
                "content_type": upload["content_type"], "description": spec.get("description"),
                "ephemeral": False,
            })
        clean = {k: v for k, v in data.items() if k != "_files"}
        clean["attachments"] = out
        return clean

    def _check_message_body(self, data: dict[str, Any], prefix: str | None, *, require_body: bool) -> None:
        errors = schema.check_message(data)
        errors.update(schema.check_allowed_mentions(data.get("allowed_mentions")))
        if errors:
            raise invalid_form({prefix: errors} if prefix else errors)
        if require_body and schema.is_empty_message(data):
            raise DiscordError(*EMPTY_MESSAGE)

    async def _callback(self, request: web.Request) -> web.Response:
        route = request[ROUTE]
        handle = self.interactions.get(int(request.match_info["interaction"])) if request.match_info["interaction"].isdigit() else None
        if handle is None or handle.token != request.match_info["token"]:
            raise DiscordError(*UNKNOWN_INTERACTION)
        try:
            return await self._answer(request, handle)
        except DiscordError as exc:
            await handle.refuse(route, exc)
            raise

    async def _answer(self, request: web.Request, handle: InteractionHandle) -> web.Response:
        if handle.responded:
            raise DiscordError(*ALREADY_ACKNOWLEDGED)
        if time.monotonic() - handle.created > self.response_deadline_s:
            raise DiscordError(*UNKNOWN_INTERACTION)
        body = request[BODY]
        if not isinstance(body, dict) or "type" not in body:
            raise invalid_form({"type": schema.error("BASE_TYPE_REQUIRED", "This field is required")})
        kind, data = body["type"], body.get("data") or {}
        if body.get("_files"):
            data = {**data, "_files": body["_files"]}
        data = self._with_attachments(data)
        itype = handle.payload["type"]
        allowed = {
            APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
            MESSAGE_COMPONENT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE, MODAL},
            AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
            MODAL_SUBMIT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE},
        }[itype]
        if kind not in allowed:
            raise invalid_form({"type": schema.error("INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")})
        message = None
        if kind == CHANNEL_MESSAGE:
            self._check_message_body(data, "data", require_body=True)
            message = self._new_message(handle, data, kind=20 if itype == APPLICATION_COMMAND else 0)
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            message = self._new_message(handle, {}, kind=20 if itype == APPLICATION_COMMAND else 0,
                                        flags=LOADING | (data.get("flags") or 0))
        elif kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            source = handle.payload.get("message")
            if source is None:
                raise invalid_form({"type": schema.error("INTERACTION_RESPONSE_TYPE_INVALID", "No message to update")})
            message = self.messages.setdefault(int(source["id"]), source)
            if kind == UPDATE_MESSAGE:
                merged = {**message, **{k: v for k, v in data.items() if k != "flags"}}
                self._check_message_body(merged, "data", require_body=True)
                message.update(merged, edited_timestamp=now_iso())
                self._resolve_mentions(message)
        elif kind == AUTOCOMPLETE_RESULT:
            if len(data.get("choices") or []) > schema.MAX_CHOICES:
                raise invalid_form({"data": {"choices": schema.too_long(schema.MAX_CHOICES)}})
        elif kind == MODAL:
            problems = {}
            if not 1 <= len(data.get("custom_id") or "") <= schema.MAX_CUSTOM_ID:
                problems["custom_id"] = schema.length_between(1, schema.MAX_CUSTOM_ID)
            if not 1 <= len(data.get("title") or "") <= 45:
                problems["title"] = schema.length_between(1, 45)
            if problems:
                raise invalid_form({"data": problems})
        handle.response_type = kind
        handle.original = message
        await handle.record("response", {"type": kind, "data": data} if "data" in body else {"type": kind})
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        answer: dict[str, Any] = {
            "interaction": {
                "id": str(handle.id), "type": itype,
                "response_message_loading": kind == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(((message or {}).get("flags") or 0) & EPHEMERAL),
            },
            "resource": {"type": kind},
        }
        if message is not None:
            answer["interaction"]["response_message_id"] = message["id"]
            if kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE):
                answer["resource"]["message"] = message
        return _json(answer)

    async def _followup(self, request: web.Request) -> web.Response:
        handle = self._interaction_by_token(request)
        route = request[ROUTE]
        try:
            if not handle.responded:
                raise DiscordError(*UNKNOWN_WEBHOOK)
            data = self._with_attachments(request[BODY] or {})
            self._check_message_body(data, None, require_body=True)
        except DiscordError as exc:
            await handle.refuse(route, exc)
            raise
        message = self._new_message(handle, data, kind=0 if handle.followups or handle.original else 20)
        handle.followups[int(message["id"])] = message
        await handle.record("followup", data)
        if request.query.get("wait") in ("1", "true", "True"):
            return _json(message)
        return web.Response(status=204)

    def _target(self, request: web.Request, handle: InteractionHandle) -> tuple[str, dict[str, Any]]:
        which = request.match_info.get("message", "@original")
        if which == "@original" or request.path.endswith("/@original"):
            if handle.original is None:
                raise DiscordError(*UNKNOWN_MESSAGE)
            return "original", handle.original
        message = handle.followups.get(int(which)) if which.isdigit() else None
        if message is None:
            raise DiscordError(*UNKNOWN_MESSAGE)
        return "followup", message

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        handle = self._interaction_by_token(request)
        return _json(self._target(request, handle)[1])

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        handle = self._interaction_by_token(request)
        route = request[ROUTE]
        try:
            which, message = self._target(request, handle)
            data = self._with_attachments(request[BODY] or {}, message.get("attachments"))
            editable = {k: v for k, v in data.items() if k in ("content", "embeds", "components", "attachments", "allowed_mentions", "flags", "poll")}
            merged = {**message, **editable}
            if "flags" in editable:  # only SUPPRESS_EMBEDS / IS_COMPONENTS_V2 can change; keep ephemeral
                merged["flags"] = (message.get("flags") or 0) & EPHEMERAL | (editable["flags"] or 0)
            merged["flags"] = (merged.get("flags") or 0) & ~LOADING
            self._check_message_body(merged, None, require_body=True)
        except DiscordError as exc:
            await handle.refuse(route, exc)
            raise
        message.update(merged, edited_timestamp=now_iso())
        self._resolve_mentions(message)
        await handle.record(f"edit_{which}", data)
        return _json(message)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        handle = self._interaction_by_token(request)
        which, message = self._target(request, handle)
        if which == "original":
            handle.original = None
        else:
            handle.followups.pop(int(message["id"]), None)
        self.messages.pop(int(message["id"]), None)
        await handle.record(f"delete_{which}", {"id": message["id"]})
        return web.Response(status=204)

    def _channel(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        channel_id = request.match_info["channel"]
        for guild_id, guild in self.guilds.items():
            for channel in guild["channels"]:
                if channel["id"] == channel_id:
                    return guild_id, channel
        raise DiscordError(404, 10003, "Unknown Channel")

    async def _get_channel(self, request: web.Request) -> web.Response:
        guild_id, channel = self._channel(request)
        return _json({**channel, "guild_id": str(guild_id)})

    async def _post_channel_message(self, request: web.Request) -> web.Response:
        """A message the bot posts by itself (not as an interaction answer); kept in ``posted``."""
        guild_id, channel = self._channel(request)
        data = self._with_attachments(request[BODY] or {})
        self._check_message_body(data, None, require_body=True)
        message_id = snowflake()
        message = {
            "id": str(message_id), "type": 0, "channel_id": channel["id"], "guild_id": str(guild_id),
            "author": self.bot_user, "content": data.get("content") or "", "timestamp": now_iso(),
            "edited_timestamp": None, "tts": False, "pinned": False, "attachments": data.get("attachments") or [],
            "embeds": data.get("embeds") or [], "components": data.get("components") or [], "flags": 0,
            "allowed_mentions": data.get("allowed_mentions"),
        }
        self._resolve_mentions(message)
        self.messages[message_id] = message
        self.posted.append(message)
        await self._notify()
        return _json(message)

    async def _get_attachment(self, request: web.Request) -> web.Response:
        content = self.files.get(request.match_info["id"])
        if content is None:
            raise web.HTTPNotFound()
        return web.Response(body=content)

    # control (for manual tries with ``python -m tests.standin``) ------------------

    async def _control_state(self, request: web.Request) -> web.Response:
        return _json({
            "api_base": self.api_base, "gateway_url": self.gateway_url, "token": self.token,
            "application_id": str(self.application_id), "guilds": [str(g) for g in self.guilds],
            "sessions": [{"session_id": s.session_id, "shard": list(s.shard), "connected": s.connection is not None,
                          "seq": s.seq} for s in self.sessions.values()],
            "commands": {str(k): v for k, v in self.commands.items()},
            "calls": [{"route": c.route, "status": c.status, "code": c.code} for c in self.calls],
            "interactions": {str(h.id): {"events": h.events, "refused": [(r, e.body()) for r, e in h.refused]}
                             for h in self.interactions.values()},
        })

    async def _control_interaction(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            handle = await self.slash(int(body["guild_id"]), body["command"], **(body.get("options") or {}))
        except LookupError as exc:
            return _json({"error": str(exc)}, status=404)
        return _json({"id": str(handle.id)})


# --------------------------------------------------------------------------- helpers


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON the way Discord sends it: ``Content-Type: application/json`` with no charset
    (discord.py only parses a body whose content type is exactly that)."""
    return web.Response(
        body=json.dumps(body).encode(), status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


UNSERVED = "(unserved)"
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def _permission_string(value: Any) -> str | None:
    """Discord takes a permission bit set as a number or a string and answers with a string."""
    return None if value is None else str(int(value))


def _needs_bot_auth(template: str) -> bool:
    path = template.removeprefix(API_PREFIX)
    return not (path.startswith("/interactions/") or path.startswith("/webhooks/"))


def _user_of(payload: dict[str, Any]) -> dict[str, Any]:
    return (payload.get("member") or {}).get("user") or payload.get("user") or {}


def _components(rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for component in rows:
        yield component
        yield from _components(component.get("components") or [])
        if component.get("accessory"):
            yield component["accessory"]


async def _read_body(request: web.Request) -> Any:
    """The JSON body, or for multipart the ``payload_json`` with ``_files`` (name, filename, bytes)."""
    if not request.can_read_body:
        return None
    if request.content_type.startswith("multipart/"):
        body: Any = None
        files = []
        reader = await request.multipart()
        async for part in reader:
            if part.name == "payload_json":
                body = json.loads(await part.text())
            else:
                files.append({
                    "field": part.name, "filename": part.filename,
                    "content_type": part.headers.get("Content-Type"), "content": await part.read(),
                })
        body = body if isinstance(body, dict) else {}
        body["_files"] = files
        return body
    text = await request.text()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
