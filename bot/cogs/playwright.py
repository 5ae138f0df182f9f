"""The playwright: /write-scene streamed into the channel (edited about once a second) and the
console's /write-scene, in one place.

`write_scene` is what the feature does, for every front end: it yields `SceneUpdate`s as the
text arrives, then one `done` update; the request is recorded in the history, answered or not.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot import text as fmt
from playbill.bot.cogs import DISCORD_TEXT_OPTION_MAX, BeforeWork
from playbill.bot.console_command import ConsoleCommand
from playbill.bot.discord_compat import set_option_bounds
from playbill.bot.discord_io import NO_MENTIONS, ReportsOwnErrors, request_from
from playbill.bot.errors import Busy
from playbill.bot.messages import Request
from playbill.bot.services import Services, refresh_models
from playbill.engine.errors import InvalidInput, ModelUnavailable
from playbill.engine.scene import SceneRequest
from playbill.jobs.warmup import learning
from playbill.settings import Settings

if TYPE_CHECKING:
    from playbill.bot.console import Console

DESCRIPTION = "The playwright writes a scene from your opening words."
CURSOR = " \N{LEFT HALF BLACK CIRCLE}"
MAX_MESSAGES = 4  # a scene never floods a channel; the rest is trimmed with a note
TRIMMED = "\n-# (trimmed: the scene was longer than Discord allows here)"


# --------------------------------------------------------------------------- what it does
@dataclass
class SceneUpdate:
    """The scene so far (prompt included); `done` on the last one, with the final text."""

    text: str
    done: bool = False
    model_version: str | None = None


class StillLearning(ModelUnavailable):
    """No playwright is served yet, but its first model is training (a first start); counted
    as unavailable, and shown to the member as it is."""


def still_learning(settings: Settings) -> StillLearning | None:
    """What /write-scene answers while the first playwright trains on this host (a first start
    serves the critic at once and trains the playwright in the background), with when it
    expects to be ready: the epochs left times the time per epoch so far. None when it is not
    training. Blocking (reads the training's state): call it in a thread."""
    p = learning(settings, "scene")
    if p is None:
        return None
    head = "The playwright is still learning its lines"
    if p["seconds_left"] is None:  # no epoch finished yet: no time per epoch to go by
        started = datetime.fromisoformat(p["started_at"])
        ago = max(0, round((datetime.now(UTC) - started).total_seconds()))
        return StillLearning(f"{head} (started {ago} s ago); it can say when it will be ready once its first "
                             f"epoch of {p['epochs_total'] or 'several'} is done. The critic answers meanwhile.")
    if p["seconds_left"] <= 0:  # every epoch done: checked and published within moments
        return StillLearning(f"{head} (all {p['epochs_total']} epochs done); it is being checked and published, "
                             f"ready within moments. The critic answers meanwhile.")
    minutes = max(1, round(p["seconds_left"] / 60))
    return StillLearning(f"{head} (epoch {p['epochs_done']} of {p['epochs_total']} done, about "
                         f"{p['seconds_per_epoch']:.0f} s each); it expects to be ready in about {minutes} min "
                         f"(about {p['eta'][11:16]} UTC). The critic answers meanwhile.")


def not_served_yet(services: Services) -> StillLearning | None:
    """No playwright served: still learning (`still_learning`), or else just published (loaded
    now, not at the next refresh). Blocking: call it in a thread."""
    learning_now = still_learning(services.settings)
    if learning_now is None:
        refresh_models({"scene": services.holders["scene"]})  # a damaged version is logged, not raised
    return learning_now


async def write_scene(services: Services, request: Request, prompt: str, length: int | None = None,
                      temperature: float | None = None, *, before_work: BeforeWork = None) -> AsyncIterator[SceneUpdate]:
    """Stream a scene: updates as text arrives, then one `done` update. Options left out come
    from the settings, and are checked by the same engine rule as the member's own."""
    scene = services.settings.scene
    ask = SceneRequest(prompt, scene.default_length if length is None else length,
                       scene.temperature if temperature is None else temperature,
                       top_k=scene.top_k, stop_at_boundary=scene.stop_at_boundary)
    record = services.record(request, "scene", prompt,
                             {"length": ask.length, "temperature": ask.temperature, "top_k": ask.top_k})
    worker = services.scene_worker
    try:
        if not services.holders["scene"].loaded:
            learning_now = await asyncio.to_thread(not_served_yet, services)
            if learning_now is not None:
                raise learning_now
        ask = worker.check(ask)
        if not worker.has_room():
            raise Busy("The playwright")
        services.cooldowns.hit(request.user_id, "write-scene")
        if before_work is not None:
            await before_work()
        stream = worker.start(ask)
        text = prompt  # the writer yields the continuation only
        async for piece in stream.pieces:
            text += piece
            yield SceneUpdate(text, model_version=stream.version)
    except BaseException as exc:
        record.failed(exc)
        raise
    await record.done(output=text, model_version=stream.version)
    yield SceneUpdate(text, done=True, model_version=stream.version)


# --------------------------------------------------------------------------- on Discord
class Playwright(ReportsOwnErrors, commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services
        limits = services.holders["scene"].limits  # the engine's, shown to Discord's client too
        set_option_bounds(self.write_scene, "prompt", max_value=min(limits.max_prompt_chars, DISCORD_TEXT_OPTION_MAX))
        set_option_bounds(self.write_scene, "length", max_value=limits.max_length)
        set_option_bounds(self.write_scene, "temperature", min_value=limits.min_temperature,
                          max_value=limits.max_temperature)

    @app_commands.command(name="write-scene", description=DESCRIPTION)
    @app_commands.describe(
        prompt="The opening words, e.g. ROMEO: (plain letters and punctuation).",
        length="Characters to write (default from the settings).",
        temperature="Boldness, from careful (low) to wild (high); default from the settings.",
    )
    async def write_scene(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, DISCORD_TEXT_OPTION_MAX],
        length: app_commands.Range[int, 1, None] | None = None,
        temperature: float | None = None,
    ) -> None:
        out = StreamedMessages(interaction)
        interval = self.services.settings.bot.stream_edit_interval
        last = 0.0
        async for update in write_scene(self.services, request_from(interaction), prompt, length, temperature,
                                        before_work=interaction.response.defer):
            if update.done:
                footer = f"\n-# playwright {update.model_version}" if update.model_version else ""
                await out.show(update.text, footer=footer)
            elif time.monotonic() - last >= interval:
                await out.show(update.text + CURSOR)
                last = time.monotonic()


class StreamedMessages:
    """The scene as a series of messages: the first follow-up replaces the deferred "thinking"
    response, more follow-ups come as the scene grows. Each `show` edits only the messages
    whose text changed, so one tick costs one edit."""

    def __init__(self, interaction: discord.Interaction, limit: int = fmt.MESSAGE_LIMIT) -> None:
        self.interaction = interaction
        self.limit = limit
        self.shown: list[str] = []
        self.messages: list[discord.WebhookMessage] = []

    async def show(self, scene: str, footer: str = "") -> None:
        pieces = fmt.scene_messages(scene, self.limit - len(footer) - len(TRIMMED))
        if len(pieces) > MAX_MESSAGES:
            pieces = pieces[:MAX_MESSAGES]
            footer = TRIMMED + footer
        pieces[-1] += footer
        for i, piece in enumerate(pieces):
            if i < len(self.shown):
                if self.shown[i] != piece:
                    await self.messages[i].edit(content=piece, allowed_mentions=NO_MENTIONS)
                    self.shown[i] = piece
            else:
                message = await self.interaction.followup.send(piece, wait=True, allowed_mentions=NO_MENTIONS)
                self.messages.append(message)
                self.shown.append(piece)
        while len(self.shown) > len(pieces):  # the final text came out shorter than the stream
            self.shown.pop()
            await self.messages.pop().delete()


COG = Playwright
DYNAMIC_ITEMS = ()


# --------------------------------------------------------------------------- at the console
_SCENE_OPTION = re.compile(r"\s+(length|temperature)=(\S+)\s*$")


def scene_options(rest: str) -> tuple[str, int | None, float | None]:
    """(prompt, length, temperature) from `PROMPT [length=N] [temperature=T]`."""
    options: dict[str, Any] = {}
    while True:
        m = _SCENE_OPTION.search(" " + rest)
        if not m:
            break
        key, value = m.group(1), m.group(2)
        try:
            options[key] = int(value) if key == "length" else float(value)
        except ValueError:
            raise InvalidInput(f"{key} must be a number (got {value!r})") from None
        rest = (" " + rest)[: m.start()].strip()
    if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in "\"'":
        rest = rest[1:-1]
    return rest, options.get("length"), options.get("temperature")


async def _console_scene(console: Console, rest: str) -> None:
    """At a terminal the scene shows as it is written; from a pipe, once, when it is done."""
    prompt, length, temperature = scene_options(rest)
    shown = 0  # characters already written to the terminal
    async for update in write_scene(console.services, console.request, prompt, length, temperature):
        if update.done:
            console.say("" if shown else update.text)  # after a streamed scene: its line's end
            console.say(f"(playwright {update.model_version})")
        elif console.interactive:
            console.write(update.text[shown:])
            shown = len(update.text)


CONSOLE = (
    ConsoleCommand("/write-scene", "PROMPT [length=N] [temperature=T]", DESCRIPTION, _console_scene),
)
