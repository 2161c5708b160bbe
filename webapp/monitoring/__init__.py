"""Operator monitoring: the Prometheus `/metrics` endpoint, the load balancer's `/healthz` and
`/readyz`, and the JSON log formatter (docs/operations.md, "Monitoring").

- `collector.py`: what the database knows (jobs by status, queue wait, workers, GPUs), read at
  scrape time, so any number of web processes report the same values and nothing is counted twice;
- `recorder.py`: what only the processes see as it happens (latencies, websocket connections,
  ingest durations, finished jobs), kept in Redis, which every web and worker process reaches;
- `views.py`: `/metrics` (a bearer token or a staff session);
- `health.py`: `/healthz` and `/readyz`, answered at the ASGI layer, before Django;
- `logs.py`: `TRAINYARD_LOG_FORMAT=json`.
"""
