"""Settings: embedded defaults < config.toml < PLAYBILL_* environment variables.

Every key is documented in config.example.toml. The Discord token is deliberately not a
setting: it is read from the environment only (see `discord_token`), so it can never come
from a file, be printed with the settings, or be stored.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

TOKEN_ENV_VARS = ("PLAYBILL_DISCORD_TOKEN", "DISCORD_TOKEN")
MODEL_SECTIONS = frozenset({"sentiment", "scene"})  # the sections named after a model (engine.models.MODEL_NAMES)
MOVED_KEYS = (("max_review_chars", "sentiment", "max_chars"), ("max_prompt_chars", "scene", "max_prompt_chars"))
# [jobs] keys that moved to the model's own section: (old [jobs] key, section, new key). Still
# read, with a one-line deprecation warning naming the new key.
DEPRECATED_JOBS_KEYS = tuple((f"{old}_{model}", model, old) for model in sorted(MODEL_SECTIONS)
                             for old in ("retrain_epochs", "gate_tolerance"))
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_config_file: Path | None = None  # set only while load_settings builds a Settings


class SettingsError(ValueError):
    """Settings that cannot be used, said in one line naming the key (and the closest valid one)."""


class Section(BaseModel):
    """A [section] of config.toml: a key it does not have is refused, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class SentimentSettings(Section):
    """The critic: training defaults for `playbill train sentiment` and the nightly job, and what
    it accepts. The engine's spec turns this section into its config and limits (config_from,
    limits_from), so a key here is read by the field of the same name there."""

    profile: str = "default"  # the engine's critic profiles: quick, default, wide_deep
    epochs: int = Field(8, ge=1, le=100)
    batch_size: int = Field(64, ge=1, le=4096)
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    patience: int = Field(2, ge=0, le=100)
    seed: int = 1337
    max_chars: int | None = Field(None, ge=1)  # longest review judged; None: the engine's own (was [bot] max_review_chars)
    # The nightly retrain and its gate (were [jobs] retrain_epochs_sentiment, gate_tolerance_sentiment)
    retrain_epochs: int = Field(1, ge=1)  # epochs each nightly retrain adds
    gate_tolerance: float = Field(0.003, ge=0.0, le=1.0)  # accuracy the validation split may lose


class SceneSettings(Section):
    """The playwright: training and generation defaults, and what it accepts (read by the
    engine's spec like [sentiment]; the engine checks the default temperature and length too)."""

    profile: str = "default"
    corpus: Path | None = None  # None: Tiny Shakespeare from the data directory
    epochs: int | None = Field(None, ge=1, le=1000)  # None: the profile's own budget
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    seed: int = 1337
    default_length: int = Field(400, ge=1, le=10_000)
    max_length: int = Field(2000, ge=1, le=100_000)
    max_prompt_chars: int | None = Field(None, ge=1)  # longest prompt; None: the engine's own (was [bot] max_prompt_chars)
    temperature: float = 0.8  # the engine's range applies (engine.scene SceneLimits)
    top_k: int | None = Field(None, ge=1)
    stop_at_boundary: bool = True  # end replies at a speech/sentence end, never mid-word
    stream_chunk_chars: int = Field(40, ge=1, le=10_000)  # characters per streamed piece
    # How generation runs the model: "auto" (int8 where it is available and faster: today every
    # batch size; else float32), "float32" (numpy, the reference) or "int8" (LiteRT, int8 weights).
    backend: Literal["auto", "float32", "int8"] = "auto"
    int8_threads: int = Field(0, ge=0, le=16)  # threads of each int8 interpreter; 0: by model size
    # The nightly retrain and its gate (were [jobs] retrain_epochs_scene, gate_tolerance_scene)
    retrain_epochs: int = Field(1, ge=1)  # epochs each nightly retrain adds
    gate_tolerance: float = Field(0.01, ge=0.0)  # val_loss (nats/char) the corpus's validation block may gain


class BotSettings(Section):
    """The Discord bot."""

    dev_guild_id: int | None = None  # sync commands to this guild only; None: sync nothing on start
    owner_ids: list[int] = Field(default_factory=list)
    cooldown_seconds: float = Field(3.0, ge=0.0)
    inference_queue_size: int = Field(64, ge=1)
    stream_edit_interval: float = Field(1.0, gt=0.0)
    max_batch_size: int = Field(32, ge=1, le=1024)  # sentiment requests answered by one predict call
    batch_wait_ms: float = Field(5.0, ge=0.0, le=1000.0)  # how long the first request waits for company
    scene_workers: int = Field(2, ge=1, le=16)  # scenes generated at the same time
    model_refresh_seconds: float = Field(30.0, gt=0.0)  # how often the bot looks for a newly promoted model
    history_wait_seconds: float = Field(2.0, gt=0.0)  # longest a reply waits for its history row to be written
    confirm_seconds: float = Field(120.0, gt=0.0)  # how long a /forget-me question can be confirmed
    connect_retries: int = Field(5, ge=0, le=100)  # retries of the first connection to Discord (5xx, unreachable)
    connect_backoff_seconds: float = Field(2.0, gt=0.0)  # the first retry's wait, doubled each time
    connect_backoff_max_seconds: float = Field(60.0, gt=0.0)  # the longest wait between two retries
    # Sharding: the total number of shards across every process, and the ones this process runs
    # (None: all of them). Both None: one process, as many shards as Discord recommends.
    shard_count: int | None = None
    shard_ids: Annotated[list[int] | None, NoDecode] = None  # env/CLI: "0,1" or "0-3"
    # Loaded into another bot (`await bot.load_extension("playbill.bot")`), or run alone:
    # command_group puts every Playbill command under one (e.g. "playbill": /playbill review-sentiment),
    # for a host that already has a command of the same name; guild_ids offers the commands in
    # those servers only (None: every server the bot is in).
    command_group: str | None = None
    guild_ids: Annotated[list[int] | None, NoDecode] = None  # env: "123,456"

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_list(cls, value: Any) -> Any:
        return parse_shard_ids(value) if isinstance(value, str) else value

    @field_validator("guild_ids", mode="before")
    @classmethod
    def _guild_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not all(p.isdigit() for p in parts):
                raise ValueError(f"server ids are numbers separated by commas, like 123,456 (not {value!r})")
            return [int(p) for p in parts]
        return value

    @field_validator("command_group")
    @classmethod
    def _command_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[-_a-z0-9]{1,32}", value):
            raise ValueError("a Discord command name: 1 to 32 lowercase letters, digits, - or _")
        return value

    @model_validator(mode="after")
    def _shards_fit(self) -> BotSettings:
        check_shards(self.shard_count, self.shard_ids)
        return self


def parse_shard_ids(text: str) -> list[int]:
    """`"0,1"`, `"2"` or `"0-3"` (ranges included) -> the shard ids, in order."""
    ids: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        first, dash, last = part.partition("-")
        if not first.strip().isdigit() or (dash and not last.strip().isdigit()):
            raise ValueError(f"shard ids are numbers or ranges separated by commas, like 0,1 or 0-3 (not {text!r})")
        ids.extend(range(int(first), int(last) + 1) if dash else [int(first)])
    return ids


def check_shards(count: int | None, ids: list[int] | None) -> None:
    """The one rule for shard settings (config, environment and `playbill run` options alike)."""
    if count is not None and not 1 <= count <= 100_000:
        raise ValueError(f"shard_count must be a whole number from 1 (got {count})")
    if ids is None:
        return
    if count is None:
        raise ValueError("shard_ids needs shard_count too: the total number of shards across all processes")
    if not ids:
        raise ValueError("shard_ids is empty: name at least one shard, or leave it unset to run all of them")
    wrong = sorted({i for i in ids if not 0 <= i < count})
    if wrong:
        raise ValueError(f"shard ids run from 0 to {count - 1} with shard_count {count} (not {', '.join(map(str, wrong))})")
    if len(set(ids)) != len(ids):
        raise ValueError(f"shard ids are named twice in {','.join(map(str, ids))}")


class JobsSettings(Section):
    """APScheduler jobs run inside `playbill run` or `playbill scheduler`."""

    timezone: str = "UTC"
    retrain_cron: str = "0 3 * * *"
    purge_cron: str = "30 4 * * *"
    backup_cron: str = "0 4 * * *"
    misfire_grace_hours: float = Field(6.0, gt=0.0)
    extra_corpus_dir: Path | None = None  # None: <home>/corpus
    keep_versions: int = Field(5, ge=1)
    backups_keep: int = Field(7, ge=1)
    history_retention_days: int = Field(365, ge=1)
    feedback_holdout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    feedback_member_cap: float = Field(20.0, gt=0.0)  # what one member's votes weigh together per night
    retrain_timeout_hours: float = Field(6.0, gt=0.0)
    training_niceness: int = Field(10, ge=0, le=19)
    # How often a process waiting for the job schedule tries to take it, and its holder checks its
    # lock and takes /admin retrain requests from other processes (failover: at most two polls).
    leader_poll_seconds: float = Field(5.0, gt=0.0, le=60.0)
    # After a first start on the quick models, train both on to their full default profile in a
    # spawned, niced process while serving (jobs/warmup.py); stages of this many seconds, each gated.
    warmup: bool = True
    warmup_stage_seconds: float = Field(300.0, gt=0.0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/Paris' or 'UTC')") from None
        return value

    @field_validator("retrain_cron", "purge_cron", "backup_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"bad cron expression {value!r} (minute hour day month weekday): {exc}") from None
        return value


class Settings(BaseSettings):
    """All of Playbill's settings. State lives under `home`; datasets under `data_dir`."""

    model_config = SettingsConfigDict(
        env_prefix="PLAYBILL_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Path("var")
    data_dir: Path | None = None  # None: <home>/data
    database_url: str | None = None  # None: sqlite:///<home>/playbill.db
    log_level: str = "INFO"  # one of LOG_LEVELS, any case
    # Where Discord is: its REST API and its gateway. Change them only for a proxy or a test
    # stand-in (the defaults are discord.py's own: https://discord.com/api/v10, wss://gateway.discord.gg/).
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None

    sentiment: SentimentSettings = Field(default_factory=SentimentSettings)
    scene: SceneSettings = Field(default_factory=SceneSettings)
    bot: BotSettings = Field(default_factory=BotSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("home", "data_dir")
    @classmethod
    def _a_folder(cls, value: Path | None) -> Path | None:
        """A folder, or a path to create one at; a file there is named as such (a common slip:
        PLAYBILL_DATA_DIR=/data/shakespeare.txt instead of /data)."""
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{value} is a file, not a folder; give the folder that holds it ({value.parent})")
        return value

    @model_validator(mode="before")
    @classmethod
    def _move_old_limit_keys(cls, data: Any) -> Any:
        """[bot] max_review_chars / max_prompt_chars (before the limits moved to the model's own
        section) still work: moved to [sentiment] max_chars / [scene] max_prompt_chars."""
        if not isinstance(data, dict) or not isinstance(data.get("bot"), dict):
            return data
        bot = dict(data["bot"])
        for old, section, new in MOVED_KEYS:
            if old in bot:
                value = bot.pop(old)
                target = dict(data.get(section) or {})
                target.setdefault(new, value)
                data = {**data, section: target}
        return {**data, "bot": bot}

    @model_validator(mode="before")
    @classmethod
    def _move_deprecated_jobs_keys(cls, data: Any) -> Any:
        """[jobs] retrain_epochs_<model> / gate_tolerance_<model> (before they moved to the model's
        own section) still work, with one warning line each: the new key wins when both are set."""
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
            return data
        jobs = dict(data["jobs"])
        for old, section, new in DEPRECATED_JOBS_KEYS:
            if old in jobs:
                value = jobs.pop(old)
                target = dict(data.get(section) or {})
                target.setdefault(new, value)
                data = {**data, section: target}
                _deprecated(f"[jobs] {old} is deprecated; use [{section}] {new} "
                            f"(or PLAYBILL_{section.upper()}__{new.upper()})")
        return {**data, "jobs": jobs}

    @model_validator(mode="after")
    def _fill_derived_paths(self) -> Settings:
        if self.data_dir is None:
            self.data_dir = self.home / "data"
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.home / 'playbill.db'}"
        return self

    def shown(self) -> dict[str, Any]:
        """The settings as plain JSON values, fit to print: passwords in URLs are ***."""
        return _mask_secrets(self.model_dump(mode="json"))

    def section(self, model: str) -> dict[str, Any]:
        """A model's own section (`[sentiment]`, `[scene]`) as plain values: what the engine's spec
        turns into that model's config and limits (`config_from`, `limits_from`)."""
        if model not in MODEL_SECTIONS:
            raise ValueError(f"the settings have no model section {model!r}")
        return getattr(self, model).model_dump()

    # where the state lives
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    @property
    def spool_dir(self) -> Path:
        """History rows waiting for the database during an outage (playbill.history.spool)."""
        return self.home / "spool"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def corpus_dir(self) -> Path:
        return self.jobs.extra_corpus_dir or self.home / "corpus"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_config_file))
        return tuple(sources)


def _deprecated(message: str) -> None:
    """One warning line (stderr, or the log once logging is set up) for a setting that moved."""
    import logging

    logging.getLogger("playbill.settings").warning("%s", message)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The TOML file to read: --config, else $PLAYBILL_CONFIG, else ./config.toml."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("PLAYBILL_CONFIG", "config.toml"))


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build the settings; a missing ./config.toml is fine, a missing explicit file is not."""
    path = config_path(config_file)
    explicit = config_file is not None or "PLAYBILL_CONFIG" in os.environ
    if explicit and not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.is_file():
        _refuse_token_in_file(path)
    global _config_file
    _config_file = path if path.is_file() else None
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc, _config_file)) from None
    finally:
        _config_file = None


def _one_line(exc: ValidationError, config_file: Path | None) -> str:
    """pydantic's report cut to its first problem, in one line: which key, where it came from,
    what is wrong, and the closest valid key or value."""
    errors = exc.errors()
    first = errors[0]
    loc = [str(part) for part in first["loc"]]
    key = _key_name(loc)
    where = _where(loc, config_file)
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(loc[-1], _valid_keys(loc[:-1]), n=1)
        line = f"unknown setting {key}{where}" + (f"; did you mean {_key_name([*loc[:-1], close[0]])}?" if close else "")
    else:
        message = first["msg"].removeprefix("Value error, ")
        line = f"{key}{where}: {message} (got {first.get('input')!r})"
        choices = {choice.lower(): choice for choice in _choices(loc, message)}
        close = difflib.get_close_matches(str(first.get("input", "")).lower(), list(choices), n=1)
        if close:
            line += f"; did you mean {choices[close[0]]!r}?"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return line


def _key_name(loc: list[str]) -> str:
    return f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else loc[0]


def _where(loc: list[str], config_file: Path | None) -> str:
    variable = "PLAYBILL_" + "__".join(loc).upper()
    if any(name.upper() == variable for name in os.environ):
        return f" (from ${variable})"
    return f" (in {config_file})" if config_file is not None else ""


def _valid_keys(loc: list[str]) -> list[str]:
    model: Any = Settings
    for part in loc:
        field = model.model_fields.get(part)
        model = getattr(field, "annotation", None) if field is not None else None
        if not isinstance(model, type) or not issubclass(model, BaseModel):
            return []
    return list(model.model_fields)


def _choices(loc: list[str], message: str) -> list[str]:
    if loc == ["log_level"]:
        return list(LOG_LEVELS)
    return re.findall(r"'([^']+)'", message) if "Input should be" in message else []


_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)(?P<secret>[^@/\s]+)(?P<tail>@)", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|secret|token)=)(?P<secret>[^&\s]+)(?P<tail>)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """A string with any password in a URL (user:PASSWORD@, ?password=) replaced by ***."""
    for pattern in (_URL_PASSWORD, _QUERY_PASSWORD):
        text = pattern.sub(lambda m: f"{m['head']}***{m['tail']}", text)
    return text


def _mask_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_secrets(v) for v in value]
    return mask_secrets(value) if isinstance(value, str) else value


def _refuse_token_in_file(path: Path) -> None:
    import tomllib

    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from None
    flat = {k.lower() for k in data} | {k.lower() for v in data.values() if isinstance(v, dict) for k in v}
    if flat & {"token", "discord_token", "bot_token"}:
        raise ValueError(
            f"{path} contains a Discord token; tokens come from the environment only "
            f"({' or '.join(TOKEN_ENV_VARS)}). Remove it from the file."
        )


def discord_token() -> SecretStr | None:
    """The bot token from the environment, or None. Never read from a file."""
    for name in TOKEN_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return SecretStr(value)
    return None
