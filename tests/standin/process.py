"""Run a bot in a separate process against a stand-in (as `playbill run` will be in e2e tests).

The process gets ``StandIn.environment()`` (token and the two base URLs) on top of the caller's
environment; what it prints is kept so a failing test can show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from .server import StandIn


class BotProcess:
    """A child process with its output collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        """SIGKILL: the process dies without cleaning up (for failover tests)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (SIGKILL after ``timeout``); the exit status."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except asyncio.TimeoutError:
                self.kill()
                await self.process.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._reader, 5)
        return self.process.returncode  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def bot_process(
    standin: StandIn, *argv: str, env: Mapping[str, str] | None = None, cwd: str | Path | None = None
) -> AsyncIterator[BotProcess]:
    """``async with bot_process(standin, "playbill", "run", ...) as bot:`` - stopped on exit."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env={**os.environ, **(env or {}), **standin.environment()},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    bot = BotProcess(process)
    try:
        yield bot
    finally:
        await bot.stop()
