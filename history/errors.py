"""Errors a person can act on. Their messages are shown as they are (the CLI prints one line)."""


class HistoryError(Exception):
    """Base: the history database cannot do what was asked; the message says why and what to do."""


class SchemaOutdated(HistoryError):
    """The database schema is not the one this code expects (run `playbill db upgrade`)."""


class RetryLater(HistoryError):
    """Nothing was written, and nothing is wrong with the row: keep it and write it again soon."""


class DatabaseBusy(RetryLater):
    """Another process held the database lock for longer than the busy timeout."""


class SpoolUnavailable(RetryLater):
    """Neither the database nor the local spool can take a row now (say, a full disk)."""


class DamagedDatabase(HistoryError):
    """The database file is damaged (corrupt pages, a lost schema record): restore a backup."""
