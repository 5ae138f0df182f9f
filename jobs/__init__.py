"""Playbill's scheduled jobs: nightly retraining from checkpoints, history purge, backups.

`jobs.scheduler` builds the APScheduler 3 scheduler (persistent job store in the history
database); `jobs.retrain` is the retrain job (training in a spawned process, evaluation,
promotion if no worse); `jobs.maintenance` holds the purge and backup jobs. Importing this
package never imports TensorFlow.
"""
