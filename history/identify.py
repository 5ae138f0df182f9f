"""Discord's identify limit, shared by every process on one PostgreSQL database.

Discord lets an application's shards IDENTIFY once per `max_concurrency` bucket
(`shard_id % max_concurrency`) every 5 seconds, counted over the whole application; a faster
IDENTIFY is refused (INVALID_SESSION) and that shard starts again. discord.py spaces the shards
of one process; processes started together would each think they are first. So, on a server
database, a shard takes its turn here before it identifies (`IdentifyTurns.take`, called from
the bot's `before_identify_hook`):

- the bucket's row (`identify_turns`, created by migration 0006) is locked with
  SELECT ... FOR UPDATE, so one shard of that bucket at a time, on any host, is in its turn;
- it waits until `interval + margin` seconds have passed since the bucket's last IDENTIFY
  (both times by the database's clock, so the hosts' clocks do not matter), writes the new
  time and commits; the caller sends its IDENTIFY at once.

The margin covers the moment between the commit and the IDENTIFY reaching Discord. A turn that
cannot be had (the database unreachable, a row lock held past `lock_timeout_s`) is
`IdentifyTurnUnavailable`: the caller falls back to discord.py's own spacing.
"""

from __future__ import annotations

import os
import socket
import time

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from playbill.history.db import make_engine

IDENTIFY_INTERVAL_S = 5.0  # Discord: one IDENTIFY per bucket per 5 s
MARGIN_S = 1.0  # between the commit here and the IDENTIFY reaching Discord
LOCK_TIMEOUT_S = 60.0  # a turn held longer than this (a stalled process) is given up on

_TAKE_ROW = text("INSERT INTO identify_turns (bucket) VALUES (:bucket) ON CONFLICT (bucket) DO NOTHING")
_LOCK_ROW = text("SELECT EXTRACT(EPOCH FROM clock_timestamp() - last_at) FROM identify_turns "
                 "WHERE bucket = :bucket FOR UPDATE")
_MARK = text("UPDATE identify_turns SET last_at = clock_timestamp(), taken_by = :by WHERE bucket = :bucket")


class IdentifyTurnUnavailable(Exception):
    """No turn could be had from the database (the line says why)."""


class IdentifyTurns:
    """Turns to IDENTIFY, one per bucket every `interval` seconds, across all processes of one
    PostgreSQL database. `take` blocks (call it in a thread)."""

    def __init__(self, url: str, *, interval: float = IDENTIFY_INTERVAL_S, margin: float = MARGIN_S,
                 lock_timeout: float = LOCK_TIMEOUT_S, engine: Engine | None = None) -> None:
        self.interval, self.margin, self.lock_timeout = interval, margin, lock_timeout
        self.engine = engine if engine is not None else make_engine(url, poolclass=NullPool)
        self.whoami = f"{os.getpid()}@{socket.gethostname()}"

    def take(self, bucket: int, who: str = "") -> float:
        """Wait for `bucket`'s turn and mark it taken now; the seconds waited. The IDENTIFY must
        follow at once."""
        started = time.monotonic()
        try:
            with self.engine.connect() as conn:
                with conn.begin():  # the row exists for everyone; the turn itself is the next transaction
                    conn.execute(_TAKE_ROW, {"bucket": bucket})
                with conn.begin():
                    conn.execute(text(f"SET LOCAL lock_timeout = '{int(self.lock_timeout * 1000)}ms'"))
                    elapsed = conn.execute(_LOCK_ROW, {"bucket": bucket}).scalar()
                    if elapsed is not None:
                        wait = self.interval + self.margin - float(elapsed)
                        if wait > 0:
                            time.sleep(wait)  # holding the row: the bucket's next shard waits behind
                    conn.execute(_MARK, {"bucket": bucket, "by": f"{who}, {self.whoami}".lstrip(", ")[:255]})
        except SQLAlchemyError as exc:
            raise IdentifyTurnUnavailable(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") \
                from None
        return time.monotonic() - started

    def close(self) -> None:
        self.engine.dispose()
