"""Django-aware worker adapters: Celery tasks, the Reporter, worker registration and heartbeat.

Thin: they load rows, build plain specs, call the pure runtime (workers.training, workers.hf,
workers.datasets, workers.serving) and record the result through the web tier's lifecycle verbs.
"""
