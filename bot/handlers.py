"""What each command does, once, for every front end.

A handler takes the `Services`, a `Request` and the command's options and returns a plain
`Response` (or, for scenes, yields `SceneUpdate`s). The Discord cogs and `playbill console`
both call these; neither re-implements them. Every request is recorded in the history
database with its latency and model version, whether it succeeded or not.

Slow work starts only after the quick checks (options, cooldown): a front end passes
`before_work` (Discord: defer the interaction) so refusals can still be ephemeral replies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from playbill.bot import charts
from playbill.bot import text as fmt
from playbill.bot.errors import Busy, NotAllowed, UserFacingError, describe
from playbill.bot.messages import EmbedData, Field, FileData, Request, Response
from playbill.bot.recording import parse_time
from playbill.bot.services import Services
from playbill.engine.errors import InvalidInput
from playbill.engine.models import MODEL_NAMES, spec
from playbill.engine.scene import SceneRequest
from playbill.engine.sentiment import ReviewRequest
from playbill.history.api import HistoryStats, InteractionFilter, InteractionRecord
from playbill.jobs.leader import request_job, schedule_holder
from playbill.jobs.scheduler import next_run_time, run_now
from playbill.jobs.warmup import status_line as warmup_status_line

log = logging.getLogger("playbill.bot.handlers")

BeforeWork = Callable[[], Awaitable[Any]] | None

POSITIVE, NEGATIVE = 0x2ECC71, 0xE74C3C
VERDICTS = ("right", "wrong")


# --------------------------------------------------------------------------- recording
class _Recording:
    """One history row per request: ok with the output, or error with the message."""

    def __init__(self, services: Services, request: Request, kind: str, prompt: str, parameters: dict) -> None:
        self.services, self.request = services, request
        self.kind, self.prompt, self.parameters = kind, prompt, parameters
        self.started = time.perf_counter()

    def _fields(self, **extra: Any) -> dict[str, Any]:
        r = self.request
        return {
            "kind": self.kind,
            "source": r.source,
            "user_id": r.user_id,
            "guild_id": r.guild_id,
            "channel_id": r.channel_id,
            "user_name": r.display_name or None,
            "prompt": self.prompt,
            "params": self.parameters,
            "model_name": self.kind,
            "latency_ms": (time.perf_counter() - self.started) * 1000.0,
            **extra,
        }

    async def done(self, **extra: Any) -> int | None:
        """The row's id, or None if the database has not answered within `history_wait_seconds`
        (the write then finishes in the background: a locked database delays no reply)."""
        write = self.services.spawn(self.services.history.record_interaction(**self._fields(status="ok", **extra)))
        finished, _ = await asyncio.wait({write}, timeout=self.services.settings.bot.history_wait_seconds)
        return write.result() if finished else None

    def failed(self, exc: BaseException) -> None:
        """Record the failure in the background: a slow database must not delay the reply."""
        if isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
            error = "cancelled before the answer was complete"
        else:
            message, error_id = describe(exc, context=f"/{self.kind}")
            error = message if error_id is None else f"error id {error_id}: {type(exc).__name__}: {exc}"
        version = self.services.holders[self.kind].version
        self.services.spawn(self.services.history.record_interaction(
            **self._fields(status="error", error=error[:2000], model_version=version)))


async def _guarded(rec: _Recording, work: Awaitable[Any]) -> Any:
    try:
        return await work
    except BaseException as exc:
        rec.failed(exc)
        raise


# --------------------------------------------------------------------------- the critic
async def review_sentiment(services: Services, request: Request, text: str, *,
                           before_work: BeforeWork = None) -> Response:
    """The critic's verdict on one review, with feedback buttons keyed by the history row."""
    rec = _Recording(services, request, "sentiment", text, {})
    worker = services.sentiment_worker

    async def work() -> tuple[Any, str | None]:
        review = worker.check(ReviewRequest(text))
        if not worker.has_room():
            raise Busy("The critic")
        services.cooldowns.hit(request.user_id, "review-sentiment")
        if before_work is not None:
            await before_work()
        return await worker.predict(review)

    verdict, version = await _guarded(rec, work())
    label = str(verdict.label)
    p = float(verdict.positive_probability)
    interaction_id = await rec.done(output=label, label=label, probability=p, model_version=version)
    embed = EmbedData(
        title=f"The critic says: {label}",
        description=fmt.quote_block(text, 1000),
        colour=POSITIVE if label == "positive" else NEGATIVE,
        fields=[Field("Positive", f"`{fmt.bar(p)}`"), Field("Model", f"sentiment {version}")],
        footer="Was the critic right? Your vote helps it learn." if interaction_id else "",
    )
    return Response(embed=embed, feedback_for=interaction_id)


async def give_feedback(services: Services, request: Request, interaction_id: int, verdict: str) -> Response:
    if verdict not in VERDICTS:
        raise InvalidInput(f"verdict must be one of {', '.join(VERDICTS)}")
    outcome = await services.history.record_feedback(interaction_id, request.user_id, verdict, request.guild_id)
    other = "wrong" if verdict == "right" else "right"
    if outcome == "unchanged":
        text = f"You already said the critic was **{verdict}**. Changed your mind? Press \"{other}\"."
    else:
        changed = "Changed your vote: " if outcome == "updated" else "Thanks! "
        text = f"{changed}noted that the critic was **{verdict}**. Changed your mind? Press \"{other}\"."
    return Response(text=text, ephemeral=True)


# --------------------------------------------------------------------------- the playwright
@dataclass
class SceneUpdate:
    """The scene so far (prompt included); `done` on the last one, with the final text."""

    text: str
    done: bool = False
    model_version: str | None = None


async def write_scene(services: Services, request: Request, prompt: str, length: int | None = None,
                      temperature: float | None = None, *, before_work: BeforeWork = None) -> AsyncIterator[SceneUpdate]:
    """Stream a scene: updates as text arrives, then one `done` update. Options left out come
    from the settings, and are checked by the same engine rule as the member's own."""
    scene = services.settings.scene
    ask = SceneRequest(prompt, scene.default_length if length is None else length,
                       scene.temperature if temperature is None else temperature,
                       top_k=scene.top_k, stop_at_boundary=scene.stop_at_boundary)
    rec = _Recording(services, request, "scene", prompt,
                     {"length": ask.length, "temperature": ask.temperature, "top_k": ask.top_k})
    worker = services.scene_worker
    try:
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
        rec.failed(exc)
        raise
    await rec.done(output=text, model_version=stream.version)
    yield SceneUpdate(text, done=True, model_version=stream.version)


# --------------------------------------------------------------------------- privacy
async def forget_me(services: Services, request: Request) -> Response:
    counts = await services.history.forget_user(request.user_id)
    return Response(text=f"Done: your stored history is deleted ({_describe_counts(counts)}).", ephemeral=True)


def _describe_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()) or "nothing was stored"


# --------------------------------------------------------------------------- admin
def require_admin(request: Request) -> None:
    if not request.is_admin:
        raise NotAllowed("Only server administrators can use the admin commands.")


async def admin_history(services: Services, request: Request, *, user: int | None = None, guild: int | None = None,
                        kind: str | None = None, since: str | None = None, until: str | None = None,
                        search: str | None = None, label: str | None = None, limit: int = 10) -> Response:
    """The filters of `playbill history`, newest first, as one embed."""
    require_admin(request)
    filters = InteractionFilter(user_id=user, guild_id=guild, kind=kind, since=parse_time(since),
                                until=parse_time(until, end_of_day=True), search=search, label=label, limit=limit)
    rows = await services.history.query_interactions(filters)
    if not rows:
        return Response(text="No interactions match.", ephemeral=True)
    lines = [_history_line(row) for row in rows]
    body = fmt.trim("\n".join(lines), fmt.EMBED_DESCRIPTION_LIMIT)
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


async def admin_stats(services: Services, request: Request, *, since: str | None = "7d") -> Response:
    require_admin(request)
    stats = await services.history.history_stats(parse_time(since))
    embed = EmbedData(title=f"History since {since or 'the beginning'}: {stats.total} interaction(s)")
    for name, value in _stats_fields(stats):
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
    require_admin(request)
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
        elif not holder.loaded:
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


def _warmup_line(settings: Any, name: str) -> str | None:
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


async def admin_feedback(services: Services, request: Request) -> Response:
    """What the next retrain learns from the members' votes, in short (`playbill feedback` in full)."""
    require_admin(request)
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


async def retrain(services: Services, request: Request, model: str) -> Response:
    require_admin(request)
    if model != "all" and model not in MODEL_NAMES:
        raise InvalidInput(f"model must be one of {', '.join(MODEL_NAMES)} or all")
    names = MODEL_NAMES if model == "all" else (model,)
    after = ("`/admin model-status` shows the result when it finishes; a better model is swapped in "
             "without a restart.")
    if services.scheduler is not None:  # this process holds the schedule
        for name in names:
            await asyncio.to_thread(run_now, services.scheduler, f"retrain-{name}")
        return Response(text=f"Queued a retraining run for {' and '.join(names)}. {after}", ephemeral=True)
    holder = await asyncio.to_thread(schedule_holder, services.settings)
    if holder is None:
        raise UserFacingError(f"No process holds the job schedule now; run `playbill retrain {model}` from a shell, "
                              "or start one with `playbill run` or `playbill scheduler`.")
    for name in names:  # the holder, another process, takes the request at its next poll
        await asyncio.to_thread(request_job, services.settings, f"retrain-{name}")
    return Response(text=f"Asked the process that holds the job schedule (process {holder['pid']} on "
                         f"{holder['host']}) to retrain {' and '.join(names)}. {after}", ephemeral=True)


async def rollback(services: Services, request: Request, model: str) -> Response:
    require_admin(request)
    holder = services.holders[spec(model).name]
    previous = await asyncio.to_thread(holder.registry.rollback)
    await asyncio.to_thread(holder.refresh)
    return Response(text=f"{model}: rolled back to {previous}; now serving {holder.version}.", ephemeral=True)


# --------------------------------------------------------------------------- help
_ONE_OF = "|".join(MODEL_NAMES)
HELP = f"""\
/review-sentiment TEXT        the critic's verdict on a movie review
/write-scene PROMPT [length=N] [temperature=T]
                              a scene in the style of the corpus, from your opening words
/history [user=ID] [guild=ID] [kind={_ONE_OF}] [since=7d] [until=DATE] [search=TEXT]
         [label=positive|negative] [limit=N]
                              recent interactions (admin)
/stats [since=7d]             history statistics (admin)
/model-status                 model versions, metrics and a chart (admin)
{'/rollback ' + _ONE_OF:<29} serve the previous model version (admin)
{'/retrain ' + _ONE_OF + '|all':<29} queue a retraining run (admin; where the scheduler runs)
/feedback ID right|wrong      tell the critic whether its verdict ID was right
/feedback                     what the next retrain learns from the votes (admin)
/forget-me                    delete your stored history
/help                         this text
/quit                         leave (end of input works too)"""


def help_response() -> Response:
    return Response(text=HELP)

