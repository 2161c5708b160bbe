"""Operator verbs on workers (the admin's Workers page calls these): drain, undrain, retire,
forget. Each is audited (accounts.audit) and tells the dispatcher that its capacity changed.

A drained worker finishes its job and takes no more (lifecycle.start_run refuses, the heartbeat
stops its consumer); a retired one is drained for good. Forgetting removes the row of a worker
that is no longer alive (the heartbeat's liveness rule): a live one is refused, so a working
machine cannot vanish from the scheduler; one that comes back registers itself again.
"""

from __future__ import annotations

from django.db import transaction

from webapp.accounts import audit
from webapp.cluster.models import Worker, db_heartbeat_cutoff
from webapp.jobs import scheduler


def drain(actor, workers) -> int:
    with transaction.atomic():
        rows = list(workers)
        n = Worker.objects.filter(pk__in=[w.pk for w in rows]).update(draining=True)
        for w in rows:
            audit.record(actor, "worker.drain", w)
    scheduler.dispatch_soon()
    return n


def undrain(actor, workers) -> int:
    """Take jobs again; retired workers stay drained."""
    with transaction.atomic():
        rows = [w for w in workers if w.status != Worker.Status.RETIRED]
        n = Worker.objects.filter(pk__in=[w.pk for w in rows]).update(draining=False)
        for w in rows:
            audit.record(actor, "worker.resume", w)
    scheduler.dispatch_soon()
    return n


def retire(actor, workers) -> int:
    with transaction.atomic():
        rows = list(workers)
        n = Worker.objects.filter(pk__in=[w.pk for w in rows]).update(draining=True, status=Worker.Status.RETIRED)
        for w in rows:
            audit.record(actor, "worker.retire", w)
    scheduler.dispatch_soon()
    return n


def forget(actor, workers) -> tuple[list[str], list[str]]:
    """Remove the rows of dead workers; returns (forgotten names, refused names: still alive)."""
    rows = list(workers)
    with transaction.atomic():
        # Judged in the transaction that deletes, on the database's clock (the liveness rule).
        dead = list(Worker.objects.select_for_update().filter(pk__in=[w.pk for w in rows]).exclude(
            status=Worker.Status.ONLINE, last_heartbeat__gte=db_heartbeat_cutoff()))
        for w in dead:
            audit.record(actor, "worker.forget", w, hostname=w.hostname, last_heartbeat=w.last_heartbeat.isoformat())
        Worker.objects.filter(pk__in=[w.pk for w in dead]).delete()
    scheduler.dispatch_soon()  # a job dispatched to a forgotten worker is dispatched again
    gone = {w.pk for w in dead}
    return sorted(w.name for w in dead), sorted(w.name for w in rows if w.pk not in gone)
