"""Worker GPU telemetry, admin actions (drain / resume / cancel / retire) and drain enforcement."""

from __future__ import annotations

import socket
import types

from django.urls import reverse

from tests.webapp.factories import running_job
from webapp.accounts.models import AuditEvent
from webapp.celery import TRAIN_TASK
from webapp.cluster.admin import gpu_bars
from webapp.cluster.models import Worker
from webapp.jobs import scheduler
from webapp.jobs.models import Job
from workers.adapters import gpu, registry


def test_telemetry_on_this_cpu_machine_is_a_clean_cpu_answer():
    gpus = gpu.telemetry()
    assert isinstance(gpus, list)
    if not gpus:  # the usual case here; on a GPU host each entry carries the fields
        assert gpu.describe(gpus) == "CPU"
    for g in gpus:
        assert {"index", "name", "memory_total", "memory_used", "utilization", "temperature", "capability"} <= set(g)


def test_telemetry_from_nvml(monkeypatch):
    class Mem:
        total, used = 24_000_000_000, 6_000_000_000

    fake = types.SimpleNamespace(
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: b"NVIDIA L4",
        nvmlDeviceGetMemoryInfo=lambda h: Mem,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=37),
        nvmlDeviceGetTemperature=lambda h, kind: 61,
        nvmlDeviceGetCudaComputeCapability=lambda h: (8, 9),
    )
    monkeypatch.setattr(gpu, "_nvml", lambda: fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    (g,) = gpu.telemetry()
    assert g == {"index": 1, "name": "NVIDIA L4", "memory_total": 24_000_000_000, "memory_used": 6_000_000_000,
                 "utilization": 37, "temperature": 61, "capability": "8.9", "source": "nvml"}
    assert gpu.describe([g]) == "NVIDIA L4 (24.0 GB)"
    html = gpu_bars([g])
    assert 'value="25"' in html and "util 37%" in html and "61 °C" in html


def test_broken_nvml_reads_as_no_gpu_not_a_crash(monkeypatch):
    def boom():
        raise RuntimeError("driver/library version mismatch")

    monkeypatch.setattr(gpu, "_nvml", boom)
    assert gpu.telemetry() == []
    assert gpu_bars([]) == "CPU"


def test_register_and_heartbeat_store_the_inventory(db, settings):
    registry.register("w1@host", ["train"])
    w = Worker.objects.get(name="w1@host")
    assert w.devices == (len(w.gpus) or 1)  # its GPUs, or one CPU device
    settings.TRAINYARD_WORKER_DEVICES = 3  # a CPU machine declaring three gloo processes
    registry.register("w2@host", ["train"])
    assert Worker.objects.get(name="w2@host").devices == 3
    assert w.device_name == gpu.describe(w.gpus) and w.is_alive and w.accepts_jobs
    registry.heartbeat("w1@host")
    assert Worker.objects.get(name="w1@host").status == Worker.Status.ONLINE


def _action(client, action, worker):
    return client.post(reverse("admin:cluster_worker_changelist"),
                       {"action": action, "_selected_action": [worker.pk]}, follow=True)


def test_admin_drain_resume_retire_are_audited_and_enforced(client, staff, alice, sent_tasks):
    name = socket.gethostname()  # the node name an eagerly applied task reports
    registry.register(name, ["train"])
    w = Worker.objects.get(name=name)
    client.force_login(staff)
    page = client.get(reverse("admin:cluster_worker_change", args=[w.pk]))
    assert page.status_code == 200 and b"jobs run by this worker" in page.content.lower()

    assert _action(client, "drain", w).status_code == 200
    w.refresh_from_db()
    assert w.draining and not w.accepts_jobs and scheduler.is_draining(w.name)

    # A message this worker fetched before the drain goes back to the dispatcher (which picks
    # another worker); the job stays queued and this worker does not run it.
    from django.utils import timezone

    from workers.adapters.tasks import train_job

    job = Job.objects.create(owner=alice, name="q", architecture="mlp", dispatched_at=timezone.now(),
                             worker_name=name)
    result = train_job.apply(args=[str(job.pk)]).get()
    assert result == "drained"
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.attempts == 0
    assert job.dispatched_at is None and job.worker_name == ""
    assert (TRAIN_TASK, str(job.pk)) not in sent_tasks  # only a free, undrained worker gets it

    _action(client, "resume", w)
    w.refresh_from_db()
    assert not w.draining

    _action(client, "retire", w)
    w.refresh_from_db()
    assert w.status == Worker.Status.RETIRED and w.draining
    registry.heartbeat(w.name)  # a retired process that still beats stays retired
    w.refresh_from_db()
    assert w.status == Worker.Status.RETIRED
    _action(client, "resume", w)
    w.refresh_from_db()
    assert w.draining
    actions = set(AuditEvent.objects.filter(object_id=str(w.pk)).values_list("action", flat=True))
    assert {"worker.drain", "worker.resume", "worker.retire"} <= actions


def test_admin_cancels_the_running_job(client, staff, alice):
    job = running_job(alice)
    registry.register("w2@host", ["train"])
    scheduler.set_current_job("w2@host", job.pk)
    client.force_login(staff)
    _action(client, "cancel_running_job", Worker.objects.get(name="w2@host"))
    job.refresh_from_db()
    assert job.cancel_requested


def test_staff_only(client, alice):
    client.force_login(alice)
    r = client.get(reverse("admin:cluster_worker_changelist"))
    assert r.status_code == 302


def test_worker_actions_need_the_change_permission(client, alice):
    """Staff who may only view workers see them but cannot drain, cancel or retire (A10)."""
    from django.contrib.auth.models import Permission, User

    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_worker"))
    registry.register("w3@host", ["train"])
    w = Worker.objects.get(name="w3@host")
    job = running_job(alice)
    scheduler.set_current_job(w.name, job.pk)
    client.force_login(viewer)
    page = client.get(reverse("admin:cluster_worker_changelist"))
    assert page.status_code == 200 and b"w3@host" in page.content
    assert b'value="drain"' not in page.content and b'value="retire"' not in page.content
    for action in ("drain", "retire", "cancel_running_job"):
        _action(client, action, w)
    w.refresh_from_db()
    job.refresh_from_db()
    assert not w.draining and w.status == Worker.Status.ONLINE and not job.cancel_requested
    viewer.user_permissions.add(Permission.objects.get(codename="change_worker"))
    viewer = User.objects.get(pk=viewer.pk)  # drop the cached permissions
    client.force_login(viewer)
    _action(client, "drain", w)
    w.refresh_from_db()
    assert w.draining


def test_max_restarts_is_configurable_then_failed_with_the_reason(alice, settings):
    from webapp.jobs.lifecycle import claim_job

    settings.TRAINYARD_MAX_ATTEMPTS = 2
    job = running_job(alice)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED, attempts=1)
    assert claim_job(job.pk, "w@host") is not None  # the second run is allowed
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED)  # lost again, requeued
    assert claim_job(job.pk, "w@host") is None
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.attempts == 2
    assert job.error == ("gave up after 2 attempts: the worker running it was lost each time "
                         "(limit TRAINYARD_MAX_ATTEMPTS=2)")


def test_a_lost_job_out_of_attempts_fails_with_the_reason_instead_of_requeueing(alice, settings):
    from datetime import timedelta

    from django.utils import timezone

    from webapp.jobs.models import JobEvent
    from webapp.jobs.lifecycle import requeue_lost_jobs

    settings.TRAINYARD_MAX_ATTEMPTS = 1
    job = running_job(alice)
    Job.objects.filter(pk=job.pk).update(attempts=1, worker_name="gone@host",
                                         heartbeat_at=timezone.now() - timedelta(hours=1))
    assert requeue_lost_jobs() == []
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.finished_at is not None
    assert job.error == ("worker gone@host stopped responding while running this job; 1 attempt used, "
                         "the limit (TRAINYARD_MAX_ATTEMPTS) is 1, so it was not restarted")
    final = JobEvent.objects.filter(job=job, kind="status").order_by("-seq").first().data
    assert final["status"] == "failed" and final["lost"] == "gone@host"
    assert requeue_lost_jobs() == []  # once: a second pass finds nothing to do


def test_silent_workers_show_offline_and_their_job_is_marked_lost_and_requeued(alice, settings):
    from datetime import timedelta

    from django.utils import timezone

    from webapp.jobs.models import JobEvent
    from webapp.jobs.lifecycle import requeue_lost_jobs

    registry.register("alive@host", ["train"])
    registry.register("silent@host", ["train"])
    job = running_job(alice)
    long_ago = timezone.now() - timedelta(seconds=settings.TRAINYARD_JOB_LEASE_SECONDS + 5)
    Job.objects.filter(pk=job.pk).update(worker_name="silent@host", heartbeat_at=long_ago)
    Worker.objects.filter(name="silent@host").update(last_heartbeat=long_ago, current_job=job)
    fresh = running_job(alice)  # its worker writes: it stays running

    assert scheduler.mark_silent_workers_offline() == 1
    assert requeue_lost_jobs() == [job.pk]
    silent, alive = Worker.objects.get(name="silent@host"), Worker.objects.get(name="alive@host")
    assert silent.status == Worker.Status.OFFLINE and silent.current_job is None and not silent.is_alive
    assert alive.status == Worker.Status.ONLINE and alive.is_alive
    job.refresh_from_db()
    fresh.refresh_from_db()
    assert job.status == Job.Status.QUEUED and fresh.status == Job.Status.RUNNING
    last = JobEvent.objects.filter(job=job).order_by("-seq")[0]
    assert last.kind == "status" and last.data == {"status": "queued", "lost": "silent@host"}
    assert requeue_lost_jobs() == []  # moved once
    registry.heartbeat("silent@host")  # it comes back
    assert Worker.objects.get(name="silent@host").status == Worker.Status.ONLINE
