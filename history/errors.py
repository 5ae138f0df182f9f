"""Errors a person can act on. Their messages are shown as they are (the CLI prints one line)."""


class HistoryError(Exception):
    """Base: the history database cannot do what was asked; the message says why and what to do."""


class SchemaOutdated(HistoryError):
    """The database schema is not the one this code expects (run `playbill db upgrade`)."""


class DatabaseBusy(HistoryError):
    """Another process held the database lock for longer than the busy timeout."""
