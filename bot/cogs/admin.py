"""Administration: /admin history, stats, model-status, feedback, retrain, rollback, sync, and the
console's /history, /stats, /model-status, /feedback, /retrain, /rollback, in one place.

The admin rule is `errors.require_admin`, checked by every command here for every front end. On
Discord, /admin is hidden by default from members without Manage Server (a hint server admins
can change), and the cog's check refuses, with the same message, anyone `discord_io.is_admin`
does not admit (Manage Server or Administrator in the guild, or an owner). Replies are ephemeral.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot import charts
from playbill.bot import text as fmt
from playbill.bot.cogs import MODEL_CHOICES
from playbill.bot.console_command import ConsoleCommand
from playbill.bot.discord_io import NO_MENTIONS, NotAdmin, NotOwner, ReportsOwnErrors, admin_default_permissions, \
    is_admin, owner_ids, reply, request_from, sync_commands
from playbill.bot.errors import ADMIN_ONLY, UserFacingError, require_admin
from playbill.bot.messages import EmbedData, Field, FileData, Request, Response
from playbill.bot.recording import parse_time
from playbill.bot.services import Services
from playbill.engine.errors import InvalidInput
from playbill.engine.models import MODEL_NAMES, canonical
from playbill.history.api import HistoryStats, InteractionFilter, InteractionRecord
from playbill.jobs.leader import request_job, schedule_holder
from playbill.jobs.promotion import roll_back
from playbill.jobs.scheduler import next_run_time, retrain_job_id, run_now
from playbill.jobs.warmup import status_line as warmup_status_line
from playbill.settings import Settings

if TYPE_CHECKING:
    from playbill.bot.console import Console

log = logging.getLogger("playbill.bot.admin")

HISTORY = "Recent interactions, newest first, with filters."
STATS = "History statistics: volume, labels, latency, busiest users."
MODEL_STATUS = "Model versions, metrics, training runs and a chart."
FEEDBACK = "What the next retrain learns from the votes: labels, caps, trust."
RETRAIN = "Queue a retraining run now (promoted only if it passes the gate)."
ROLLBACK = "Serve the model version that was current before the last promotion."
SYNC = "Owner only: publish the slash commands to this server or globally."


# --------------------------------------------------------------------------- what it does
async def history(services: Services, request: Request, *, user: int | None = None, guild: int | None = None,
                  kind: str | None = None, since: str | None = None, until: str | None = None,
                  search: str | None = None, label: str | None = None, limit: int = 10) -> Response:
    """The filters of `playbill history`, newest first, as one embed."""
    require_admin(request.is_admin)
    filters = InteractionFilter(user_id=user, guild_id=guild, kind=kind, since=parse_time(since),
                                until=parse_time(until, end_of_day=True), search=search, label=label, limit=limit)
    rows = await services.history.query_interactions(filters)
    if not rows:
        return Response(text="No interactions match.", ephemeral=True)
    body = fmt.trim("\n".join(_history_line(row) for row in rows), fmt.EMBED_DESCRIPTION_LIMIT)
    return Response(embed=EmbedData(title=f"History: {len(rows)} interaction(s), newest first", description=body),
                    ephemeral=True)


def _history_line(row: InteractionRecord) -> str:
    when = row.created_at.strftime("%Y-%m-%d %H:%M")
    prompt = fmt.safe(fmt.trim(" ".join(row.prompt.split()), 60))
    if row.status != "ok":
        outcome = "error: " + fmt.safe(fmt.trim(row.error or "", 60))
    elif row.label is not None:
        outcome = f"{row.label} {row.probability or 0:.2f}"
    else:
        outcome = fmt.safe(fmt.trim(" ".join((row.output or "").split()), 60))
    who = fmt.safe(row.user_name or str(row.user_id or ""))
    votes = f" [{row.feedback_right} right / {row.feedback_wrong} wrong]" if row.feedback_right or row.feedback_wrong else ""
    return f"`#{row.id}` {when} **{row.kind}** {who} ({row.source}): {prompt} → {outcome}{votes}"


async def stats(services: Services, request: Request, *, since: str | None = "7d") -> Response:
    require_admin(request.is_admin)
    figures = await services.history.history_stats(parse_time(since))
    embed = EmbedData(title=f"History since {since or 'the beginning'}: {figures.total} interaction(s)")
    for name, value in _stats_fields(figures):
        embed.fields.append(Field(name, fmt.trim(value, fmt.EMBED_FIELD_LIMIT), inline=False))
    return Response(embed=embed, ephemeral=True)


def _stats_fields(stats: HistoryStats) -> list[tuple[str, str]]:
    out = [("By kind", ", ".join(f"{k} {v}" for k, v in stats.by_kind.items()) + f"; errors {stats.errors}")]
    if any(stats.labels.values()):
        out.append(("Verdicts", ", ".join(f"{k} {v}" for k, v in stats.labels.items())))
    lat = [f"{k}: median {_ms(v.median_ms)}, p95 {_ms(v.p95_ms)} (n={v.n})" for k, v in stats.latency.items() if v.n]
    if lat:
        out.append(("Latency", "\n".join(lat)))
    if stats.busiest_users:
        out.append(("Busiest users", "\n".join(
            f"{fmt.safe(str(u.user_name or u.user_id))}: {u.count}" for u in stats.busiest_users)))
    if stats.busiest_channels:
        out.append(("Busiest channels", "\n".join(f"channel {c.channel_id}: {c.count}" for c in stats.busiest_channels)))
    fb = stats.feedback
    if fb.votes:
        out.append(("Feedback", f"{fb.right} right, {fb.wrong} wrong: people agreed with the critic "
                                f"{fb.agreement:.0%} of the time"))
    if stats.per_day:
        out.append(("Per day", "\n".join(f"{d.day} {d.kind}: {d.count}" for d in stats.per_day[-14:])))
    return out


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f} ms"


async def model_status(services: Services, request: Request) -> Response:
    """Versions, metrics, last and next training runs, and a chart of metrics per version."""
    require_admin(request.is_admin)
    embed = EmbedData(title="Models")
    series: dict[str, list[tuple[str, dict]]] = {}
    for name, holder in services.holders.items():
        versions = await asyncio.to_thread(holder.registry.versions)
        current = await asyncio.to_thread(holder.registry.current_version)
        series[name] = [(v.version, v.metrics) for v in versions]
        lines = [f"serving: {holder.version or 'nothing'}; current: {current or 'none'}; {len(versions)} version(s)"]
        if current:
            metrics = next((v.metrics for v in versions if v.version == current), {})
            if metrics:
                lines.append(", ".join(f"{k} {_num(v)}" for k, v in metrics.items()))
        elif name in services.missing_models():
            lines.append(f"train one with `{holder.spec.train_command}`")
        warming = await asyncio.to_thread(_warmup_line, services.settings, name)
        if warming:
            lines.append(warming)
        last = await _last_training_run(services, name)
        if last:
            lines.append(f"last run: {last}")
        nxt = next_run_time(services.settings, name, services.scheduler)
        if nxt:
            lines.append(f"next run: {nxt:%Y-%m-%d %H:%M %Z}")
        embed.fields.append(Field(name, fmt.trim("\n".join(lines), fmt.EMBED_FIELD_LIMIT), inline=False))
    backlog = await asyncio.to_thread(lambda: services.history.spooled)
    if backlog:
        embed.fields.append(Field("history", f"{backlog} interaction(s) wait in the spool for the database", inline=False))
    files = []
    png = await asyncio.to_thread(charts.metrics_chart, series)
    if png:
        files.append(FileData("model-metrics.png", png))
    return Response(embed=embed, files=files, ephemeral=True)


def _warmup_line(settings: Settings, name: str) -> str | None:
    try:
        return warmup_status_line(settings, name)
    except Exception as exc:  # optional information: the status shows without it
        log.debug("no warm-up status for %s: %s", name, exc)
        return None


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


async def _last_training_run(services: Services, name: str) -> str | None:
    try:
        runs = await services.history.training_runs(name, limit=1)
    except Exception as exc:  # optional information: the status shows without it
        log.debug("no training runs for %s: %s", name, exc)
        return None
    if not runs:
        return None
    run = runs[0]
    figures = ""
    if run.candidate_metric is not None:
        figures = f" (new {_num(run.candidate_metric)} vs current {_num(run.current_metric)})"
    return f"{run.started_at:%Y-%m-%d %H:%M} {run.status} {run.version or ''}{figures}".strip()


async def feedback(services: Services, request: Request) -> Response:
    """What the next retrain learns from the members' votes, in short (`playbill feedback` in full)."""
    require_admin(request.is_admin)
    learnt = await services.history.next_feedback(services.settings)
    details = learnt.details
    corrections = [r for r in details["reviews"] if not r["critic_agreed"]]
    embed = EmbedData(title="What the next retrain learns from the votes",
                      description=fmt.trim("\n".join(fmt.safe(line) for line in details["explanation"]),
                                           fmt.EMBED_DESCRIPTION_LIMIT))
    embed.fields.append(Field("Training", fmt.safe(learnt.summary), inline=False))
    if corrections:
        lines = [f"`#{r['review_id']}` {fmt.safe(fmt.trim(' '.join(r['text'].split()), 60))} → "
                 f"{'positive' if r['label'] else 'negative'} (weight {r['weight']:.2f})" for r in corrections[:5]]
        more = f"\n… and {len(corrections) - 5} more (`playbill feedback`)" if len(corrections) > 5 else ""
        embed.fields.append(Field(f"Corrections ({len(corrections)})", fmt.trim("\n".join(lines) + more,
                                                                          fmt.EMBED_FIELD_LIMIT), inline=False))
    return Response(embed=embed, ephemeral=True)


@dataclass(frozen=True)
class Retrain:
    """Retraining asked for `models`: queued on this process's scheduler (`holder` None), or
    asked of the process holding the schedule ({"host", "pid", ...})."""

    models: tuple[str, ...]
    holder: dict[str, Any] | None = None


async def retrain(services: Services, request: Request, model: str) -> Retrain:
    require_admin(request.is_admin)
    names = tuple(MODEL_NAMES) if model == "all" else (canonical(model),)  # a name or alias (critic, ...)
    if services.scheduler is not None:  # this process holds the schedule
        for name in names:
            await asyncio.to_thread(run_now, services.scheduler, retrain_job_id(name))
        return Retrain(names)
    holder = await asyncio.to_thread(schedule_holder, services.settings)
    if holder is None:
        raise UserFacingError(f"No process holds the job schedule now; run `playbill retrain {model}` from a shell, "
                              "or start one with `playbill run` or `playbill scheduler`.")
    for name in names:  # the holder, another process, takes the request at its next poll
        await asyncio.to_thread(request_job, services.settings, retrain_job_id(name))
    return Retrain(names, holder)


def retrain_response(asked: Retrain) -> Response:
    after = ("`/admin model-status` shows the result when it finishes; a better model is swapped in "
             "without a restart.")
    models = " and ".join(asked.models)
    if asked.holder is None:
        return Response(text=f"Queued a retraining run for {models}. {after}", ephemeral=True)
    return Response(text=f"Asked the process that holds the job schedule (process {asked.holder['pid']} on "
                         f"{asked.holder['host']}) to retrain {models}. {after}", ephemeral=True)


@dataclass(frozen=True)
class Rollback:
    model: str
    previous: str  # the version made current again
    serving: str | None  # what this process serves now


async def rollback(services: Services, request: Request, model: str) -> Rollback:
    require_admin(request.is_admin)
    name = canonical(model)
    holder = services.holders[name]
    previous = await asyncio.to_thread(roll_back, holder.registry)  # a read-only folder: one line
    await asyncio.to_thread(holder.refresh)
    return Rollback(name, previous, holder.version)


def rollback_response(done: Rollback) -> Response:
    return Response(text=f"{done.model}: rolled back to {done.previous}; now serving {done.serving}.", ephemeral=True)


# --------------------------------------------------------------------------- on Discord
@app_commands.default_permissions(admin_default_permissions())
@app_commands.guild_only()
class Admin(ReportsOwnErrors, commands.GroupCog, group_name="admin", group_description="Playbill administration (server admins only)."):
    def __init__(self, services: Services) -> None:
        self.services = services
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Before anything is deferred, so a refusal is an ephemeral answer; the commands below
        check `require_admin` again, as they do for every front end."""
        if not is_admin(interaction):
            raise NotAdmin(ADMIN_ONLY)
        return True

    @app_commands.command(name="history", description=HISTORY)
    @app_commands.describe(
        user="Only this member's interactions.",
        guild_id="Only this server (its id); default: every server.",
        kind="Only requests to this model.",
        since="From this long ago (7d, 12h) or this date (2026-01-31).",
        until="Up to this date.",
        search="Only prompts containing this text.",
        label="Only sentiment verdicts with this label.",
        limit="How many rows (at most 50).",
    )
    @app_commands.choices(kind=MODEL_CHOICES)
    async def history(
        self,
        interaction: discord.Interaction,
        user: discord.User | None = None,
        guild_id: app_commands.Range[str, 1, 20] | None = None,
        kind: str | None = None,
        since: app_commands.Range[str, 1, 40] | None = None,
        until: app_commands.Range[str, 1, 40] | None = None,
        search: app_commands.Range[str, 1, 200] | None = None,
        label: Literal["positive", "negative"] | None = None,
        limit: app_commands.Range[int, 1, 50] = 10,
    ) -> None:
        if guild_id is not None and not guild_id.isdigit():
            raise InvalidInput("guild_id must be a server id (digits only).")
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, await history(
            self.services, request_from(interaction), user=user.id if user else None,
            guild=int(guild_id) if guild_id else None, kind=kind, since=since, until=until, search=search,
            label=label, limit=limit,
        ))

    @app_commands.command(name="stats", description=STATS)
    @app_commands.describe(since="From this long ago (7d, 12h) or this date (2026-01-31).")
    async def stats(self, interaction: discord.Interaction, since: app_commands.Range[str, 1, 40] = "7d") -> None:
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, await stats(self.services, request_from(interaction), since=since))

    @app_commands.command(name="model-status", description=MODEL_STATUS)
    async def model_status(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, await model_status(self.services, request_from(interaction)))

    @app_commands.command(name="feedback", description=FEEDBACK)
    async def feedback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, await feedback(self.services, request_from(interaction)))

    @app_commands.command(name="retrain", description=RETRAIN)
    @app_commands.describe(model="Which model to retrain.")
    @app_commands.choices(model=[*MODEL_CHOICES, app_commands.Choice(name="all", value="all")])
    async def retrain(self, interaction: discord.Interaction, model: str) -> None:
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, retrain_response(await retrain(self.services, request_from(interaction), model)))

    @app_commands.command(name="rollback", description=ROLLBACK)
    @app_commands.describe(model="Which model to roll back.")
    @app_commands.choices(model=MODEL_CHOICES)
    async def rollback(self, interaction: discord.Interaction, model: str) -> None:
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, rollback_response(await rollback(self.services, request_from(interaction), model)))

    @app_commands.command(name="sync", description=SYNC)
    @app_commands.describe(scope="'here': this server at once; 'global': every server (can take up to an hour).")
    async def sync(self, interaction: discord.Interaction, scope: Literal["here", "global"] = "here") -> None:
        if interaction.user.id not in owner_ids(interaction.client):
            raise NotOwner("Only Playbill's owners can sync commands.")
        await interaction.response.defer(ephemeral=True)
        here = scope == "here"
        synced = await sync_commands(interaction.client.tree, interaction.guild_id if here else None)
        await interaction.followup.send(
            f"Synced {len(synced)} commands {'to this server' if here else 'globally'}.",
            ephemeral=True, allowed_mentions=NO_MENTIONS,
        )


COG = Admin
DYNAMIC_ITEMS = ()


# --------------------------------------------------------------------------- at the console
HISTORY_OPTIONS = {"user": int, "guild": int, "kind": str, "since": str, "until": str, "search": str,
                   "label": str, "limit": int}


def key_values(rest: str, allowed: dict[str, type]) -> dict[str, Any]:
    """`key=value` options, each converted by its type; an unknown key or a bad number: InvalidInput."""
    try:
        tokens = shlex.split(rest)
    except ValueError as exc:
        raise InvalidInput(f"could not read the options: {exc}") from None
    values: dict[str, Any] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or key not in allowed:
            raise InvalidInput(f"unknown option {token!r}; options are {', '.join(k + '=' for k in allowed)}")
        try:
            values[key] = allowed[key](value)
        except ValueError:
            raise InvalidInput(f"{key} must be a number (got {value!r})") from None
    return values


async def _console_history(console: Console, rest: str) -> None:
    values = key_values(rest, HISTORY_OPTIONS)
    if "limit" in values and not 1 <= values["limit"] <= 1000:
        raise InvalidInput("limit must be between 1 and 1000")
    console.show(await history(console.services, console.request, **values))


async def _console_stats(console: Console, rest: str) -> None:
    since = key_values(rest, {"since": str}).get("since", "7d")
    console.show(await stats(console.services, console.request, since=since))


async def _console_model_status(console: Console, rest: str) -> None:
    console.show(await model_status(console.services, console.request))


async def _console_feedback(console: Console, rest: str) -> None:
    console.show(await feedback(console.services, console.request))


async def _console_retrain(console: Console, rest: str) -> None:
    console.show(retrain_response(await retrain(console.services, console.request, rest or "all")))


async def _console_rollback(console: Console, rest: str) -> None:
    console.show(rollback_response(await rollback(console.services, console.request, rest)))


_ONE_OF = "|".join(MODEL_NAMES)
CONSOLE = (
    ConsoleCommand("/history", f"[user=ID] [guild=ID] [kind={_ONE_OF}] [since=7d] [until=DATE] [search=TEXT] "
                   "[label=positive|negative] [limit=N]", HISTORY, _console_history, admin=True),
    ConsoleCommand("/stats", "[since=7d]", STATS, _console_stats, admin=True),
    ConsoleCommand("/model-status", "", MODEL_STATUS, _console_model_status, admin=True),
    ConsoleCommand("/feedback", "", FEEDBACK, _console_feedback, admin=True, takes_arguments=False),
    ConsoleCommand("/retrain", f"[{_ONE_OF}|all]", RETRAIN, _console_retrain, admin=True),
    ConsoleCommand("/rollback", _ONE_OF, ROLLBACK, _console_rollback, admin=True),
)
