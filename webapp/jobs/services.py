"""The user's verbs on jobs: validate and submit, cancel, delete; each also tells the browsers.

Where queued jobs go is the scheduler's (webapp/jobs/scheduler.py); what happens to a job once a
worker has it (claim, finish, requeue, the lost-job watchdog) is the lifecycle's
(webapp/jobs/lifecycle.py). This module calls the scheduler; neither of the two imports it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.utils import timezone

import models_zoo
from models_zoo import defaults as adaptive
from models_zoo import hf
from models_zoo._checks import kind_error
from models_zoo.kinds import kind_of
from models_zoo.hparams import TrainConfig
from models_zoo.schema import ConfigError, applicable_json, settle, shown, validate
from webapp.accounts import audit
from webapp.accounts import storage
from webapp.accounts.storage import user_lock
from webapp.datasets.models import Dataset
from webapp.jobs import scheduler
from webapp.jobs.cancel import cancel_active_jobs, cancel_job  # noqa: F401 - user verbs, re-exported
from webapp.jobs.events import append_events
from webapp.jobs.models import Job
from webapp.projects.access import may_create_in


@dataclass
class SubmitError(Exception):
    errors: dict[str, str]
    status: int = 400

    def __str__(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.errors.items())


def job_context(dataset: Dataset | None) -> dict:
    """What a job's settings may depend on besides each other (models_zoo.schema.CONTEXT): the
    dataset's task and kind, and whether a live worker has CUDA (None where not known)."""
    info = (dataset.info or {}) if dataset is not None and dataset.is_ready else {}
    return {"task": info.get("task"), "kind": kind_of(info) if info else None, "cuda": scheduler.cuda_available()}


def validate_job_request(dataset: Dataset | None, architecture: str, model_config: dict | None,
                         train_config: dict | None, *, lenient: bool = False) -> tuple[dict, dict]:
    """Check a job request the same way for the form and the API; returns clean JSON configs.

    Only the settings that apply are kept (`models_zoo.schema.settle`: the others are dropped at
    their default and refused with the reason otherwise); `lenient` drops them all without
    refusing: an earlier job's stored settings, continued, which did nothing when it ran."""
    errors: dict[str, str] = {}
    context = job_context(dataset)
    if dataset is None:
        errors["dataset"] = "choose a dataset"
    elif not dataset.is_ready:
        errors["dataset"] = f"dataset {dataset.name!r} is {dataset.status}, not ready"
    clean_model, clean_train = {}, {}
    try:
        entry = models_zoo.get(architecture)
    except ConfigError as exc:
        errors.update(exc.errors)
        entry = None
    if entry is not None:
        model_config, clean_model = _check_model(entry, dataset, model_config, context, lenient, errors)
    given = set(train_config) if isinstance(train_config, dict) else set()
    train_config = with_training_defaults(dataset, architecture, model_config, clean_model, train_config)
    if isinstance(train_config, dict):  # defaults filled in for settings that do not apply go silently
        train_config, refused = settle(TrainConfig, train_config, context, given=given, strict=not lenient)
        for k, v in refused.items():
            errors.setdefault(f"train_config.{k}", v)
    try:
        tc = validate(TrainConfig, train_config)
        clean_train = applicable_json(tc, context)
        if dataset is not None and dataset.is_ready:
            errors.update({f"train_config.{k}": v for k, v in tc.check_for_task(dataset.info["task"]).items()})
            errors.update({f"train_config.{k}": v for k, v in tc.check_for_kind(
                kind_of(dataset.info), dataset.info["task"]).items()})
        if hf.is_hf(architecture):  # settings transformers.Trainer does not honour
            errors.update({f"train_config.{k}": v for k, v in hf.train_errors(tc).items()})
    except ConfigError as exc:
        errors.update({f"train_config.{k}": v for k, v in exc.errors.items()})
    if errors:
        raise SubmitError(errors)
    return clean_model, clean_train


def _check_model(entry, dataset: Dataset | None, model_config, context: dict, lenient: bool,
                 errors: dict) -> tuple[dict | None, dict]:
    """(the model settings that apply, their clean JSON); problems go into `errors`."""
    clean_model: dict = {}
    if dataset is not None:
        errors.update(kind_error({"kind": dataset.kind}, entry.kinds, entry.label))
    if isinstance(model_config, dict):
        model_config, refused = settle(entry.config_cls, model_config, context, strict=not lenient)
        errors.update({f"model_config.{k}": v for k, v in refused.items()})
    try:
        config = entry.validate(model_config)
        clean_model = applicable_json(config, context)
    except ConfigError as exc:
        errors.update({f"model_config.{k}": v for k, v in exc.errors.items()})
    else:
        if dataset is not None and dataset.is_ready and "architecture" not in errors:
            # The family's dataset-dependent rules: heads dividing the width, images large
            # enough for the pooling, a first layer that fits... checked before queueing.
            for k, v in models_zoo.check_for_dataset(entry.name, config, dataset.info).items():
                errors[k if k == "architecture" else f"model_config.{k}"] = v
    return model_config, clean_model


def shown_settings(job: Job) -> tuple[dict, dict]:
    """The job's stored model and training settings that apply, for its page (an older job
    stored every field; the ones that did nothing are left out)."""
    info = (job.dataset.info or {}) if job.dataset_id and job.dataset and job.dataset.is_ready else {}
    context = {"task": info.get("task"), "kind": kind_of(info) if info else None}  # what it stored tells the rest
    try:
        model_cls = models_zoo.get(job.architecture).config_cls
    except (ConfigError, ImportError):
        model_cls = None
    return shown(model_cls, job.model_config or {}, context), shown(TrainConfig, job.train_config or {}, context)


def with_training_defaults(dataset: Dataset, architecture: str, model_config, clean_model: dict, train_config):
    """`train_config` with defaults for the settings it leaves out: an HF job's fine-tuning defaults
    (hf.DEFAULTS_RULE), a zoo job's adaptive ones (models_zoo.defaults: they fit the dataset and
    the architecture). The job stores the resolved values, so a clone or a continued job repeats
    them as explicit settings."""
    if hf.is_hf(architecture):
        return hf.with_fine_tune_defaults(train_config if isinstance(train_config, dict) else {},
                                          model_config if isinstance(model_config, dict) else {})
    if dataset is None or not dataset.is_ready or not isinstance(train_config, (dict, type(None))):
        return train_config
    return adaptive.resolve(architecture, clean_model, dataset.info, train_config)[0]


def submit_job(user, dataset: Dataset | None, architecture: str, model_config: dict | None = None,
               train_config: dict | None = None, name: str = "", priority: int = 0,
               min_gpu_memory_gb: int | None = None, gpu_type: str = "", *,
               lineage: dict | None = None, seed_checkpoint: Path | None = None, project=None,
               lenient: bool = False) -> Job:
    """Queue a job. `seed_checkpoint` (continue_job): a checkpoint copied into the new job's
    checkpoint folder before it can be claimed, counted against the quota; the runtime resumes
    from it as from one of its own, and `lineage` records where it came from. `project`: the
    project it belongs to (the user must be a member or maintainer; the dataset theirs, shared
    with them, or the project's), None for personal space. `lenient`: settings that do not apply
    are dropped instead of refused (continue, sweep trials)."""
    check_project(user, project, dataset)
    clean_model, clean_train = validate_job_request(dataset, architecture, model_config, train_config, lenient=lenient)
    sched_errors = {}
    if priority > 0 and not user.is_staff:
        sched_errors["priority"] = "you may lower your job's priority (0 or below); an admin may raise it"
    elif not -100 <= priority <= 100:
        sched_errors["priority"] = "priority must be between -100 and 100"
    if min_gpu_memory_gb is not None and not 1 <= min_gpu_memory_gb <= 4096:
        sched_errors["min_gpu_memory_gb"] = "give a whole number of GB between 1 and 4096, or leave it empty"
    gpu_type = (gpu_type or "").strip()
    if len(gpu_type) > 100:
        sched_errors["gpu_type"] = "at most 100 characters"
    if sched_errors:
        raise SubmitError(sched_errors)
    if scheduler.needs_cuda(architecture, clean_model) and (reason := scheduler.cuda_refusal()):
        raise SubmitError({"model_config.method": reason})
    gpus, nodes = int(clean_train.get("gpus", 1)), int(clean_train.get("nodes", 1))
    if reason := scheduler.devices_refusal(gpus):
        raise SubmitError({"train_config.gpus": reason})
    if reason := scheduler.devices_refusal(gpus, nodes):  # enough devices, not on enough machines
        raise SubmitError({"train_config.nodes": reason})
    if hf.is_hf(architecture):  # a local:<name> model must exist for this user and fit the task
        from webapp.hub.services import check_job_model

        if errors := check_job_model(user, architecture, clean_model):
            raise SubmitError(errors)
    name = (name or "").strip()[:200] or f"{architecture} on {dataset.name}"
    # The count and the create are one step under the user's lock (storage.user_lock): parallel
    # submits queue on it, so exactly the limit is accepted, never the limit plus a race.
    with user_lock(user):
        active = Job.objects.filter(owner=user, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).count()
        limit = scheduler.queued_limit(user)
        if active >= limit:
            raise SubmitError({"jobs": f"you have {active} queued or running jobs, the limit is {limit}; "
                                       "wait for some to finish or cancel them"}, status=429)
        if seed_checkpoint is not None:
            try:
                storage.check(user, seed_checkpoint.stat().st_size, "the checkpoint to continue from")
            except storage.QuotaExceeded as exc:
                raise SubmitError({"quota": str(exc)}, status=exc.status) from None
        job = Job.objects.create(owner=user, project=project, dataset=dataset, name=name, architecture=architecture,
                                 model_config=clean_model, train_config=clean_train, priority=priority,
                                 min_gpu_memory_gb=min_gpu_memory_gb or None, gpu_type=gpu_type,
                                 lineage=lineage or {})
        if seed_checkpoint is not None:
            # Copied before the commit (the dispatch runs after it): no worker sees the job first.
            folder = job.directory / "checkpoints"
            try:
                folder.mkdir(parents=True)
                shutil.copyfile(seed_checkpoint, folder / seed_checkpoint.name)
            except BaseException:
                shutil.rmtree(job.directory, ignore_errors=True)
                raise
        events = [("status", {"status": Job.Status.QUEUED})]
        if note := defaults_note(architecture, clean_model, dataset, train_config):
            events.append(("log", {"level": "info", "text": note}))
        append_events(job.pk, events)
        audit.record(user, "job.submit", job, architecture=architecture, dataset=str(dataset.pk),
                     **({"project": str(project.pk)} if project else {}))
        scheduler.dispatch_soon()  # released to a worker when one is free
    return job


def check_project(user, project, dataset) -> None:
    """SubmitError unless `user` may add a job (or sweep) to `project` on `dataset`."""
    from webapp.jobs.access import datasets_for_job
    from webapp.projects.access import role_of

    if project is None:
        return
    if not may_create_in(user, project):
        raise SubmitError({"project": f"you are a {role_of(user, project.pk) or 'visitor'} of project "
                                      f"“{project.name}”: only its members and maintainers may add to it"},
                          status=403)
    if dataset is not None and not datasets_for_job(user, project).filter(pk=dataset.pk).exists():
        raise SubmitError({"dataset": f"a job in project “{project.name}” may use your datasets, those shared "
                                      f"with you and the project's; “{dataset.name}” belongs to another project"})


def defaults_note(architecture: str, model_config: dict, dataset: Dataset, train_config: dict | None) -> str:
    """The job log's line naming the adaptive defaults a request received, and why; "" when none."""
    if hf.is_hf(architecture) or not isinstance(train_config, (dict, type(None))):
        return ""
    _, reasons = adaptive.resolve(architecture, model_config, dataset.info, train_config)
    if not reasons:
        return ""
    values = adaptive.adaptive_defaults(architecture, model_config, dataset.info)
    return "defaults for the settings left unset: " + "; ".join(
        f"{k} = {values[k][0]} ({reason})" for k, reason in reasons.items())


CHECKPOINT_NAME = re.compile(r"ckpt-(\d{6})\.pt")


def latest_checkpoint(job: Job) -> tuple[Path, int] | None:
    """(path, epochs it holds) of the job's newest zoo checkpoint (workers/training/checkpoint.py
    names them ckpt-<epoch>.pt), or None."""
    folder = job.directory / "checkpoints"
    found = sorted((p for p in folder.glob("ckpt-*.pt") if CHECKPOINT_NAME.fullmatch(p.name)), reverse=True) \
        if folder.is_dir() else []
    return (found[0], int(CHECKPOINT_NAME.fullmatch(found[0].name).group(1))) if found else None


def continue_job(source: Job, user, epochs: int, learning_rate: float | None = None, name: str = "") -> Job:
    """A new job that continues `source`'s training from its last checkpoint for `epochs` more
    epochs (optionally at a new learning rate): weights, optimizer state, schedule position and
    random state come from the checkpoint, so 5 epochs continued by 5 train as 10 would. The
    source stays as it is; the new job's `lineage` (and model card) names it."""
    errors: dict[str, str] = {}
    if source.owner_id != user.pk:
        errors["owner"] = "only the job's owner can continue it (the new job uses their dataset and quota)"
    elif source.status not in (Job.Status.SUCCEEDED, Job.Status.CANCELLED):
        errors["status"] = f"only a succeeded or cancelled job can be continued; this one is {source.status}"
    elif hf.is_hf(source.architecture):
        errors["architecture"] = ("continuing is for the zoo's architectures; a Hugging Face job keeps no "
                                  "checkpoint after it ends: fine-tune its exported model instead")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= 10_000:
        errors["epochs"] = "give the number of epochs to add, a whole number from 1 to 10000"
    if learning_rate is not None and (isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float))
                                      or not 0 < learning_rate <= 10):
        errors["learning_rate"] = "give a learning rate above 0 and at most 10, or leave it empty"
    if (source.train_config or {}).get("lr_schedule") == "onecycle":
        errors["lr_schedule"] = ("a one-cycle schedule ends with its run and cannot be extended; submit a "
                                 "new job instead")
    found = latest_checkpoint(source) if not errors else None
    if not errors and found is None:
        errors["checkpoint"] = "this job has no checkpoint to continue from (it stopped before its first epoch ended)"
    if errors:
        status = 403 if "owner" in errors else 409 if set(errors) & {"status", "checkpoint"} else 400
        raise SubmitError(errors, status=status)
    path, done = found
    train_config = dict(source.train_config or {}, epochs=done + epochs)
    if learning_rate is not None:
        train_config["learning_rate"] = float(learning_rate)
    lineage = {"job": str(source.pk), "name": source.name, "checkpoint": path.name, "epoch": done}
    return submit_job(user, source.dataset, source.architecture, source.model_config, train_config,
                      name=name or f"{source.name} (continued)"[:200], priority=min(source.priority, 0),
                      min_gpu_memory_gb=source.min_gpu_memory_gb, gpu_type=source.gpu_type,
                      lineage=lineage, seed_checkpoint=path, lenient=True,
                      project=source.project if source.project_id and may_create_in(user, source.project) else None)


class RetryError(SubmitError):
    """The job cannot be retried (not failed, or the user's active-job limit is reached)."""


def retry_job(job: Job, actor=None) -> Job:
    """Run a failed job again: the same job (id, settings, history), back in the queue with its
    attempts reset by this user's action; the run resumes from its last good checkpoint (the
    runtime loads the newest one that reads), so a failure after the last epoch (a full disk
    while writing the model) only redoes the export. Counts against the active-job limit."""
    with user_lock(job.owner):
        job.refresh_from_db()
        if job.status != Job.Status.FAILED:
            raise RetryError({"status": f"only a failed job can be retried; this one is {job.status}"}, status=409)
        active = Job.objects.filter(owner=job.owner, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).count()
        limit = scheduler.queued_limit(job.owner)
        if active >= limit:
            raise RetryError({"jobs": f"you have {active} queued or running jobs, the limit is {limit}; "
                                      "wait for some to finish or cancel them"}, status=429)
        Job.objects.filter(pk=job.pk, status=Job.Status.FAILED).update(
            status=Job.Status.QUEUED, attempts=0, error="", finished_at=None, cancel_requested=False,
            requeue_requested=False, worker_name="", dispatched_at=None, wait_reason="", eta_seconds=None)
        who = actor.get_username() if actor is not None else "an admin"
        append_events(job.pk, [
            ("log", {"level": "info", "text": f"retried by {who}: it resumes from its last checkpoint"}),
            ("status", {"status": Job.Status.QUEUED}),
        ])
        audit.record(actor, "job.retry", job)
        scheduler.dispatch_soon()
    job.refresh_from_db()
    return job


def delete_job(job: Job, actor=None) -> bool:
    """Delete a finished job with its files; running or queued jobs must be cancelled first."""
    if not job.is_final:
        return False
    audit.record(actor, "job.delete", job)
    directory = job.directory
    job.delete()
    shutil.rmtree(directory, ignore_errors=True)
    return True


# --- run organisation: tags, note, archive, bulk actions, repeats ------------------------------

MAX_TAGS = 20
MAX_NOTE = 20_000
MAX_BULK = 500
MAX_REPEATS = 20
TAG = re.compile(r"[\w.\-]{1,40}")


class OrganiseError(SubmitError):
    """Tags, a note or a bulk request that cannot be applied; nothing was changed."""


def clean_tags(values) -> list[str]:
    """Tags as stored: lower case, 1 to 40 letters, digits, `.`, `_` or `-`; a string is split
    on commas and spaces. OrganiseError names the first bad one."""
    if isinstance(values, str):
        values = re.split(r"[,\s]+", values)
    if not isinstance(values, (list, tuple)):
        raise OrganiseError({"tags": "give a list of tags"})
    tags = []
    for v in values:
        if not isinstance(v, str):
            raise OrganiseError({"tags": f"a tag is text, not {type(v).__name__}"})
        v = v.strip().lower()
        if not v:
            continue
        if not TAG.fullmatch(v):
            raise OrganiseError({"tags": f"“{v[:50]}”: a tag is 1 to 40 letters, digits, . _ or -"})
        if v not in tags:
            tags.append(v)
    return tags


def set_tags(job: Job, tags, *, add: bool = False, remove: bool = False) -> list[str]:
    """Replace the job's tags (or add / remove some); the tags it has afterwards."""
    from webapp.jobs.models import JobTag

    tags = clean_tags(tags)
    with transaction.atomic():
        current = list(JobTag.objects.select_for_update().filter(job=job).values_list("name", flat=True))
        if add:
            wanted = current + [t for t in tags if t not in current]
        elif remove:
            wanted = [t for t in current if t not in tags]
        else:
            wanted = tags
        if len(wanted) > MAX_TAGS:
            raise OrganiseError({"tags": f"a job has at most {MAX_TAGS} tags; this would give it {len(wanted)}"})
        JobTag.objects.filter(job=job).exclude(name__in=wanted).delete()
        JobTag.objects.bulk_create([JobTag(job=job, name=t) for t in wanted if t not in current])
    return sorted(wanted)


def set_note(job: Job, text) -> str:
    """The owner's note (Markdown, rendered with raw HTML escaped: webapp/jobs/markdown.py)."""
    if not isinstance(text, str):
        raise OrganiseError({"note": "the note is text"})
    if len(text) > MAX_NOTE:
        raise OrganiseError({"note": f"the note is {len(text)} characters long; at most {MAX_NOTE}"})
    Job.objects.filter(pk=job.pk).update(note=text)
    job.note = text
    return text


def archive_job(job: Job, archived: bool = True, actor=None) -> bool:
    """Hide the job from the default list (or show it again). Nothing is deleted: events,
    artifacts and files stay; an archived job is still found with the list's archived filter."""
    changed = Job.objects.filter(pk=job.pk, archived_at__isnull=archived).update(
        archived_at=timezone.now() if archived else None)
    if changed:
        audit.record(actor, "job.archive" if archived else "job.unarchive", job)
    job.refresh_from_db(fields=["archived_at"])
    return bool(changed)


BULK_ACTIONS = ("cancel", "delete", "archive", "unarchive", "tag", "untag")


@dataclass
class BulkResult:
    action: str
    done: list[str]
    skipped: list[dict]  # {"id", "reason"}

    def message(self) -> str:
        text = f"{self.action}: {len(self.done)} job{'' if len(self.done) == 1 else 's'} done"
        if self.skipped:
            reasons: dict[str, int] = {}
            for s in self.skipped:
                reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
            text += "; skipped " + "; ".join(f"{n} ({r})" for r, n in reasons.items())
        return text


def bulk_action(user, action: str, ids, tags=None) -> BulkResult:
    """`action` on each of the jobs `ids` that `user` may change, with the same rules as the
    one-job verbs (access.may_write: the owner, or a permission): the others are skipped and
    said so, never changed. Ids `user` cannot see are skipped as "no such job"."""
    from webapp.jobs.access import jobs_for, may_write

    if action not in BULK_ACTIONS:
        raise OrganiseError({"action": f"one of {', '.join(BULK_ACTIONS)}"})
    if not isinstance(ids, (list, tuple)) or not ids:
        raise OrganiseError({"ids": "select at least one job"})
    if len(ids) > MAX_BULK:
        raise OrganiseError({"ids": f"at most {MAX_BULK} jobs at a time; {len(ids)} were selected"})
    clean = clean_tags(tags or []) if action in ("tag", "untag") else []
    if action in ("tag", "untag") and not clean:
        raise OrganiseError({"tags": "give the tags to add or remove"})
    wanted = list(dict.fromkeys(str(i) for i in ids))
    valid = [i for i in wanted if _uuid(i)]
    found = {str(j.pk): j for j in jobs_for(user).filter(pk__in=valid)}
    result = BulkResult(action, [], [])
    for pk in wanted:
        job = found.get(pk)
        if job is None:
            result.skipped.append({"id": pk, "reason": "no such job"})
        elif not may_write(user, job, "delete" if action == "delete" else True):
            result.skipped.append({"id": pk, "reason": f"not yours (it belongs to {job.owner.get_username()})"})
        elif (reason := _bulk_one(user, action, job, clean)):
            result.skipped.append({"id": pk, "reason": reason})
        else:
            result.done.append(pk)
    return result


def _bulk_one(user, action: str, job: Job, tags: list[str]) -> str:
    """Apply one bulk action to one job the user may change; the reason it was skipped, or ""."""
    if action == "cancel":
        if job.is_final:
            return "already finished"
        cancel_job(job, actor=user)
    elif action == "delete":
        if not delete_job(job, actor=user):
            return "queued or running: cancel it first"
    elif action in ("archive", "unarchive"):
        if not archive_job(job, action == "archive", actor=user):
            return "already archived" if action == "archive" else "not archived"
    else:
        try:
            set_tags(job, tags, add=action == "tag", remove=action == "untag")
        except OrganiseError as exc:
            return exc.errors["tags"]
    return ""


def _uuid(value) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def repeat_with_seeds(source: Job, user, n: int) -> list[Job]:
    """`n` clones of a finished job with seeds seed+1 … seed+n (same dataset, architecture and
    settings; the source's tags), queued through submit_job. All or nothing: the active-job
    limit is checked for all `n` under the user's lock, so parallel requests never pass it."""
    errors: dict[str, str] = {}
    if source.owner_id != user.pk:
        errors["owner"] = "only the job's owner can repeat it (the new jobs use their dataset and quota)"
    elif not source.is_final:
        errors["status"] = f"repeat a finished job; this one is {source.status}"
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPEATS:
        errors["n"] = f"give the number of seeds, a whole number from 1 to {MAX_REPEATS}"
    seed = int((source.train_config or {}).get("seed", 0) or 0)
    if not errors and seed + n > 2**31 - 1:
        errors["n"] = "the seeds would pass the largest seed (2147483647)"
    if errors:
        raise SubmitError(errors, status=403 if "owner" in errors else 409 if "status" in errors else 400)
    tags = list(source.tags.values_list("name", flat=True))
    jobs = []
    with user_lock(user):
        active = Job.objects.filter(owner=user, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).count()
        limit = scheduler.queued_limit(user)
        if active + n > limit:
            raise SubmitError({"jobs": f"repeating with {n} seeds needs {n} job slots; you have {active} queued or "
                                       f"running jobs and the limit is {limit}"}, status=429)
        project = source.project if source.project_id and may_create_in(user, source.project) else None
        for s in range(seed + 1, seed + n + 1):
            job = submit_job(user, source.dataset, source.architecture, source.model_config,
                             dict(source.train_config or {}, seed=s), name=f"{source.name} (seed {s})"[:200],
                             priority=min(source.priority, 0), min_gpu_memory_gb=source.min_gpu_memory_gb,
                             gpu_type=source.gpu_type, project=project)
            if tags:
                set_tags(job, tags)
            jobs.append(job)
    return jobs
