"""The history schema: interactions, feedback on them, and training runs.

SQLAlchemy 2 typed ORM. Changing anything here needs a migration (see docs/history.md);
a test fails while the models and migrations/ disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from playbill.engine.models import MODEL_NAMES

KINDS = MODEL_NAMES  # an interaction's kind is the model that answered it
SOURCES = ("discord", "console", "cli")
LABELS = ("positive", "negative")
STATUSES = ("ok", "error")
VERDICTS = ("right", "wrong")
RUN_STATUSES = ("running", "promoted", "rejected", "failed")

# Every constraint and index gets a predictable name, so migrations can refer to them
# (SQLite batch mode needs names to drop or alter a constraint).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC datetime in Python, on every backend.

    SQLite has no time zones: values are stored as naive UTC text (which sorts correctly);
    PostgreSQL stores timestamptz. Naive datetimes passed in are taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...], *, nullable: bool = False) -> CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    sql = f"{column} IN ({allowed})"
    if nullable:
        sql = f"{column} IS NULL OR {sql}"
    return CheckConstraint(sql, name=column)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Interaction(Base):
    """One request to a model and what it answered (or the error it met)."""

    __tablename__ = "interactions"
    __table_args__ = (
        _one_of("kind", KINDS),
        _one_of("source", SOURCES),
        _one_of("status", STATUSES),
        _one_of("label", LABELS, nullable=True),
        Index("ix_interactions_created_at", "created_at"),
        Index("ix_interactions_user_id_created_at", "user_id", "created_at"),
        Index("ix_interactions_guild_id_created_at", "guild_id", "created_at"),
        Index("ix_interactions_kind_created_at", "kind", "created_at"),
        Index("ix_interactions_channel_id", "channel_id"),
        Index("ix_interactions_request_key", "request_key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16), default="discord")
    # Discord snowflakes fit in a signed 64-bit integer; None outside Discord.
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    user_name: Mapped[str | None] = mapped_column(String(100))
    prompt: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    output: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(16))
    probability: Mapped[float | None] = mapped_column(Float)  # P(positive) for sentiment
    model_name: Mapped[str | None] = mapped_column(String(32))
    model_version: Mapped[str | None] = mapped_column(String(64))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(8), default="ok")
    error: Mapped[str | None] = mapped_column(Text)
    # The writer's own key for this row (history.spool): a row written again after an outage
    # (replayed from the spool) is found by it instead of being stored twice. None: written once.
    request_key: Mapped[str | None] = mapped_column(String(36))

    feedback: Mapped[list[Feedback]] = relationship(
        back_populates="interaction", cascade="all, delete-orphan", passive_deletes=True
    )


class Feedback(Base):
    """One person's verdict on one interaction; voting again changes it."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("interaction_id", "user_id"),
        _one_of("verdict", VERDICTS),
        Index("ix_feedback_user_id", "user_id"),
        Index("ix_feedback_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    interaction_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("interactions.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigInteger)
    verdict: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    interaction: Mapped[Interaction] = relationship(back_populates="feedback")


class TrainingRun(Base):
    """One (re)training of a model: where it started, what it measured, whether it was promoted."""

    __tablename__ = "training_runs"
    __table_args__ = (
        _one_of("status", RUN_STATUSES),
        Index("ix_training_runs_model_name_started_at", "model_name", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    checkpoint_from: Mapped[str | None] = mapped_column(Text)
    epochs: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    candidate_metric: Mapped[float | None] = mapped_column(Float)
    current_metric: Mapped[float | None] = mapped_column(Float)
    promoted: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)


class ScheduleHolder(Base):
    """Who holds the job schedule on a server database (one row, rewritten by each new holder).

    Leadership itself is a PostgreSQL advisory lock on the holder's own connection
    (jobs/leader.py); this row only names it. It counts only while the connection it names
    (`backend_pid`) still holds the lock, so a killed holder's row is never mistaken for a live one.
    """

    __tablename__ = "schedule_holder"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    backend_pid: Mapped[int] = mapped_column(Integer)


class JobRequest(Base):
    """A job asked to run now (`/admin retrain` on any process); the schedule's holder takes it."""

    __tablename__ = "job_requests"
    __table_args__ = (Index("ix_job_requests_taken_at", "taken_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    requested_by: Mapped[str] = mapped_column(String(255))  # "pid@host"
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(Text)  # "queued", or why it was not


# --- the model store (history/model_store.py): published model versions in the database -----


class StoredModelVersion(Base):
    """One published version of a model: its metadata here, its files in `model_files`."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_name", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)  # the version's metadata.json
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by: Mapped[str] = mapped_column(String(255))  # "pid@host"


class StoredModelFile(Base):
    """One file of a published version, with the SHA-256 it was published with."""

    __tablename__ = "model_files"

    version_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("model_versions.id", ondelete="CASCADE"),
                                            primary_key=True)
    path: Mapped[str] = mapped_column(String(255), primary_key=True)  # relative, "/"-separated
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class CurrentModel(Base):
    """The version each model serves: one row per model, changed in the promotion's transaction."""

    __tablename__ = "model_current"

    model_name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer)  # +1 per promotion or rollback
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelPromotion(Base):
    """One promotion (or rollback) step: what became current, what was before, why, by whom."""

    __tablename__ = "model_promotions"
    __table_args__ = (Index("ix_model_promotions_model_name_id", "model_name", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(64))
    previous: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    promoted_by: Mapped[str] = mapped_column(String(255))  # "pid@host"


class IdentifyTurn(Base):
    """Discord's identify limit across processes (history/identify.py): one row per
    max_concurrency bucket with the last IDENTIFY's time by the database's clock."""

    __tablename__ = "identify_turns"

    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # shard_id % max_concurrency
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    taken_by: Mapped[str | None] = mapped_column(String(255))  # "shard N, pid@host"
