"""Playbill's Discord app and console. As a discord.py extension, in any `commands.Bot`:

    await bot.load_extension("playbill.bot")

(`setup` and `teardown` below; what they start and stop is in playbill.bot.extension).
`configure(bot, config=...)` before it chooses the settings file; README "Use Playbill in your
own bot". The modules are imported when the extension loads, not with this package.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

_KEPT = "_playbill_modules"  # on the bot: Playbill's modules as they were before an unload


async def setup(bot: Any) -> None:
    _put_back(getattr(bot, _KEPT, {}))
    from playbill.bot.extension import setup as start

    await start(bot)


async def teardown(bot: Any) -> None:
    """discord.py deletes an unloaded extension's submodules from sys.modules right after this,
    so that a later load imports them anew. Playbill's modules are shared with the rest of the
    process (the errors the CLI and the console catch, the classes of objects still referenced,
    a running console), so they are kept: put back once the unload is done, and at the next
    load at the latest (a `reload_extension` runs setup again; it does not re-import the code)."""
    from playbill.bot.extension import teardown as stop

    try:
        await stop(bot)
    finally:
        kept = {name: module for name, module in sys.modules.items()
                if name == __name__ or name.startswith(__name__ + ".")}
        setattr(bot, _KEPT, kept)
        asyncio.get_running_loop().call_soon(_put_back, kept)


def _put_back(modules: dict[str, Any]) -> None:
    for name, module in modules.items():
        sys.modules.setdefault(name, module)


def configure(bot: Any, **options: Any) -> None:
    """Choose what the next `load_extension("playbill.bot")` starts with (settings, config path,
    whether to run the nightly jobs or sync): playbill.bot.extension.configure."""
    from playbill.bot.extension import configure as choose

    choose(bot, **options)
