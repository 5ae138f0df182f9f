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
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot import text as fmt
from bot.errors import Busy, NotAllowed, UserFacingError, describe
from bot.inference import supports
from bot.messages import EmbedData, Field, FileData, Request, Response
from bot.services import TRAIN_HINT, Services
from engine.errors import InvalidInput, ModelUnavailable

log = logging.getLogger("bot.handlers")

BeforeWork = Callable[[], Awaitable[Any]] | None

MIN_TEMPERATURE = 0.1
MAX_TEMPERATURE = 2.0
POSITIVE, NEGATIVE = 0x2ECC71, 0xE74C3C
VERDICTS = ("right", "wrong")
MODELS = ("sentiment", "scene")


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
        wait = self.services.settings.bot.history_wait_seconds
        return await self.services.history.record_interaction(wait=wait, **self._fields(status="ok", **extra))

    def failed(self, exc: BaseException) -> None:
        """Record the failure in the background: a slow database must not delay the reply."""
        if isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
            error = "cancelled before the answer was complete"
        else:
            message, error_id = describe(exc, context=f"/{self.kind}")
            error = message if error_id is None else f"error id {error_id}: {type(exc).__name__}: {exc}"
        holder = self.services.holders.get(self.kind)
        version = holder.version if holder is not None else None
        try:
            self.services.spawn(self.services.history.record_interaction(
                **self._fields(status="error", error=error[:2000], model_version=version)))
        except RuntimeError:  # no running loop (cannot happen inside a handler)
            pass


async def _guarded(rec: _Recording, work: Awaitable[Any]) -> Any:
    try:
        return await work
    except BaseException as exc:
        rec.failed(exc)
        raise


# --------------------------------------------------------------------------- the critic
def check_review(services: Services, text: str) -> str:
    limit = services.settings.bot.max_review_chars
    if not text or not text.strip():
        raise InvalidInput("Give the critic something to read: the review text is empty.")
    if len(text) > limit:
        raise InvalidInput(f"That review is {len(text):,} characters; the critic reads at most {limit:,}.")
    return text


async def review_sentiment(services: Services, request: Request, text: str, *,
                           before_work: BeforeWork = None) -> Response:
    """The critic's verdict on one review, with feedback buttons keyed by the history row."""
    rec = _Recording(services, request, "sentiment", text, {})

    async def work() -> tuple[Any, str | None]:
        check_review(services, text)
        ensure_model(services, "sentiment")
        if not services.sentiment_worker.has_room():
            raise Busy("The critic")
        services.cooldowns.hit(request.user_id, "review-sentiment")
        if before_work is not None:
            await before_work()
        return await services.sentiment_worker.predict(text)

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
    outcome = await services.history.record_feedback(interaction_id, request.user_id, verdict)
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


def check_scene(services: Services, prompt: str, length: int | None, temperature: float | None) -> tuple[int, float]:
    s = services.settings
    if not prompt or not prompt.strip():
        raise InvalidInput("Give the playwright a few opening words: the prompt is empty.")
    if len(prompt) > s.bot.max_prompt_chars:
        raise InvalidInput(f"That prompt is {len(prompt):,} characters; the playwright takes at most "
                           f"{s.bot.max_prompt_chars:,}.")
    if length is None:  # the configured defaults are trusted (validated with the settings)
        length = s.scene.default_length
    elif not 1 <= int(length) <= s.scene.max_length:
        raise InvalidInput(f"length must be between 1 and {s.scene.max_length} characters (got {length}).")
    if temperature is None:
        temperature = s.scene.temperature
    elif not MIN_TEMPERATURE <= float(temperature) <= MAX_TEMPERATURE:
        raise InvalidInput(f"temperature must be between {MIN_TEMPERATURE} and {MAX_TEMPERATURE} (got {temperature:g}).")
    return int(length), float(temperature)


def explain_unknown(unknown: list[str]) -> str:
    shown = ", ".join(_char_name(c) for c in unknown[:12]) + (" …" if len(unknown) > 12 else "")
    return (f"The playwright learned from old plays and has never seen these characters: {shown}. "
            "Please write the prompt with plain letters and punctuation.")


def _char_name(c: str) -> str:
    code = f"U+{ord(c):04X}"
    if c.isprintable() and not c.isspace() and c != "`":
        return f"'{fmt.safe(c)}' ({code})"
    return f"{code} {unicodedata.name(c, '(unnamed)').lower()}"


async def write_scene(services: Services, request: Request, prompt: str, length: int | None = None,
                      temperature: float | None = None, *, before_work: BeforeWork = None) -> AsyncIterator[SceneUpdate]:
    """Stream a scene: updates as text arrives, then one `done` update cut at a natural boundary."""
    rec = _Recording(services, request, "scene", prompt, {"length": length, "temperature": temperature})
    try:
        length, temperature = check_scene(services, prompt, length, temperature)
        rec.parameters = {"length": length, "temperature": temperature, "top_k": services.settings.scene.top_k}
        ensure_model(services, "scene")
        writer = services.holders["scene"].model
        unknown = list(writer.unknown_characters(prompt))
        if unknown:
            raise InvalidInput(explain_unknown(unknown))
        if not services.scene_runner.has_room():
            raise Busy("The playwright")
        services.cooldowns.hit(request.user_id, "write-scene")
        if before_work is not None:
            await before_work()
        version = getattr(writer, "version", None)
        scene = services.settings.scene
        stop = scene.stop_at_boundary
        generated = ""
        async for piece in services.scene_runner.stream(
            writer, prompt, length=length, temperature=temperature, top_k=scene.top_k,
            stop_at_boundary=stop, chunk_chars=scene.stream_chunk_chars,
        ):
            generated += piece
            yield SceneUpdate(_with_prompt(prompt, generated), model_version=version)
        if stop and not supports(writer.stream, "stop_at_boundary") and generated.strip():
            generated = fmt.cut_at_boundary(generated)  # the writer cannot stop at a boundary itself
        final = _with_prompt(prompt, generated)
    except BaseException as exc:
        rec.failed(exc)
        raise
    await rec.done(output=final, model_version=version)
    yield SceneUpdate(final, done=True, model_version=version)


def _with_prompt(prompt: str, generated: str) -> str:
    return prompt + generated  # the writer yields the continuation only


# --------------------------------------------------------------------------- privacy
async def forget_me(services: Services, request: Request) -> Response:
    counts = await services.history.forget_user(request.user_id)
    return Response(text=f"Done: your stored history is deleted ({_describe_counts(counts)}).", ephemeral=True)


def _describe_counts(counts: Any) -> str:
    if isinstance(counts, dict):
        return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()) or "nothing was stored"
    return f"{counts} rows"


# --------------------------------------------------------------------------- admin
def require_admin(request: Request) -> None:
    if not request.is_admin:
        raise NotAllowed("Only server administrators can use the admin commands.")


async def admin_history(services: Services, request: Request, *, user: int | None = None, guild: int | None = None,
                        kind: str | None = None, since: str | None = None, until: str | None = None,
                        search: str | None = None, label: str | None = None, limit: int = 10) -> Response:
    """The filters of `playbill history`, newest first, as one embed."""
    require_admin(request)
    from bot.recording import make_filters, parse_time

    filters = make_filters(user_id=user, guild_id=guild, kind=kind, since=parse_time(since),
                           until=parse_time(until, end_of_day=True), search=search, label=label, limit=limit)
    rows = await services.history.query_interactions(filters)
    if not rows:
        return Response(text="No interactions match.", ephemeral=True)
    lines = [_history_line(row) for row in rows]
    body = fmt.trim("\n".join(lines), fmt.EMBED_DESCRIPTION_LIMIT)
    return Response(embed=EmbedData(title=f"History: {len(rows)} interaction(s), newest first", description=body),
                    ephemeral=True)


def _get(row: Any, name: str, default: Any = None) -> Any:
    return row.get(name, default) if isinstance(row, dict) else getattr(row, name, default)


def _history_line(row: Any) -> str:
    when = _get(row, "created_at") or _get(row, "at")
    when_s = when.strftime("%Y-%m-%d %H:%M") if isinstance(when, datetime) else str(when or "")
    kind = _get(row, "kind", "")
    prompt = fmt.safe(fmt.trim(" ".join(str(_get(row, "prompt", "")).split()), 60))
    if kind == "sentiment":
        outcome = f"{_get(row, 'label', '')} {float(_get(row, 'probability', 0) or 0):.2f}"
    else:
        outcome = fmt.safe(fmt.trim(" ".join(str(_get(row, "output", "") or "").split()), 60))
    if _get(row, "status", "ok") != "ok":
        outcome = "error: " + fmt.safe(fmt.trim(str(_get(row, "error", "") or ""), 60))
    who = fmt.safe(str(_get(row, "user_name") or _get(row, "user_id", "")))
    votes = ""
    if _get(row, "feedback_right") or _get(row, "feedback_wrong"):
        votes = f" [{_get(row, 'feedback_right', 0)} right / {_get(row, 'feedback_wrong', 0)} wrong]"
    return f"`#{_get(row, 'id', '?')}` {when_s} **{kind}** {who} ({_get(row, 'source', '')}): {prompt} → {outcome}{votes}"


async def admin_stats(services: Services, request: Request, *, since: str | None = "7d") -> Response:
    require_admin(request)
    from bot.recording import parse_time

    stats = await services.history.history_stats(parse_time(since))
    embed = EmbedData(title=f"History since {since or 'the beginning'}: {stats.get('total', 0)} interaction(s)")
    for name, value in _stats_fields(stats):
        embed.fields.append(Field(name, fmt.trim(value, fmt.EMBED_FIELD_LIMIT), inline=False))
    return Response(embed=embed, ephemeral=True)


def _stats_fields(stats: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    by_kind = stats.get("by_kind") or {}
    out.append(("By kind", ", ".join(f"{k} {v}" for k, v in by_kind.items()) + f"; errors {stats.get('errors', 0)}"))
    labels = stats.get("labels") or {}
    if any(labels.values()):
        out.append(("Verdicts", ", ".join(f"{k} {v}" for k, v in labels.items())))
    latency = stats.get("latency") or {}
    lat = [f"{k}: median {_ms(v.get('median_ms'))}, p95 {_ms(v.get('p95_ms'))} (n={v.get('n', 0)})"
           for k, v in latency.items() if v.get("n")]
    if lat:
        out.append(("Latency", "\n".join(lat)))
    users = stats.get("busiest_users") or []
    if users:
        out.append(("Busiest users", "\n".join(
            f"{fmt.safe(str(u.get('user_name') or u.get('user_id')))}: {u.get('count')}" for u in users)))
    channels = stats.get("busiest_channels") or []
    if channels:
        out.append(("Busiest channels", "\n".join(f"channel {c.get('channel_id')}: {c.get('count')}" for c in channels)))
    fb = stats.get("feedback") or {}
    if fb.get("votes"):
        out.append(("Feedback", f"{fb['right']} right, {fb['wrong']} wrong: people agreed with the critic "
                                f"{fb['agreement']:.0%} of the time"))
    per_day = stats.get("per_day") or []
    if per_day:
        out.append(("Per day", "\n".join(f"{d['day']} {d['kind']}: {d['count']}" for d in per_day[-14:])))
    return out


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f} ms"


async def model_status(services: Services, request: Request) -> Response:
    """Versions, metrics, last and next training runs, and a chart of metrics per version."""
    require_admin(request)
    from bot import charts

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
            lines.append(f"train one with `{TRAIN_HINT[name]}`")
        last = await _last_training_run(services, name)
        if last:
            lines.append(f"last run: {last}")
        nxt = next_training_run(services, name)
        if nxt:
            lines.append(f"next run: {nxt:%Y-%m-%d %H:%M %Z}")
        embed.fields.append(Field(name, fmt.trim("\n".join(lines), fmt.EMBED_FIELD_LIMIT), inline=False))
    files = []
    png = await asyncio.to_thread(charts.metrics_chart, series)
    if png:
        files.append(FileData("model-metrics.png", png))
    return Response(embed=embed, files=files, ephemeral=True)


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
    started = _get(run, "started_at")
    started_s = started.strftime("%Y-%m-%d %H:%M") if isinstance(started, datetime) else str(started or "?")
    figures = ""
    if _get(run, "candidate_metric") is not None:
        figures = f" (new {_num(_get(run, 'candidate_metric'))} vs current {_num(_get(run, 'current_metric'))})"
    version = _get(run, "version") or ""
    return f"{started_s} {_get(run, 'status', '?')} {version}{figures}".strip()


def next_training_run(services: Services, name: str) -> datetime | None:
    """From the running scheduler when this process has one, else from the cron setting."""
    scheduler = services.scheduler
    if scheduler is not None:
        try:
            job = scheduler.get_job(f"retrain-{name}")
            when = getattr(job, "next_run_time", None) if job else None
            if when:
                return when
        except Exception:  # pragma: no cover - a scheduler that is shutting down
            pass
    try:
        from apscheduler.triggers.cron import CronTrigger

        jobs = services.settings.jobs
        trigger = CronTrigger.from_crontab(jobs.retrain_cron, timezone=jobs.timezone)
        return trigger.get_next_fire_time(None, datetime.now(UTC))
    except Exception:
        return None


async def retrain(services: Services, request: Request, model: str) -> Response:
    require_admin(request)
    names = MODELS if model == "all" else (model,)
    if any(n not in MODELS for n in names):
        raise InvalidInput(f"model must be one of {', '.join(MODELS)} or all")
    if services.scheduler is None:
        raise UserFacingError(f"The job scheduler does not run in this process; run `playbill retrain {model}` "
                              "from a shell, or use this command on the bot started with `playbill run`.")
    from jobs.scheduler import run_now

    for name in names:
        await asyncio.to_thread(run_now, services.scheduler, f"retrain-{name}")
    return Response(text=f"Queued a retraining run for {' and '.join(names)}. `/admin model-status` shows the result "
                         "when it finishes; a better model is swapped in without a restart.", ephemeral=True)


async def rollback(services: Services, request: Request, model: str) -> Response:
    require_admin(request)
    if model not in services.holders:
        raise InvalidInput(f"model must be one of {', '.join(services.holders)}")
    holder = services.holders[model]
    previous = await asyncio.to_thread(holder.registry.rollback)
    await asyncio.to_thread(holder.refresh)
    return Response(text=f"{model}: rolled back to {previous}; now serving {holder.version}.", ephemeral=True)


# --------------------------------------------------------------------------- help
HELP = """\
/review-sentiment TEXT        the critic's verdict on a movie review
/write-scene PROMPT [length=N] [temperature=T]
                              a scene in the style of the corpus, from your opening words
/history [user=ID] [guild=ID] [kind=sentiment|scene] [since=7d] [until=DATE] [search=TEXT]
         [label=positive|negative] [limit=N]
                              recent interactions (admin)
/stats [since=7d]             history statistics (admin)
/model-status                 model versions, metrics and a chart (admin)
/rollback sentiment|scene     serve the previous model version (admin)
/retrain sentiment|scene|all  queue a retraining run (admin; where the scheduler runs)
/feedback ID right|wrong      tell the critic whether its verdict ID was right
/forget-me                    delete your stored history
/help                         this text
/quit                         leave (end of input works too)"""


def help_response() -> Response:
    return Response(text=HELP)


def ensure_model(services: Services, name: str) -> None:
    """Raise ModelUnavailable naming the training command when `name` has no model loaded."""
    holder = services.holders[name]
    if not holder.loaded:
        raise ModelUnavailable(f"No {name} model is trained yet; run `{TRAIN_HINT[name]}` first.")
