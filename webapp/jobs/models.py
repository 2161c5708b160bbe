from __future__ import annotations

import uuid
from bisect import bisect_left
from pathlib import Path

from django.conf import settings
from django.db import models


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    dataset = models.ForeignKey(
        "datasets.Dataset", null=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    # A team's project (webapp/projects), or the owner's personal space when empty.
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="jobs")
    name = models.CharField(max_length=200)
    architecture = models.CharField(max_length=50)
    # Validated architecture Config and TrainConfig, as plain JSON.
    model_config = models.JSONField(default=dict)
    train_config = models.JSONField(default=dict)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Its worker is shutting down (SIGTERM): stop at the next step and go back to the queue.
    requeue_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    # The fencing token of the run that owns the job: every claim bumps it (never lowered, unlike
    # `attempts`, which a shutdown requeue gives back). A worker's writes are conditional on it
    # (webapp/jobs/events.py append_events, lifecycle.fenced_replace), so a run that lost its
    # lease (SIGSTOP, a long pause) and woke up writes nothing.
    owner_token = models.PositiveIntegerField(default=0)
    worker_name = models.CharField(max_length=255, blank=True)
    # Scheduling (webapp/jobs/scheduler.py): the dispatcher releases queued jobs to Celery.
    priority = models.IntegerField(default=0, help_text="higher runs first among one user's jobs; "
                                   "users may lower it, admins may raise it")
    min_gpu_memory_gb = models.PositiveIntegerField(null=True, blank=True, help_text="run only on a GPU with this much memory")
    gpu_type = models.CharField(max_length=100, blank=True, help_text="run only on a GPU whose name contains this")
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="sent to a worker, not yet started")
    wait_reason = models.CharField(max_length=255, blank=True)
    # Progress, updated by the reporter a few times a second at most.
    epoch = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    eta_seconds = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="latest validation metrics")
    # The held-out test split's, evaluated once on the final model (never used to pick it).
    test_metrics = models.JSONField(default=dict, blank=True, help_text="the test split's metrics, final model")
    # Continued training (services.continue_job): the job and checkpoint it started from, kept
    # as data so the record outlives the other job: {"job", "name", "checkpoint", "epoch"}.
    lineage = models.JSONField(default=dict, blank=True, help_text="the job whose checkpoint this one continues")
    # What the run flagged about the model it made ({"code", "text"}: a classifier that predicts one
    # class only, a training loss that never moved): a succeeded job is not always a good one.
    warnings = models.JSONField(default=list, blank=True, help_text="the run's warnings about its model")
    # Validation metrics as events arrive, for search and sorting in the database
    # ({"last": {...}, "best": {...}}; events.append_events, once per batch): `metrics` is only
    # written when the run ends.
    summary = models.JSONField(default=dict, blank=True, help_text="latest and best validation metrics so far")
    # Run organisation (webapp/jobs/organise.py): the owner's note (Markdown), archived from the default list.
    note = models.TextField(blank=True, help_text="the owner's note, Markdown")
    archived_at = models.DateTimeField(null=True, blank=True, help_text="hidden from the default jobs list")
    last_seq = models.PositiveIntegerField(default=0, help_text="number of the last stored event")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # The jobs list: one user's (or, for staff, everyone's) unarchived jobs in a sort order.
        indexes = [
            models.Index(fields=["owner", "archived_at", "created_at"], name="job_list_created"),
            models.Index(fields=["owner", "archived_at", "name"], name="job_list_name"),
            models.Index(fields=["owner", "archived_at", "finished_at"], name="job_list_finished"),
            models.Index(fields=["archived_at", "created_at"], name="job_all_created"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def directory(self) -> Path:
        return Path(settings.DATA_DIR) / "jobs" / str(self.id)

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def queue_position(self) -> int | None:
        """How many queued jobs were submitted before this one (queue_positions() below)."""
        return queue_positions([self]).get(self.pk)

    def queue_note(self, position: int | None) -> str:
        """What the pages say about a queued job's wait, given its queue position."""
        if self.status != self.Status.QUEUED:
            return ""
        if self.worker_name:  # dispatched: the worker has it, or will in a moment
            return f"sent to worker {self.worker_name}, starting" + (f"; {self.wait_reason}" if self.wait_reason else "")
        before = f"{position} job{'' if position == 1 else 's'}" if position else ""
        if self.wait_reason:
            return self.wait_reason + (f" ({before} queued before it)" if before else "")
        return f"waiting for a worker, {before} ahead in the queue" if before else "waiting for a worker, next in line"

    @property
    def tag_names(self) -> list[str]:
        """The job's tags, sorted (from a prefetch_related("tags") when the caller made one)."""
        return sorted(t.name for t in self.tags.all())

    @property
    def progress_fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def to_dict(self, queue_position: int | None | object = ...) -> dict:
        """The job as the API and the pages' live updates show it. A caller listing many jobs
        passes each one's `queue_position` from one queue_positions() call (see to_dicts) so
        the list costs no query per queued job; without it, this one job's is looked up."""
        if queue_position is ...:
            queue_position = self.queue_position
        return {
            "id": str(self.id),
            "name": self.name,
            "owner": self.owner.get_username(),
            "project": str(self.project_id) if self.project_id else None,
            "project_name": self.project.name if self.project_id else None,
            "dataset": str(self.dataset_id) if self.dataset_id else None,
            "dataset_name": self.dataset.name if self.dataset_id else None,
            "class_names": (self.dataset.info or {}).get("classes") if self.dataset_id else None,
            "architecture": self.architecture,
            "model_config": self.model_config,
            "train_config": self.train_config,
            "status": self.status,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "attempts": self.attempts,
            "worker": self.worker_name,
            "epoch": self.epoch,
            "step": self.step,
            "total_steps": self.total_steps,
            "eta_seconds": self.eta_seconds,
            "metrics": self.metrics,
            "test_metrics": self.test_metrics,
            "warnings": self.warnings,
            "lineage": self.lineage,
            "summary": self.summary,
            "tags": self.tag_names,
            "note": self.note,
            "archived": self.archived_at is not None,
            "last_seq": self.last_seq,
            "queue_position": queue_position,
            "wait_reason": self.wait_reason if self.status == self.Status.QUEUED else "",
            "priority": self.priority,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "artifacts": [a.to_dict() for a in self.artifacts.all()],
        }

    @staticmethod
    def to_dicts(jobs) -> list[dict]:
        """to_dict() of each job, with the queue positions of all of them from one query."""
        jobs = list(jobs)
        positions = queue_positions(jobs)
        return [j.to_dict(positions.get(j.pk)) for j in jobs]


def queue_positions(jobs) -> dict:
    """The one definition of a queued job's queue position: how many queued jobs (anyone's)
    were submitted before it. {pk: position} for the queued ones among `jobs`, one query for
    all of them. The dispatcher's own order (fair share, priority) is a different number: it
    is in `wait_reason` ("waiting for a free worker; 2 ahead", webapp/jobs/scheduler.py),
    which the pages show first. It lives beside the model, not in the scheduler, because
    Job.queue_position uses it and the scheduler imports this module."""
    queued = [j for j in jobs if j.status == Job.Status.QUEUED]
    if not queued:
        return {}
    earlier = Job.objects.filter(status=Job.Status.QUEUED, created_at__lt=max(j.created_at for j in queued))
    if len(queued) == 1:  # one job (its page, a live update): a COUNT, not the list of times
        return {queued[0].pk: earlier.count()}
    times = sorted(earlier.values_list("created_at", flat=True))
    return {j.pk: bisect_left(times, j.created_at) for j in queued}


class JobNode(models.Model):
    """One machine of a multi-node job's gang (TrainConfig.nodes > 1), written by the dispatcher
    when it releases the job to `nodes` workers on distinct hosts; node 0, the leader, is also
    `Job.worker_name` and claims the job. A worker named here is busy while the job is dispatched or
    running (scheduler._read_state), so the rows never need to be removed for a reservation to end:
    the job leaving those states ends it. `gang` names the release (each one is new), so a follower's
    message from an earlier release joins nothing; `endpoint` is the leader's c10d rendezvous address
    for the run holding owner token `token` (lifecycle.publish_rendezvous)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="gang")
    node_rank = models.PositiveIntegerField()
    worker_name = models.CharField(max_length=255)
    gang = models.CharField(max_length=32)
    endpoint = models.CharField(max_length=300, blank=True)
    token = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "node_rank"], name="jobnode_one_worker_per_rank")]
        indexes = [models.Index(fields=["worker_name"])]
        ordering = ["job", "node_rank"]

    def __str__(self) -> str:
        return f"{self.job_id} node {self.node_rank}: {self.worker_name}"


class JobEvent(models.Model):
    """One numbered event of a job: metric, samples, progress, log or status (schema v1)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=20)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="unique_event_seq")]

    def to_dict(self) -> dict:
        return {"v": 1, "job": str(self.job_id), "seq": self.seq, "kind": self.kind, **self.data}


# Metrics where a lower value is better; every other metric is better higher.
LOWER_IS_BETTER = frozenset({"loss", "mse", "mae", "rmse", "perplexity"})


def lower_is_better(name: str) -> bool:
    return name in LOWER_IS_BETTER or name.endswith("_loss")


def summarise(summary: dict, values_seen: list[dict]) -> dict:
    """`summary` ({"last", "best"} of validation metrics) after the validation values in
    `values_seen`, in order; numbers only (booleans and strings are not metrics)."""
    last, best = dict(summary.get("last") or {}), dict(summary.get("best") or {})
    for values in values_seen:
        for k, v in (values or {}).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
                continue
            last[k] = v
            b = best.get(k)
            if b is None or (v < b if lower_is_better(k) else v > b):
                best[k] = v
    return {"last": last, "best": best}


class JobTag(models.Model):
    """One tag of a job (tags are per job, chosen freely by its owner; organise.clean_tags)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=40)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="unique_job_tag")]
        indexes = [models.Index(fields=["name"], name="job_tag_name")]

    def __str__(self) -> str:
        return self.name


class CompareView(models.Model):
    """A saved compare page: its jobs, the setting they are grouped by; one user's, by name."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="compare_views")
    name = models.CharField(max_length=100)
    job_ids = models.JSONField(default=list)
    group_by = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="unique_compare_view_name")]

    def __str__(self) -> str:
        return self.name


class Artifact(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=100)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="unique_artifact_name")]

    @property
    def path(self) -> Path:
        return self.job.directory / "artifacts" / self.name

    def to_dict(self) -> dict:
        return {"name": self.name, "size_bytes": self.size_bytes, "sha256": self.sha256}


class UserLimits(models.Model):
    """Per-user overrides of the scheduling defaults (settings.TRAINYARD_MAX_RUNNING_PER_USER,
    TRAINYARD_MAX_ACTIVE_JOBS_PER_USER); blank = the default."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="job_limits")
    max_running = models.PositiveIntegerField(null=True, blank=True)
    max_queued = models.PositiveIntegerField(null=True, blank=True, help_text="queued + running")

    class Meta:
        verbose_name_plural = "user limits"

    def __str__(self) -> str:
        return f"limits of {self.user}"
