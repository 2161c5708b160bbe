"""Exports of a finished job to other tools (pure: no Django). `mlflow_push.push()` sends a plain
spec and the metric history to an MLflow tracking store; the Celery task that calls it is
workers/adapters/export_tasks.py, the rules it runs under are webapp/exports/services.py."""
