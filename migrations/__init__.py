"""Playbill's Alembic migrations for the history database, shipped inside the package.

An importable package so that `history.db` finds this folder through importlib.resources,
from a source checkout and from an installed wheel alike (env.py, script.py.mako, versions/).
"""
