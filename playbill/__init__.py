"""Playbill: settings and the `playbill` command line; the parts live in engine/, history/, bot/, jobs/."""

__version__ = "0.1.0"
