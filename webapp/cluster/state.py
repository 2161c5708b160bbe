"""What the cluster page shows: workers grouped by host with their devices' live telemetry (from
the heartbeat, workers/adapters/gpu.py), the job running on each, and the queue in the
dispatcher's order with each job's wait reason (webapp/jobs/scheduler.queue_snapshot: the same
rules and words as the dispatcher's pass).

Everyone signed in sees the whole cluster, but of a job they may not read (jobs.access) only
what is safe: that it is another user's, its state and how many devices it uses — never its
name, owner, dataset or settings, and its wait reason in the words without settings
(scheduler.Reason.public).
"""

from __future__ import annotations

from itertools import groupby

from django.db.models import JSONField, OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone

from webapp.cluster.models import Worker, heartbeat_cutoff
from webapp.jobs import scheduler
from webapp.jobs.access import jobs_for
from webapp.jobs.models import Job, JobEvent


def _gpu(g: dict) -> dict:
    return {k: g.get(k) for k in ("index", "name", "memory_used", "memory_total", "utilization", "temperature")}


def _job(job: Job, user, readable: set) -> dict:
    out = {"status": job.status, "devices": scheduler.devices_needed(job), "mine": job.owner_id == user.pk,
           "visible": job.pk in readable}
    if not out["visible"]:
        out["label"] = "another user's job"
        return out
    out.update({
        "id": str(job.pk), "name": job.name, "url": reverse("jobs:detail", args=[job.pk]),
        "owner": job.owner.get_username(), "architecture": job.architecture,
        "dataset": job.dataset.name if job.dataset_id and job.dataset else None,
        "epoch": job.epoch, "epochs": (job.train_config or {}).get("epochs"),
        "progress": round(job.progress_fraction, 4), "eta_seconds": job.eta_seconds,
    })
    return out


def _usage(sample) -> dict | None:
    """What the worker card shows of a job's latest resource sample (no setting of the job)."""
    if isinstance(sample, str):  # a JSON text on backends that do not decode a subquery's JSON
        import json

        sample = json.loads(sample)
    if not isinstance(sample, dict):
        return None
    keys = ("cpu_percent", "rss", "cpus", "gpu_util", "gpu_memory", "gpu_memory_total", "gpu_source", "t")
    return {k: sample.get(k) for k in keys}


def _worker(w: Worker, now, cutoff, job: dict | None) -> dict:
    alive = w.status == Worker.Status.ONLINE and w.last_heartbeat >= cutoff
    trains = scheduler.train_queue() in w.queues.split(",")
    state = ("retired" if w.status == Worker.Status.RETIRED else "offline" if not alive
             else "draining" if w.draining else "busy" if job else "idle" if trains else "online")
    return {
        "id": w.pk, "name": w.name, "hostname": w.hostname, "state": state, "alive": alive,
        "draining": w.draining, "devices": w.devices, "device_name": w.device_name,
        "accepts_training": trains,
        "queues": [q for q in w.queues.split(",") if q],
        "last_heartbeat": w.last_heartbeat.isoformat(),
        "heartbeat_age_seconds": max(0, round((now - w.last_heartbeat).total_seconds())),
        "gpus": [_gpu(g) for g in (w.gpus or [])],
        "job": job,
    }


def cluster_state(user) -> dict:
    """The page's data (also its JSON endpoint): a fixed number of queries, whatever the size."""
    now = timezone.now()  # the liveness rule's clock on this side (cluster.models.heartbeat_cutoff)
    # Each running job's latest resource sample (its worker's heartbeat), in the same query.
    latest = JobEvent.objects.filter(job=OuterRef("pk"), kind="resources").order_by("-seq").values("data")[:1]
    running = list(Job.objects.select_related("owner", "dataset").filter(status=Job.Status.RUNNING)
                   .exclude(worker_name="").annotate(usage=Subquery(latest, output_field=JSONField())))
    queue = scheduler.queue_snapshot()
    ids = [j.pk for j in running] + [e.job.pk for e in queue]
    readable = set(jobs_for(user).filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()
    on_worker = {j.worker_name: {**_job(j, user, readable), "usage": _usage(j.usage)} for j in running}
    workers = sorted(Worker.objects.all(), key=lambda w: (w.hostname, w.name))
    cutoff = heartbeat_cutoff()
    hosts = []
    for hostname, group in groupby(workers, key=lambda w: w.hostname):
        rows = [_worker(w, now, cutoff, on_worker.get(w.name)) for w in group]
        hosts.append({"hostname": hostname, "workers": rows, "alive": sum(r["alive"] for r in rows)})
    return {
        "now": now.isoformat(),
        "hosts": hosts,
        "queue": [{"position": e.position, "worker": e.worker, "code": e.reason.code,
                   "reason": e.reason.text if e.job.owner_id == user.pk else e.reason.public,
                   "job": _job(e.job, user, readable)} for e in queue],
        "counts": {"workers": len(workers), "alive": sum(h["alive"] for h in hosts), "running": len(running),
                   "queued": len(queue)},
    }
