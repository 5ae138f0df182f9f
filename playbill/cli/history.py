"""CLI commands for this feature (filled in by its issue)."""

from __future__ import annotations

import argparse

from playbill.cli.common import CommandGroups


def register(commands: argparse._SubParsersAction, groups: CommandGroups) -> None:
    """Add this feature's subcommands."""
