"""`{% getting_started %}`: the panel that tells a user with no jobs yet what to do (add the
sample datasets, train a guided first job, whether a worker is online). Shown on the jobs
(home) and datasets pages; gone once the user has a job."""

from __future__ import annotations

from django import template

from webapp.datasets import samples

register = template.Library()


@register.inclusion_tag("onboarding/_getting_started.html", takes_context=True)
def getting_started(context):
    from webapp.datasets.models import Dataset
    from webapp.jobs import scheduler
    from webapp.jobs.access import datasets_for, jobs_for

    user = context["request"].user
    if not user.is_authenticated or jobs_for(user).exists():
        return {"show": False}
    # (A refused ingest removes the row: what is here is ingesting or ready.)
    mine = list(Dataset.objects.filter(owner=user, original_filename__startswith=samples.PREFIX).order_by("created_at"))
    rows = [{"dataset": d, "sample": samples.sample_for(d)} for d in mine]
    return {
        "show": True, "samples": rows, "csrf_token": context.get("csrf_token"),
        "has_datasets": bool(rows) or datasets_for(user).exists(),
        "ingesting": any(d.status == Dataset.Status.INGESTING for d in mine),
        "missing": [s for s in samples.SAMPLES.values() if s.filename not in {d.original_filename for d in mine}],
        "worker_online": bool(scheduler.live_workers()),
    }
