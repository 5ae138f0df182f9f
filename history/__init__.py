"""The history database: what people asked, what the models answered, feedback, training runs.

- `history.db`: make_engine, make_session_factory, schema_status, require_current_schema,
  ensure_schema, upgrade/downgrade, open_history.
- `history.api`: record_interaction, record_feedback, record_training_run,
  finish_training_run, query_interactions, history_stats, forget_user, feedback_votes,
  settle_feedback, purge_older_than (plain functions taking a session factory).
- `history.votes`: settle (votes -> weighted labelled reviews: majority, trust, cap per member and night).
- `history.backup.backup_sqlite`; `history.errors.HistoryError`, `SchemaOutdated`.

Imports nothing of Playbill's but this package. See docs/history.md.
"""
