"""Run the stand-in by itself: ``python -m tests.standin --port 8765 --guilds 4``.

Prints what a bot process needs (token, REST base, gateway URL) and serves until interrupted.
``GET /_standin/state`` shows sessions, commands, calls and interactions;
``POST /_standin/interactions {"guild_id": ..., "command": "review", "options": {...}}`` sends one.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from .server import StandIn


async def serve(args: argparse.Namespace) -> None:
    async with StandIn(guilds=args.guilds, port=args.port, token=args.token, shards=args.shards) as standin:
        print(json.dumps({
            **standin.environment(),
            "guilds": [str(g) for g in standin.guilds],
            "application_id": str(standin.application_id),
            "state": standin.base_url + "/_standin/state",
        }, indent=2), flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.standin", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--guilds", type=int, default=2)
    parser.add_argument("--shards", type=int, default=1, help="what GET /gateway/bot recommends")
    parser.add_argument("--token", default=None, help="the bot token it accepts (default: a random one)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
