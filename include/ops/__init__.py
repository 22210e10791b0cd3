"""Operations: data retention, database backups and disaster-recovery drills.

``retention``, ``backup`` and ``drill`` hold the logic of the DAGs
apply_retention, backup_database and drill_disaster_recovery; ``python -m
include.ops`` runs the same functions for an operator (see
docs/runbooks/disaster-recovery.md). Like the rest of include/, nothing
here imports Airflow.
"""
