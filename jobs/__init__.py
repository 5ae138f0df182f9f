"""Playbill's scheduled and background jobs: nightly retraining from checkpoints, the warm-up,
history purge, backups.

`jobs.scheduler` builds the APScheduler 3 scheduler (persistent job store in the history
database) and `jobs.leader` elects the one process that runs it; `jobs.retrain` is the retrain
job and `jobs.warmup` the first start and warm-up, both deciding through the one promotion
procedure (`jobs.promotion`, judged by `jobs.gate`) and training in a spawned process
(`jobs.runner`); `jobs.maintenance` holds the purge and backup jobs. Importing this package
never imports TensorFlow.
"""
