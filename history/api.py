"""The history API the bot, the console, the jobs and the CLI share.

Plain blocking functions taking a session factory (`history.db.make_session_factory`);
from async code call them in a thread (`await asyncio.to_thread(record_interaction, ...)`).
They return plain dataclasses and dicts, never ORM objects, and turn database failures
(a lock held past the busy timeout, an unreachable server, a missing schema) into
`HistoryError`s with a one-line message.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Select, case, delete, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.orm import Session, sessionmaker

from playbill.history.db import UNICODE_LOWER, database_error
from playbill.history.errors import HistoryError
from playbill.history.models import (
    KINDS,
    LABELS,
    RUN_STATUSES,
    SOURCES,
    STATUSES,
    VERDICTS,
    Feedback,
    Interaction,
    TrainingRun,
    utcnow,
)
from playbill.history.votes import Settlement, Vote, settle

Sessions = sessionmaker[Session] | Callable[[], Session]
P = ParamSpec("P")
R = TypeVar("R")

MAX_TEXT = 100_000  # characters kept of a prompt, an output or an error (the rest is cut, and says so)
MAX_ROWS = 1_000_000_000  # the largest row count a query may ask for (more than any history holds)


def check_row_count(name: str, value: int) -> int:
    """A limit on rows (--limit, --top): a whole number from 1 to MAX_ROWS (the databases' integers
    overflow far beyond it)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ROWS:
        raise HistoryError(f"{name} must be a whole number from 1 to {MAX_ROWS:,}, not {value!r}")
    return value


# --- records handed back to callers ------------------------------------------------------


@dataclass(frozen=True)
class InteractionRecord:
    id: int
    created_at: datetime
    kind: str
    source: str
    user_id: int | None
    guild_id: int | None
    channel_id: int | None
    user_name: str | None
    prompt: str
    params: dict[str, Any] | None
    output: str | None
    label: str | None
    probability: float | None
    model_name: str | None
    model_version: str | None
    latency_ms: float | None
    status: str
    error: str | None
    feedback_right: int = 0
    feedback_wrong: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the timestamp as ISO 8601 UTC."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


@dataclass(frozen=True)
class TrainingRunRecord:
    id: int
    model_name: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    checkpoint_from: str | None
    epochs: int | None
    metrics: dict[str, Any] | None
    candidate_metric: float | None
    current_metric: float | None
    promoted: bool
    version: str | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return data


@dataclass(frozen=True)
class DayCount:
    day: str  # YYYY-MM-DD, UTC
    kind: str
    count: int


@dataclass(frozen=True)
class LatencySummary:
    """Latency of the answered requests (failures left out)."""

    n: int
    median_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class UserCount:
    user_id: int
    user_name: str | None
    count: int


@dataclass(frozen=True)
class ChannelCount:
    guild_id: int | None
    channel_id: int
    count: int


@dataclass(frozen=True)
class FeedbackSummary:
    right: int
    wrong: int

    @property
    def votes(self) -> int:
        return self.right + self.wrong

    @property
    def agreement(self) -> float | None:
        """The share of 'right' votes (people agreeing with the model); None without votes."""
        return self.right / self.votes if self.votes else None

    def to_dict(self) -> dict[str, Any]:
        return {"right": self.right, "wrong": self.wrong, "votes": self.votes, "agreement": self.agreement}


@dataclass(frozen=True)
class HistoryStats:
    """What `history_stats` measured over a window: one object that the CLI (`playbill history
    stats`) and the bot's admin stats both read, so neither guesses at the keys of a dict."""

    since: datetime | None
    until: datetime | None
    total: int
    errors: int
    by_kind: dict[str, int]  # every kind, 0 included
    per_day: list[DayCount]  # oldest day first
    labels: dict[str, int]  # every label, 0 included
    latency: dict[str, LatencySummary]  # per kind, and "all"
    busiest_users: list[UserCount]
    busiest_channels: list[ChannelCount]
    feedback: FeedbackSummary

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (`playbill history stats --format json`): times as ISO 8601 UTC."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "total": self.total,
            "errors": self.errors,
            "by_kind": dict(self.by_kind),
            "per_day": [asdict(row) for row in self.per_day],
            "labels": dict(self.labels),
            "latency": {kind: asdict(row) for kind, row in self.latency.items()},
            "busiest_users": [asdict(row) for row in self.busiest_users],
            "busiest_channels": [asdict(row) for row in self.busiest_channels],
            "feedback": self.feedback.to_dict(),
        }


@dataclass
class InteractionFilter:
    """What `query_interactions` selects. Times are aware datetimes (see history.timeparse)."""

    user_id: int | None = None
    guild_id: int | None = None
    channel_id: int | None = None
    kind: str | None = None
    source: str | None = None
    status: str | None = None
    label: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    search: str | None = None  # case-insensitive substring of the prompt or the output
    limit: int | None = 50  # None: all
    offset: int = 0


def _guard(fn: Callable[P, R]) -> Callable[P, R]:
    """Database errors become HistoryErrors (one line, says what to do); nothing is half-written."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except DBAPIError as exc:
            sessions = args[0] if args else None
            bind = getattr(sessions, "kw", {}).get("bind") if sessions is not None else None
            raise database_error(exc, getattr(bind, "url", None)) from exc

    return wrapper


def _check(name: str, value: str | None, allowed: tuple[str, ...], *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in allowed:
        raise HistoryError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = str(text).replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
    if len(text) > MAX_TEXT:
        return text[:MAX_TEXT] + f"… [{len(text) - MAX_TEXT} more characters not kept]"
    return text


def _snowflake(name: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HistoryError(f"{name} must be a Discord id (a number), not {value!r}") from None
    if not -(2**63) <= number < 2**63:
        raise HistoryError(f"{name} {value!r} is out of range for a Discord id")
    return number


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --- writing -----------------------------------------------------------------------------


@_guard
def record_interaction(
    sessions: Sessions,
    *,
    kind: str,
    prompt: str,
    output: str | None = None,
    source: str = "discord",
    user_id: int | None = None,
    guild_id: int | None = None,
    channel_id: int | None = None,
    user_name: str | None = None,
    params: dict[str, Any] | None = None,
    label: str | None = None,
    probability: float | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    latency_ms: float | None = None,
    status: str = "ok",
    error: str | None = None,
    created_at: datetime | None = None,
    request_key: str | None = None,
) -> int:
    """Keep one request and its answer; returns the interaction id (for feedback buttons).

    request_key: the writer's key for the row (history.spool gives one to every row it may
    write twice); a row with that key already stored is not stored again, and its id is returned."""
    _check("kind", kind, KINDS)
    _check("source", source, SOURCES)
    _check("status", status, STATUSES)
    _check("label", label, LABELS, optional=True)
    row = Interaction(
        created_at=created_at or utcnow(),
        kind=kind,
        source=source,
        user_id=_snowflake("user id", user_id),
        guild_id=_snowflake("guild id", guild_id),
        channel_id=_snowflake("channel id", channel_id),
        user_name=(user_name or None) and str(user_name)[:100],
        prompt=_clip(prompt) or "",
        params=_json_safe(params) if params is not None else None,
        output=_clip(output),
        label=label,
        probability=_finite(probability),
        model_name=model_name,
        model_version=None if model_version is None else str(model_version)[:64],
        latency_ms=_finite(latency_ms),
        status=status,
        error=_clip(error),
        request_key=None if request_key is None else str(request_key)[:36],
    )
    try:
        with sessions() as session, session.begin():
            session.add(row)
            session.flush()
            return int(row.id)
    except IntegrityError:  # the unique request key: this row is stored already (no extra query otherwise)
        stored = _interaction_with_key(sessions, row.request_key) if row.request_key is not None else None
        if stored is None:
            raise
        return stored


def _interaction_with_key(sessions: Sessions, request_key: str) -> int | None:
    with sessions() as session:
        return session.scalar(select(Interaction.id).where(Interaction.request_key == request_key))


def _json_safe(value: Any) -> Any:
    """Parameters as JSON: numbers, strings, lists, dicts; anything else as its str()."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


ANY_GUILD: Any = object()  # record_feedback's guild_id when the vote comes from no server (admin tools)


@_guard
def record_feedback(sessions: Sessions, interaction_id: int, user_id: int, verdict: str, *,
                    guild_id: int | None = ANY_GUILD) -> str:
    """Keep one person's verdict on an interaction; voting again replaces the old vote.

    guild_id: where the vote is cast (None: a DM or the console); a vote on a row from another
    server (or from a server, cast elsewhere) is refused. ANY_GUILD: not checked.
    Returns "created", "updated" (the verdict changed) or "unchanged".
    Raises HistoryError if the interaction does not exist (forgotten or purged) or is another server's.
    """
    _check("verdict", verdict, VERDICTS)
    user = _snowflake("user id", user_id)
    if guild_id is not ANY_GUILD:
        guild = _snowflake("guild id", guild_id)
        with sessions() as session:
            asked_in = session.execute(select(Interaction.guild_id).where(Interaction.id == interaction_id)).first()
        if asked_in is not None and asked_in[0] != guild:  # a missing row: "not in the history" below
            raise HistoryError(f"interaction {interaction_id} was asked in another place; vote where it was asked")
    now = utcnow()
    for _attempt in range(3):
        with sessions() as session:
            try:
                with session.begin():
                    # The write comes first, so SQLite takes the write lock (and waits for it)
                    # before reading anything.
                    updated = session.execute(
                        update(Feedback)
                        .where(Feedback.interaction_id == interaction_id, Feedback.user_id == user)
                        .where(Feedback.verdict != verdict)
                        .values(verdict=verdict, updated_at=now)
                    ).rowcount
                    if updated:
                        return "updated"
                    exists = session.scalar(
                        select(Feedback.id).where(Feedback.interaction_id == interaction_id, Feedback.user_id == user)
                    )
                    if exists is not None:
                        return "unchanged"
                    if session.get(Interaction, interaction_id) is None:
                        raise HistoryError(f"interaction {interaction_id} is not in the history (forgotten or purged)")
                    session.add(
                        Feedback(interaction_id=interaction_id, user_id=user, verdict=verdict, created_at=now, updated_at=now)
                    )
                    session.flush()
                    return "created"
            except IntegrityError:
                continue  # the same person voted twice at once: go round again and update
    raise HistoryError(f"could not record the vote on interaction {interaction_id}; try again")


@_guard
def record_training_run(
    sessions: Sessions,
    *,
    model_name: str,
    checkpoint_from: str | None = None,
    epochs: int | None = None,
    started_at: datetime | None = None,
) -> int:
    """Note that a (re)training started; returns the run id for finish_training_run."""
    row = TrainingRun(
        model_name=model_name,
        started_at=started_at or utcnow(),
        status="running",
        checkpoint_from=None if checkpoint_from is None else str(checkpoint_from),
        epochs=epochs,
        promoted=False,
    )
    with sessions() as session, session.begin():
        session.add(row)
        session.flush()
        return int(row.id)


@_guard
def finish_training_run(
    sessions: Sessions,
    run_id: int,
    *,
    status: str,
    metrics: dict[str, Any] | None = None,
    candidate_metric: float | None = None,
    current_metric: float | None = None,
    promoted: bool | None = None,
    version: str | None = None,
    error: str | None = None,
    epochs: int | None = None,
    finished_at: datetime | None = None,
) -> None:
    """Record how a run ended: status promoted, rejected (worse than current) or failed."""
    _check("status", status, RUN_STATUSES)
    if status == "running":
        raise HistoryError("a finished run needs a final status (promoted, rejected or failed)")
    values: dict[str, Any] = {
        "status": status,
        "finished_at": finished_at or utcnow(),
        "promoted": status == "promoted" if promoted is None else bool(promoted),
        "candidate_metric": _finite(candidate_metric),
        "current_metric": _finite(current_metric),
        "version": version,
        "error": _clip(error),
    }
    if metrics is not None:
        values["metrics"] = _json_safe(metrics)
    if epochs is not None:
        values["epochs"] = epochs
    with sessions() as session, session.begin():
        changed = session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(**values)).rowcount
    if not changed:
        raise HistoryError(f"training run {run_id} is not in the history")


# --- reading -----------------------------------------------------------------------------


class unicode_lower(FunctionElement):  # noqa: N801 - used like func.lower
    """lower() that knows every alphabet: the database's own, except on SQLite, whose lower()
    changes only ASCII letters (there: Python's str.lower, registered by history.db)."""

    inherit_cache = True
    name = "unicode_lower"


@compiles(unicode_lower)
def _lower_default(element, compiler, **kw):
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(unicode_lower, "sqlite")
def _lower_sqlite(element, compiler, **kw):
    return f"{UNICODE_LOWER}({compiler.process(element.clauses, **kw)})"



def _apply_filter(query: Select, f: InteractionFilter) -> Select:
    if f.user_id is not None:
        query = query.where(Interaction.user_id == _snowflake("user id", f.user_id))
    if f.guild_id is not None:
        query = query.where(Interaction.guild_id == _snowflake("guild id", f.guild_id))
    if f.channel_id is not None:
        query = query.where(Interaction.channel_id == _snowflake("channel id", f.channel_id))
    if f.kind is not None:
        _check("kind", f.kind, KINDS)
        query = query.where(Interaction.kind == f.kind)
    if f.source is not None:
        _check("source", f.source, SOURCES)
        query = query.where(Interaction.source == f.source)
    if f.status is not None:
        _check("status", f.status, STATUSES)
        query = query.where(Interaction.status == f.status)
    if f.label is not None:
        _check("label", f.label, LABELS)
        query = query.where(Interaction.label == f.label)
    if f.since is not None:
        query = query.where(Interaction.created_at >= f.since)
    if f.until is not None:
        query = query.where(Interaction.created_at < f.until)
    if f.search:
        pattern = "%" + f.search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                unicode_lower(Interaction.prompt).like(pattern, escape="\\"),
                unicode_lower(func.coalesce(Interaction.output, "")).like(pattern, escape="\\"),
            )
        )
    return query


@_guard
def query_interactions(sessions: Sessions, filters: InteractionFilter | None = None, **kwargs: Any) -> list[InteractionRecord]:
    """Interactions matching the filter (or the same fields as keywords), newest first."""
    f = filters or InteractionFilter()
    if kwargs:
        names = {fl.name for fl in fields(InteractionFilter)}
        unknown = set(kwargs) - names
        if unknown:
            raise TypeError(f"unknown filter(s): {', '.join(sorted(unknown))}")
        f = InteractionFilter(**{**asdict(f), **kwargs})
    if f.limit is not None:
        check_row_count("limit", f.limit)
    votes = (
        select(
            Feedback.interaction_id.label("iid"),
            func.sum(case((Feedback.verdict == "right", 1), else_=0)).label("right"),
            func.sum(case((Feedback.verdict == "wrong", 1), else_=0)).label("wrong"),
        )
        .group_by(Feedback.interaction_id)
        .subquery()
    )
    query = _apply_filter(select(Interaction, votes.c.right, votes.c.wrong), f)
    query = query.outerjoin(votes, votes.c.iid == Interaction.id)
    query = query.order_by(Interaction.created_at.desc(), Interaction.id.desc()).offset(f.offset)
    if f.limit is not None:
        query = query.limit(f.limit)
    with sessions() as session:
        return [_interaction_record(row, right or 0, wrong or 0) for row, right, wrong in session.execute(query)]


def _interaction_record(row: Interaction, right: int = 0, wrong: int = 0) -> InteractionRecord:
    return InteractionRecord(
        id=row.id,
        created_at=row.created_at,
        kind=row.kind,
        source=row.source,
        user_id=row.user_id,
        guild_id=row.guild_id,
        channel_id=row.channel_id,
        user_name=row.user_name,
        prompt=row.prompt,
        params=row.params,
        output=row.output,
        label=row.label,
        probability=row.probability,
        model_name=row.model_name,
        model_version=row.model_version,
        latency_ms=row.latency_ms,
        status=row.status,
        error=row.error,
        feedback_right=int(right),
        feedback_wrong=int(wrong),
    )


@_guard
def get_interaction(sessions: Sessions, interaction_id: int) -> InteractionRecord | None:
    """One interaction by id, or None."""
    with sessions() as session:
        row = session.get(Interaction, interaction_id)
        if row is None:
            return None
        counts = Counter(session.scalars(select(Feedback.verdict).where(Feedback.interaction_id == interaction_id)))
        return _interaction_record(row, counts["right"], counts["wrong"])


@_guard
def list_training_runs(sessions: Sessions, model_name: str | None = None, limit: int = 20) -> list[TrainingRunRecord]:
    """The latest training runs, newest first."""
    check_row_count("limit", limit)
    query = select(TrainingRun).order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc()).limit(limit)
    if model_name is not None:
        query = query.where(TrainingRun.model_name == model_name)
    with sessions() as session:
        return [
            TrainingRunRecord(**{fl.name: getattr(row, fl.name) for fl in fields(TrainingRunRecord)})
            for row in session.scalars(query)
        ]


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), on a sorted list."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _day(dialect: str, column: Any) -> Any:
    """The UTC calendar day of a timestamp column, as SQL."""
    if dialect == "sqlite":
        return func.date(column)  # stored as naive UTC text
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return None  # other databases: grouped in Python


@_guard
def history_stats(
    sessions: Sessions,
    since: datetime | None = None,
    *,
    until: datetime | None = None,
    guild_id: int | None = None,
    top: int = 5,
) -> HistoryStats:
    """Interactions per day and kind, label mix, latency median/p95, busiest users and
    channels, and feedback agreement (the share of 'right' votes) over a time window."""
    check_row_count("top", top)
    f = InteractionFilter(since=since, until=until, guild_id=guild_id, limit=None)
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        base = _apply_filter(select(Interaction.id), f).subquery()
        in_window = Interaction.id.in_(select(base.c.id))

        total = session.scalar(select(func.count()).select_from(base)) or 0
        day = _day(dialect, Interaction.created_at)
        per_day: Counter[tuple[str, str]] = Counter()
        if day is not None:
            for d, kind, n in session.execute(
                select(day, Interaction.kind, func.count()).where(in_window).group_by(day, Interaction.kind)
            ):
                per_day[(str(d)[:10], kind)] += n
        else:
            for created, kind in session.execute(select(Interaction.created_at, Interaction.kind).where(in_window)):
                per_day[(created.astimezone(UTC).date().isoformat(), kind)] += 1

        kinds = dict(session.execute(select(Interaction.kind, func.count()).where(in_window).group_by(Interaction.kind)).all())
        statuses = dict(session.execute(select(Interaction.status, func.count()).where(in_window).group_by(Interaction.status)).all())
        labels = dict(
            session.execute(
                select(Interaction.label, func.count())
                .where(in_window, Interaction.label.is_not(None))
                .group_by(Interaction.label)
            ).all()
        )

        latency: dict[str, LatencySummary] = {}
        for kind in (*KINDS, None):
            query = select(Interaction.latency_ms).where(in_window, Interaction.latency_ms.is_not(None), Interaction.status == "ok")
            if kind is not None:
                query = query.where(Interaction.kind == kind)
            values = list(session.scalars(query.order_by(Interaction.latency_ms)))
            latency[kind or "all"] = LatencySummary(len(values), _percentile(values, 0.5), _percentile(values, 0.95))

        count = func.count().label("n")
        users = [
            UserCount(uid, name, n)
            for uid, name, n in session.execute(
                select(Interaction.user_id, func.max(Interaction.user_name), count)
                .where(in_window, Interaction.user_id.is_not(None))
                .group_by(Interaction.user_id)
                .order_by(count.desc(), Interaction.user_id)
                .limit(top)
            )
        ]
        channels = [
            ChannelCount(gid, cid, n)
            for gid, cid, n in session.execute(
                select(Interaction.guild_id, Interaction.channel_id, count)
                .where(in_window, Interaction.channel_id.is_not(None))
                .group_by(Interaction.guild_id, Interaction.channel_id)
                .order_by(count.desc(), Interaction.channel_id)
                .limit(top)
            )
        ]
        votes = dict(
            session.execute(
                select(Feedback.verdict, func.count())
                .join(Interaction, Interaction.id == Feedback.interaction_id)
                .where(in_window)
                .group_by(Feedback.verdict)
            ).all()
        )

    return HistoryStats(
        since=since,
        until=until,
        total=total,
        errors=statuses.get("error", 0),
        by_kind={kind: kinds.get(kind, 0) for kind in KINDS},
        per_day=[DayCount(d, kind, n) for (d, kind), n in sorted(per_day.items())],
        labels={label: labels.get(label, 0) for label in LABELS},
        latency=latency,
        busiest_users=users,
        busiest_channels=channels,
        feedback=FeedbackSummary(right=votes.get("right", 0), wrong=votes.get("wrong", 0)),
    )


@_guard
def feedback_votes(sessions: Sessions, kind: str, since: datetime | None = None) -> list[Vote]:
    """Every vote on a model's labels (the critic's), one per member and interaction, oldest
    interaction first. `since` keeps interactions with a vote cast or changed since then."""
    query = (
        select(Interaction.id, Interaction.prompt, Interaction.label, Feedback.user_id, Feedback.verdict,
               Feedback.updated_at)
        .join(Feedback, Feedback.interaction_id == Interaction.id)
        .where(Interaction.kind == kind, Interaction.status == "ok", Interaction.label.is_not(None))
        .order_by(Interaction.id, Feedback.user_id)
    )
    if since is not None:
        recent = select(Feedback.interaction_id).where(Feedback.updated_at >= since)
        query = query.where(Interaction.id.in_(recent))
    with sessions() as session:
        return [Vote(review_id=iid, text=text, served_label=label, member=int(user), verdict=verdict,
                     night=updated.astimezone(UTC).date())
                for iid, text, label, user, verdict, updated in session.execute(query) if text.strip()]


def settle_feedback(sessions: Sessions, kind: str, *, member_cap: float,
                    since: datetime | None = None) -> Settlement:
    """The votes on a model's labels settled into weighted labelled reviews (`history.votes.settle`:
    majority per review, trust, a cap per member and night), with what was done and why."""
    return settle(feedback_votes(sessions, kind, since), member_cap=member_cap)


# --- deleting ----------------------------------------------------------------------------


@_guard
def forget_user(sessions: Sessions, user_id: int) -> dict[str, int]:
    """Delete everything a person left: their interactions (with every vote on them) and
    their votes on other interactions. Returns the counts deleted."""
    user = _snowflake("user id", user_id)
    with sessions() as session, session.begin():
        # Deletes first: on SQLite the first write takes the lock, so nothing slips in between.
        own_votes = session.execute(delete(Feedback).where(Feedback.user_id == user)).rowcount
        theirs = select(Interaction.id).where(Interaction.user_id == user)
        votes_on_theirs = session.execute(delete(Feedback).where(Feedback.interaction_id.in_(theirs))).rowcount
        interactions = session.execute(delete(Interaction).where(Interaction.user_id == user)).rowcount
    return {"interactions": interactions, "feedback": own_votes + votes_on_theirs}


@_guard
def purge_older_than(sessions: Sessions, days: float, *, now: datetime | None = None) -> dict[str, int]:
    """Delete interactions (and the votes on them) older than `days`; returns the counts."""
    if days is None or days < 0 or not math.isfinite(days):
        raise HistoryError(f"days must be a positive number, not {days!r}")
    cutoff = (now or utcnow()) - timedelta(days=days)
    old = select(Interaction.id).where(Interaction.created_at < cutoff)
    with sessions() as session, session.begin():
        votes = session.execute(delete(Feedback).where(Feedback.interaction_id.in_(old))).rowcount
        interactions = session.execute(delete(Interaction).where(Interaction.created_at < cutoff)).rowcount
    return {"interactions": interactions, "feedback": votes}
