"""Playbill, one installed package whose parts are the repository's folders.

`playbill.engine` (engine/) holds the models, `playbill.history` (history/) the database,
`playbill.jobs` (jobs/) the scheduled work, `playbill.bot` (bot/) the Discord app and the console,
`playbill.migrations` (migrations/) the schema; here live the leaves `playbill.settings` and
`playbill.logs` and the top, `playbill.cli`. pyproject.toml maps the folders and its import
contracts keep the arrows pointing down.
"""

__version__ = "0.2.0"
