"""What the database knows, as Prometheus metrics computed when `/metrics` is scraped.

A custom Collector, not counters kept by a process: every web process answers the same numbers
from the same rows, so nothing is counted twice however many serve `/metrics`, and a restart
loses nothing. A handful of small queries per scrape.

- jobs by status; queued jobs already dispatched to a worker; the oldest queued job's age;
- queue wait (submission to first start) of the jobs that started in the last
  `TRAINYARD_METRICS_WINDOW_SECONDS`, as a gauge histogram: it describes that window, so it may
  go down (old jobs leave it; a deleted job leaves it), unlike a counter-based histogram;
- workers online / draining / busy / silent, by the one liveness rule (webapp/cluster/models.py),
  per queue they consume; each online worker's heartbeat age on the database's clock;
- per GPU of each live worker, its last heartbeat's telemetry: memory used and total,
  utilisation, temperature;
- datasets being ingested.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DateTimeField, DurationField, ExpressionWrapper, F, Min
from django.db.models.functions import Now
from django.utils import timezone
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily

from webapp.cluster.models import Worker
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job

QUEUE_WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600)


def known_queues() -> list[str]:
    """The queues tasks are routed to (settings.CELERY_TASK_ROUTES), not the per-worker ones."""
    queues = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values() if "queue" in route}
    queues.add(settings.CELERY_TASK_DEFAULT_QUEUE)
    return sorted(queues)


class DatabaseCollector:
    def collect(self):
        yield from self.jobs()
        yield self.queue_wait()
        yield from self.workers()
        yield from self.gpus()
        ingesting = GaugeMetricFamily("trainyard_datasets_ingesting", "Datasets being read into their cache")
        ingesting.add_metric([], Dataset.objects.filter(status=Dataset.Status.INGESTING).count())
        yield ingesting

    def describe(self):
        return []  # collected only when scraped (registering must not query the database)

    def jobs(self):
        counts = dict(Job.objects.order_by().values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
        by_status = GaugeMetricFamily("trainyard_jobs", "Jobs by status", labels=["status"])
        for status in Job.Status.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        queued = Job.objects.filter(status=Job.Status.QUEUED)
        dispatched = GaugeMetricFamily("trainyard_jobs_dispatched",
                                       "Queued jobs released to a worker that has not claimed them yet")
        dispatched.add_metric([], queued.filter(dispatched_at__isnull=False).count())
        yield dispatched
        oldest = queued.aggregate(t=Min("created_at"))["t"]
        age = GaugeMetricFamily("trainyard_queue_oldest_wait_seconds",
                                "How long the oldest queued job has waited since it was submitted (0: none queued)")
        age.add_metric([], max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0)
        yield age

    def queue_wait(self):
        window = settings.TRAINYARD_METRICS_WINDOW_SECONDS
        since = ExpressionWrapper(Now() - timedelta(seconds=window), output_field=DateTimeField())
        waits = [(started - created).total_seconds() for created, started in
                 Job.objects.filter(started_at__gte=since).values_list("created_at", "started_at")]
        buckets = [(repr(float(b)), sum(1 for w in waits if w <= b)) for b in QUEUE_WAIT_BUCKETS]
        buckets.append(("+Inf", len(waits)))
        return GaugeHistogramMetricFamily(
            "trainyard_job_queue_wait_seconds",
            f"Submission to first start of the jobs that started in the last {window} s", buckets=buckets,
            gsum_value=sum(max(0.0, w) for w in waits))

    def workers(self):
        queues = known_queues()
        alive = list(Worker.objects.alive().values_list("name", "queues", "draining"))
        busy_names = set(Job.objects.filter(status=Job.Status.RUNNING).values_list("worker_name", flat=True))
        online, draining = Counter(), Counter()
        for _, consumed, drained in alive:
            for q in set(consumed.split(",")) & set(queues):
                (draining if drained else online)[q] += 1
        for name, counter, help_text in (
                ("trainyard_workers_online", online, "Live workers taking jobs, per queue they consume"),
                ("trainyard_workers_draining", draining,
                 "Live workers that were drained (finish their job, take no more)")):
            fam = GaugeMetricFamily(name, help_text, labels=["queue"])
            for q in queues:
                fam.add_metric([q], counter[q])
            yield fam
        busy = GaugeMetricFamily("trainyard_workers_busy", "Live workers running a training job")
        busy.add_metric([], sum(1 for name, _, _ in alive if name in busy_names))
        yield busy
        silent = GaugeMetricFamily("trainyard_workers_silent",
                                   "Workers online by their row but past the liveness rule (killed, machine down)")
        silent.add_metric([], Worker.objects.silent().count())
        yield silent
        age = GaugeMetricFamily("trainyard_worker_heartbeat_age_seconds",
                                "Seconds since each online or retired worker's last heartbeat (database clock)",
                                labels=["worker"])
        rows = (Worker.objects.exclude(status=Worker.Status.OFFLINE)
                .annotate(age=ExpressionWrapper(Now() - F("last_heartbeat"), output_field=DurationField()))
                .values_list("name", "age"))
        for name, delta in rows:
            age.add_metric([name], max(0.0, delta.total_seconds()) if delta is not None else 0.0)
        yield age

    # heartbeat field → (metric, help, scale)
    GPU_FIELDS = {
        "memory_used": ("trainyard_gpu_memory_used_bytes", "GPU memory in use (last heartbeat)", 1),
        "memory_total": ("trainyard_gpu_memory_total_bytes", "GPU memory in all", 1),
        "utilization": ("trainyard_gpu_utilization_ratio", "GPU utilisation, 0 to 1 (last heartbeat)", 0.01),
        "temperature": ("trainyard_gpu_temperature_celsius", "GPU temperature (last heartbeat)", 1),
    }

    def gpus(self):
        fams = {field: GaugeMetricFamily(name, help_text, labels=["worker", "gpu", "model"])
                for field, (name, help_text, _) in self.GPU_FIELDS.items()}
        for name, gpus in Worker.objects.alive().values_list("name", "gpus"):
            for g in gpus or []:
                values = [name, str(g.get("index", "")), str(g.get("name") or "")]
                for field, fam in fams.items():
                    if isinstance(g.get(field), (int, float)):  # a reading the driver did not give: no sample
                        fam.add_metric(values, g[field] * self.GPU_FIELDS[field][2])
        yield from fams.values()
