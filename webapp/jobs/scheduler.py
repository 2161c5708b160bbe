"""The scheduler: which workers are live, which job fits which worker, and where queued jobs go.

Queued jobs go to Celery only when a worker is free, in our order, not the broker's. A pass
(`dispatch()`) runs after a submit, finish, cancel or requeue commits (`dispatch_soon()`, the one
entry point for "something changed") and on every worker heartbeat:
1. capacity: live workers (one rule: webapp/cluster/models.py heartbeat_cutoff) that consume the
   train queue, are not drained/retired, run no job and have no job dispatched to them yet: one
   slot each (one job per GPU);
2. while a slot is free: among queued, undispatched jobs whose owner is below their running limit,
   whose project (if it has a GPU quota) has room for the job's GPUs on that worker,
   and that some free worker can run (min GPU memory, GPU type), take the one whose owner has the
   fewest running (or dispatched) jobs, then the highest priority, then the oldest; mark it
   dispatched to that worker and send it after the commit;
3. every job left waiting gets an honest reason ("waiting for a GPU with ≥ 24 GB", ...).

Safe with several processes: the pass runs in one transaction that locks the queued rows
(SELECT ... FOR UPDATE on PostgreSQL; SQLite transactions here are BEGIN IMMEDIATE, so passes
are serialised by the database's write lock).

A job's queue position (submission order) is defined once, beside the model
(webapp/jobs/models.py queue_positions); the "N ahead" in a wait reason is this dispatcher's order.

Dependencies point one way: services (user verbs) and lifecycle (claim/finish/requeue, the
lost-job watchdog) call this module; it imports neither.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Subquery
from django.utils import timezone

from models_zoo.hf import QLORA_NEEDS_CUDA, is_hf
from webapp import celery
from webapp.cluster.models import Worker
from webapp.jobs.models import Job, JobNode, UserLimits
from webapp.monitoring import recorder
from webapp.projects.models import Project

log = logging.getLogger(__name__)

GB = 1_000_000_000


# --- queues and limits ------------------------------------------------------------------------

def train_queue() -> str:
    return settings.CELERY_TASK_ROUTES.get("trainyard.train_job", {}).get("queue", "train")


def own_queue(worker_name: str) -> str:
    """The queue only this worker consumes (added at its start, workers/adapters/worker.py): the
    dispatcher sends each job to the worker it chose, so no other free worker takes it first."""
    return f"{train_queue()}.{worker_name}"


def route(worker) -> str | None:
    """Where to send a job dispatched to this worker: its own queue when it has one (an older
    worker without one gets the shared train queue, and bounces a job it cannot run)."""
    q = own_queue(worker.name)
    return q if q in worker.queues.split(",") else None


def running_limit(user_id, overrides: dict) -> int:
    v = overrides.get(user_id)
    return v if v is not None else settings.TRAINYARD_MAX_RUNNING_PER_USER


def queued_limit(user) -> int:
    lim = UserLimits.objects.filter(user=user).values_list("max_queued", flat=True).first()
    return lim if lim is not None else settings.TRAINYARD_MAX_ACTIVE_JOBS_PER_USER


# --- workers: liveness, drain, slot ---------------------------------------------------------------

def live_workers() -> list[Worker]:
    """Workers that may get a training job: alive by the one rule and consuming the train queue."""
    q = train_queue()
    return [w for w in Worker.objects.alive() if q in w.queues.split(",")]


def mark_silent_workers_offline() -> int:
    """Workers past the liveness rule show as offline (their jobs are requeued by the lease
    check, webapp/jobs/lifecycle.py); a worker that comes back sets itself online with its next beat."""
    return Worker.objects.silent().update(status=Worker.Status.OFFLINE, current_job=None)


def is_draining(name: str) -> bool:
    """Drained or retired by an admin: this worker takes no new job."""
    return Worker.objects.filter(name=name, draining=True).exists()


def set_current_job(name: str | None, job_id, only=None) -> None:
    """Show the job a worker runs now (None when it ends) on its row; `only`: clear it only if
    it still shows that job. Display only: whether a worker is busy is derived from the running
    jobs that name it (`_read_state`), and `heal_current_job` corrects the row on every beat."""
    if name:
        rows = Worker.objects.filter(name=name)
        if only is not None:
            rows = rows.filter(current_job_id=only)
        rows.update(current_job_id=job_id)


def heal_current_job(name: str) -> None:
    """Make the worker row's `current_job` what is true: the running job that names it as its
    worker, or none. A run whose end was never recorded on the row (its process killed, the
    database connection dropped at the end, a claim refused on the last attempt) cannot leave
    the worker looking busy past its next heartbeat."""
    running = Job.objects.filter(Q(worker_name=name) | Q(gang__worker_name=name),
                                 status=Job.Status.RUNNING).order_by("-started_at")
    Worker.objects.filter(name=name).update(current_job_id=Subquery(running.values("pk")[:1]))


# --- fit --------------------------------------------------------------------------------------------

def needs_cuda(architecture: str, model_config: dict | None) -> bool:
    """A job only a CUDA worker can run: 4-bit QLoRA (bitsandbytes)."""
    return is_hf(architecture) and (model_config or {}).get("method") == "qlora"


def cuda_refusal() -> str:
    """Why a CUDA-only job is refused now ("" when it may queue): every live training worker is
    CPU only. With no live worker the devices are unknown, and the job waits for one."""
    workers = live_workers()
    if workers and not any(w.gpus for w in workers):
        return f"{QLORA_NEEDS_CUDA}; every live worker is CPU only ({', '.join(sorted(w.name for w in workers))})"
    return ""


def cuda_available() -> bool | None:
    """Whether a live training worker has a CUDA GPU (None: no worker is live, so not known).
    The settings that only act on CUDA (mixed precision) apply only then."""
    workers = live_workers()
    return any(w.gpus for w in workers) if workers else None


def fits(job: Job, gpus: list[dict], devices: int | None = None) -> bool:
    """Whether a worker with these GPUs (and `devices` devices) can run the job (a CPU worker fits
    only jobs without GPU needs). A job asking for N devices (TrainConfig.gpus) needs N on one
    worker: all of them at once, never spread over workers (gang placement)."""
    if devices is not None and devices < devices_needed(job):
        return False
    if needs_cuda(job.architecture, job.model_config) and not gpus:
        return False
    if not job.min_gpu_memory_gb and not job.gpu_type:
        return True
    for g in gpus:
        if job.min_gpu_memory_gb and (g.get("memory_total") or 0) < job.min_gpu_memory_gb * GB:
            continue
        if job.gpu_type and job.gpu_type.lower() not in (g.get("name") or "").lower():
            continue
        return True
    return False


def fits_worker(job: Job, worker: Worker) -> bool:
    return fits(job, worker.gpus, worker.devices)


def devices_needed(job: Job) -> int:
    """Devices the job asks for (TrainConfig.gpus; 1 for jobs stored before it existed)."""
    try:
        return max(1, int((job.train_config or {}).get("gpus", 1)))
    except (TypeError, ValueError):
        return 1


def nodes_needed(job: Job) -> int:
    """Machines the job asks for (TrainConfig.nodes; 1 for jobs stored before it existed): that many
    workers on distinct hosts, each with devices_needed devices, all at once."""
    try:
        return max(1, int((job.train_config or {}).get("nodes", 1)))
    except (TypeError, ValueError):
        return 1


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def worker_fits(name: str, job_id) -> bool:
    """Whether this worker's GPUs and device count meet the job's requirements."""
    job = Job.objects.filter(pk=job_id).only(
        "min_gpu_memory_gb", "gpu_type", "architecture", "model_config", "train_config").first()
    if job is None:
        return True
    row = Worker.objects.filter(name=name).values_list("gpus", "devices").first()
    if row is None:
        return True
    return fits(job, row[0] or [], row[1])


def describe_devices(n: int, gpus: list[dict], nodes: int = 1) -> str:
    """What a job of `n` devices uses on a worker like this: "2 × NVIDIA A100 on one machine",
    "2 CPU processes"; on `nodes` such machines "2 × 2 devices on 2 machines (NVIDIA A100)"."""
    if nodes > 1:
        return f"{nodes} × {_count(n, 'device')} on {nodes} machines" + (
            f" ({gpus[0].get('name') or 'GPU'})" if gpus else " (CPU processes)")
    if gpus:
        return f"{n} × {gpus[0].get('name') or 'GPU'} on one machine"
    return "1 CPU process" if n == 1 else f"{n} CPU processes"


def devices_offer() -> str:
    """The new-job form's note on the Devices field: what the live workers can give one job."""
    workers = [w for w in live_workers() if not w.draining]
    if not workers:
        return "no worker is online: the most one job may use is not known yet"
    best = max(workers, key=lambda w: (w.devices, bool(w.gpus)))
    return (f"at most {best.devices} on the workers online now: up to "
            f"{describe_devices(best.devices, best.gpus)} ({best.name})")


def hosts_with(workers: list[Worker], n: int) -> list[str]:
    """The distinct machines (Worker.hostname) among these workers where one worker has `n` devices."""
    return sorted({w.hostname for w in workers if w.devices >= n})


def device_class(w: Worker) -> str:
    """The kind of machine a gang is made of: "cpu", or "cuda:<GPU model>". Every machine of a
    multi-node job must be of one class: the ranks pick their backend from their own devices
    (gloo on the CPU, NCCL on CUDA), and ranks of two backends never meet (they hang)."""
    return f"cuda:{w.gpus[0].get('name') or 'GPU'}" if w.gpus else "cpu"


def gang_classes(workers: list[Worker], n: int) -> dict[str, list[Worker]]:
    """{device class: its workers that could be a machine of a multi-node job of `n` devices each}:
    `n` devices and a queue of their own (a follower's node task must reach that one worker: a
    worker without one is never placed in a gang, so it is never counted for one either)."""
    out: dict[str, list[Worker]] = {}
    for w in workers:
        if w.devices >= n and route(w):
            out.setdefault(device_class(w), []).append(w)
    return out


def gang_hosts(workers: list[Worker], n: int) -> list[str]:
    """The most distinct machines of one device class among these workers that could each be a
    machine of a multi-node job of `n` devices (see gang_classes): how many one gang may span."""
    return max((hosts_with(ws, n) for ws in gang_classes(workers, n).values()), key=len, default=[])


def nodes_offer() -> str:
    """The new-job form's note on the Machines field: what the live workers can give one job."""
    workers = [w for w in live_workers() if not w.draining and route(w)]
    if not workers:
        return "no worker is online: how many machines one job may use is not known yet"
    classes = gang_classes(workers, 1)  # one gang is of one device class: the class on the most hosts
    workers = max(classes.values(), key=lambda ws: len(hosts_with(ws, 1)))
    best = {}  # host -> its worker with the most devices
    for w in sorted(workers, key=lambda w: (w.devices, bool(w.gpus))):
        best[w.hostname] = w
    if len(best) == 1:
        return f"1 machine online now ({next(iter(best))}): more than 1 waits for another machine"
    each = min(w.devices for w in best.values())
    return (f"at most {len(best)} machines online now ({', '.join(sorted(best))}): up to "
            f"{describe_devices(each, next(iter(best.values())).gpus, len(best))}")


def devices_refusal(n: int, nodes: int = 1) -> str:
    """Why a job of `n` devices on each of `nodes` machines is refused at submit ("" when it may
    queue): no live training worker has that many devices, or fewer than `nodes` distinct hosts
    have one that does. With no live worker the devices are unknown, and the job waits."""
    if n <= 1 and nodes <= 1:
        return ""
    workers = live_workers()
    if not workers:
        return ""
    largest = max(w.devices for w in workers)
    if n > largest:
        return (f"no worker has {n} devices: the largest online has {largest} "
                f"({', '.join(sorted(w.name for w in workers if w.devices == largest))})")
    if nodes > 1 and len(hosts := gang_hosts(workers, n)) < nodes:
        return (f"the job needs {nodes} machines of one kind (CPU, or one GPU model) with {_count(n, 'device')} "
                f"each: {len(hosts)} online {'has' if len(hosts) == 1 else 'have'} ({', '.join(hosts)})")
    return ""


def need_text(job: Job) -> str:
    parts = []
    if job.gpu_type:
        parts.append(f"a {job.gpu_type} GPU")
    else:
        parts.append("a GPU")
    if job.min_gpu_memory_gb:
        parts.append(f"with ≥ {job.min_gpu_memory_gb} GB")
    if needs_cuda(job.architecture, job.model_config):
        parts.append("(CUDA, for 4-bit QLoRA)")
    return " ".join(parts)


# --- the dispatcher pass -----------------------------------------------------------------------

@dataclass
class _Pass:
    """What one dispatcher pass knows, read once at its start inside the transaction."""

    queued: list[Job]
    workers: list[Worker]
    free: list[Worker] = field(default_factory=list)
    active: Counter = field(default_factory=Counter)  # running or dispatched jobs per owner
    overrides: dict = field(default_factory=dict)  # per-user max_running
    waiting: list[Job] = field(default_factory=list)  # queued, not dispatched
    quotas: dict = field(default_factory=dict)  # project id -> (name, GPU quota), projects with one
    project_gpus: Counter = field(default_factory=Counter)  # GPUs in use (running or dispatched) per project

    def gpus_on(self, job: Job, worker_gpus) -> int:
        """GPUs the job holds on workers with these GPUs (a CPU worker: none): on every machine
        of its gang."""
        return devices_needed(job) * nodes_needed(job) if worker_gpus else 0

    def quota_allows(self, job: Job, worker: Worker) -> bool:
        if job.project_id not in self.quotas:
            return True
        return self.project_gpus[job.project_id] + self.gpus_on(job, worker.gpus) <= self.quotas[job.project_id][1]

    def quota_reason(self, job: Job, accepting: list[Worker]) -> str:
        """Why the project's GPU quota holds the job back ("" when it does not)."""
        if job.project_id not in self.quotas or any(not w.gpus and fits_worker(job, w) for w in accepting):
            return ""
        name, quota = self.quotas[job.project_id]
        used, n = self.project_gpus[job.project_id], devices_needed(job) * nodes_needed(job)
        if n > quota:
            return f"project {name} has a GPU quota of {quota}: this job asks for {n} GPUs"
        if used + n <= quota:
            return ""
        if used >= quota:
            return f"project {name} is at its GPU quota: {used} of {quota} in use"
        return f"project {name} is near its GPU quota: {used} of {quota} in use, this job needs {n}"

    def order(self, job: Job) -> tuple:
        """The dispatcher's order: fewest running first (fair share), then priority, then age."""
        return self.active[job.owner_id], -job.priority, job.created_at, str(job.pk)

    def limit(self, job: Job) -> int:
        return running_limit(job.owner_id, self.overrides)


def dispatch() -> list[str]:
    """One pass (see module doc); returns the ids of the jobs released to workers."""
    sent: list[str] = []
    start = time.perf_counter()
    with transaction.atomic():
        queued = list(Job.objects.select_for_update().filter(status=Job.Status.QUEUED).order_by("created_at", "pk"))
        if not queued:
            return sent
        p = _read_state(queued)
        now = timezone.now()
        while (choice := _pick(p)) is not None:
            job, workers = choice
            _release(p, job, workers, now)
            sent.append(str(job.pk))
        _explain_waits(p)
    recorder.observe(recorder.DISPATCH_PASS, time.perf_counter() - start)  # passes that had jobs to place
    if sent:
        log.info("dispatched %s", ", ".join(sent))
    return sent


def _read_state(queued: list[Job], heal: bool = True) -> _Pass:
    workers = live_workers()
    running = list(Job.objects.filter(status=Job.Status.RUNNING).values_list("owner_id", "worker_name"))
    # Busy: derived from what is true, the running jobs that name the worker (F13), never from
    # the row's current_job, which a crash at the end of a run could leave set.
    busy = {name for _, name in running}
    busy |= _holds_of_dispatched(queued, workers, heal)
    # The other machines of running multi-node jobs (their leader is the job's worker_name).
    busy |= set(JobNode.objects.filter(job__status=Job.Status.RUNNING).values_list("worker_name", flat=True))
    p = _Pass(queued=queued, workers=workers)
    p.free = [w for w in workers if w.name not in busy and not w.draining]
    p.active = Counter(owner for owner, _ in running)
    p.active.update(j.owner_id for j in queued if j.dispatched_at)
    p.overrides = dict(UserLimits.objects.filter(user_id__in={j.owner_id for j in queued})
                       .values_list("user_id", "max_running"))
    p.waiting = [j for j in queued if not j.dispatched_at]
    _read_quotas(p, queued)
    return p


def _read_quotas(p: _Pass, queued: list[Job]) -> None:
    """The GPU quotas of the waiting jobs' projects and the GPUs each of those projects holds now:
    its running jobs and those dispatched (not yet claimed), by the GPUs of the worker they are on.
    Read in the pass's transaction, after the queued rows are locked, so parallel passes (and
    claims, which wait for those locks) cannot both count the same free GPUs."""
    projects = {j.project_id for j in p.waiting if j.project_id}
    if not projects:
        return
    p.quotas = {pk: (name, quota) for pk, name, quota in Project.objects.filter(
        pk__in=projects, gpu_quota__isnull=False).values_list("pk", "name", "gpu_quota")}
    if not p.quotas:
        return
    holding = [j for j in queued if j.dispatched_at and j.project_id in p.quotas]
    holding += list(Job.objects.filter(status=Job.Status.RUNNING, project_id__in=list(p.quotas)).only(
        "project_id", "worker_name", "train_config"))
    gpus = dict(Worker.objects.filter(name__in={j.worker_name for j in holding}).values_list("name", "gpus"))
    for job in holding:
        p.project_gpus[job.project_id] += p.gpus_on(job, gpus.get(job.worker_name))


def _holds_of_dispatched(queued: list[Job], workers: list[Worker], heal: bool = True) -> set[str]:
    """Workers held by a job dispatched to them but not yet claimed. If that worker vanished or
    was drained before taking it, the job is undispatched here and dispatched again in this
    pass (a stale message left in that worker's queue is refused by the claim if the job runs
    elsewhere). `heal=False` (queue_snapshot): the same in memory only, nothing written."""
    taking_jobs = {w.name for w in workers if not w.draining}
    held = set()
    gangs = _gangs([j for j in queued if j.dispatched_at and nodes_needed(j) > 1])
    for job in queued:
        names = gangs.get(job.pk) or {job.worker_name}
        if job.dispatched_at and not names <= taking_jobs:  # a multi-node job: any machine of its gang
            job.dispatched_at = None
            if heal:
                Job.objects.filter(pk=job.pk).update(dispatched_at=None, worker_name="")
            else:
                job.worker_name = ""
        elif job.dispatched_at:
            held |= names
    return held


def _gangs(jobs: list[Job]) -> dict:
    """{job id: the worker names of its gang} of these (dispatched multi-node) jobs."""
    out: dict = {}
    if jobs:
        for job_id, name in JobNode.objects.filter(job__in=jobs).values_list("job_id", "worker_name"):
            out.setdefault(job_id, set()).add(name)
    return out


def _pick(p: _Pass) -> tuple[Job, list[Worker]] | None:
    """The next job to release and the workers for it (one; a multi-node job's gang, its leader
    first), or None when no free worker can take one.

    Gang placement with a head-of-line reservation: jobs are taken in the dispatcher's order; a
    job needing several devices that no free worker can hold yet keeps its place: the workers
    that could run it (enough devices, the right GPUs) are reserved for it, and jobs behind it
    may go ahead only on workers that could not. Without it a stream of small jobs would keep a
    big worker busy and the big job would wait forever. A multi-node job is released only when
    free workers on `nodes` distinct hosts each fit it (all or nothing); until then it reserves
    every worker that could be one of its machines."""
    if not p.free:
        return None
    reserved: set[str] = set()
    for job in sorted(p.waiting, key=p.order):
        if p.active[job.owner_id] >= p.limit(job):
            continue
        usable = [w for w in p.free if w.name not in reserved and fits_worker(job, w) and p.quota_allows(job, w)]
        if usable and (gang := _gang(job, usable)):
            return job, gang
        if (devices_needed(job) > 1 or nodes_needed(job) > 1) and not p.quota_reason(job, p.workers):
            # (held by its quota: reserves nothing; nor does a multi-node job while fewer machines
            # than it needs are online and taking jobs: it could not start however long others wait)
            reserved |= _reservation(job, p.workers)
    return None


def _reservation(job: Job, workers: list[Worker]) -> set[str]:
    """The workers a waiting job of several devices or machines keeps for itself: every worker
    that could run it; for a multi-node job only those of the device classes in which enough
    machines are online and taking jobs for it to start (gang_classes: its machines are all of
    one class, each with a queue of its own). None while it could not start however long others
    wait: it would block every smaller job for nothing."""
    could = [w for w in workers if fits_worker(job, w)]
    nodes = nodes_needed(job)
    if nodes == 1:
        return {w.name for w in could}
    out: set[str] = set()
    for ws in gang_classes(could, devices_needed(job)).values():
        if len(hosts_with([w for w in ws if not w.draining], devices_needed(job))) >= nodes:
            out |= {w.name for w in ws}
    return out


def _size(w: Worker) -> tuple:
    return w.devices, sum(g.get("memory_total") or 0 for g in w.gpus), w.name


def _gang(job: Job, usable: list[Worker]) -> list[Worker] | None:
    """The workers to release the job to: the smallest usable one, so big GPUs and many-device
    workers stay free for the jobs that need them; for a multi-node job the smallest usable worker
    of each of `nodes` distinct hosts, all of one device class (see device_class; each with a
    queue of its own: a follower's task must reach that worker), from the class whose gang is the
    smallest, or None while no class has that many hosts."""
    nodes = nodes_needed(job)
    if nodes == 1:
        return [min(usable, key=_size)]
    gangs = []
    for ws in gang_classes(usable, devices_needed(job)).values():
        per_host: dict[str, Worker] = {}
        for w in sorted(ws, key=_size):
            per_host.setdefault(w.hostname, w)
        if len(per_host) >= nodes:
            gangs.append(sorted(per_host.values(), key=_size)[:nodes])
    if not gangs:
        return None
    return min(gangs, key=lambda g: (sum(w.devices for w in g), sum(_size(w)[1] for w in g), _size(g[0])))


def _take(p: _Pass, job: Job, workers: list[Worker]) -> None:
    """The pass's own bookkeeping of a release: the workers are no longer free, the owner has one
    more, the job's project (if it has a GPU quota) holds its GPUs."""
    for w in workers:
        p.free.remove(w)
    p.waiting.remove(job)
    p.active[job.owner_id] += 1
    p.project_gpus[job.project_id] += p.gpus_on(job, workers[0].gpus)  # a gang is of one device class (_gang)


def _release(p: _Pass, job: Job, workers: list[Worker], now) -> None:
    """Mark the job dispatched to the workers (the first, its leader, is its worker_name; a
    multi-node job's gang is recorded as JobNode rows under a new gang id); the tasks are sent
    once the pass commits: the training task to the leader, a node task to each other machine."""
    _take(p, job, workers)
    leader = workers[0]
    # While Redis is down every pass dispatches again and the send fails again: keep that reason
    # until the task is sent and claimed, so the page does not flap between it and nothing.
    reason = job.wait_reason if job.wait_reason == BROKER_DOWN else ""
    Job.objects.filter(pk=job.pk).update(dispatched_at=now, worker_name=leader.name, wait_reason=reason)
    if nodes_needed(job) > 1:
        gang = uuid.uuid4().hex
        JobNode.objects.filter(job=job).delete()  # an earlier release's
        JobNode.objects.bulk_create([JobNode(job=job, node_rank=r, worker_name=w.name, gang=gang)
                                     for r, w in enumerate(workers)])
        for r, w in enumerate(workers[1:], start=1):
            transaction.on_commit(lambda job_id=job.pk, q=route(w), node=(r, gang): enqueue(job_id, queue=q, node=node))
    transaction.on_commit(lambda job_id=job.pk, q=route(leader): enqueue(job_id, queue=q))


def _explain_waits(p: _Pass) -> None:
    """An honest reason on every job left waiting, in one statement for all of them: each new
    job changes the "N ahead" of every other."""
    changed = []
    for job, reason in _reasons(p):
        if reason.text[:255] != job.wait_reason:
            job.wait_reason = reason.text[:255]
            changed.append(job)
    Job.objects.bulk_update(changed, ["wait_reason"], batch_size=500)


@dataclass(frozen=True)
class Reason:
    """Why a job waits: `text` for its owner (stored as Job.wait_reason), `public` for anyone
    else (the cluster page): the same fact without the job's settings (GPU type, memory)."""

    code: str  # no_worker | no_fit | no_devices | user_limit | project_quota | gang | free_worker
    text: str
    public: str


def _reasons(p: _Pass):
    """(job, Reason) for every waiting job, in the dispatcher's order."""
    accepting = [w for w in p.workers if not w.draining]
    ahead = 0
    for job in sorted(p.waiting, key=p.order):
        reason = _wait_reason(p, job, accepting, ahead)
        if reason.code in ("free_worker", "gang"):
            ahead += 1
        yield job, reason


def _wait_reason(p: _Pass, job: Job, accepting: list[Worker], ahead: int) -> Reason:
    if not accepting:
        text = "waiting for a worker: none is online" + (" and taking jobs (drained)" if p.workers else "")
        return Reason("no_worker", text, text)
    n = devices_needed(job)
    if not any(fits(job, w.gpus) for w in accepting):
        return Reason("no_fit", f"waiting for {need_text(job)}: no such worker is online",
                      "waiting for a worker that meets its GPU requirements: none is online")
    if not any(fits_worker(job, w) for w in accepting):
        text = (f"waiting for a worker with {n} devices on one machine: the largest online has "
                f"{max(w.devices for w in accepting)}")
        return Reason("no_devices", text, text)
    nodes = nodes_needed(job)
    if nodes > 1 and len(hosts := gang_hosts([w for w in accepting if fits_worker(job, w)], n)) < nodes:
        text = (f"waiting for {nodes} machines with {_count(n, 'device')} each: "
                f"{len(hosts)} online {'has' if len(hosts) == 1 else 'have'}")
        return Reason("no_devices", text, text)
    limit = p.limit(job)
    if p.active[job.owner_id] >= limit:
        return Reason("user_limit", f"you have {p.active[job.owner_id]} running (limit {limit})",
                      "its owner has as many jobs running as they may")
    if quota := p.quota_reason(job, accepting):
        return Reason("project_quota", quota, "its project is at its GPU quota")
    if nodes > 1:
        free = len(gang_hosts([w for w in p.free if fits_worker(job, w)], n))
        text = (f"waiting for {nodes} machines with {_count(n, 'free device')} each: {free} "
                f"{'has' if free == 1 else 'have'}" + (f"; {ahead} ahead" if ahead else ""))
        return Reason("gang", text, text)
    if n > 1:
        free = max((w.devices for w in p.free if fits(job, w.gpus)), default=0)
        text = (f"waiting for {n} free devices on one machine; the largest has {free} free"
                + (f"; {ahead} ahead" if ahead else ""))
        return Reason("gang", text, text)
    text = f"waiting for a free worker; {ahead} ahead" if ahead else "waiting for a free worker; next"
    return Reason("free_worker", text, text)


@dataclass(frozen=True)
class QueueEntry:
    """One queued job as the cluster page shows it: its place in the dispatcher's order, the
    worker it was (or is about to be) sent to, and why it waits."""

    job: Job
    position: int
    worker: str  # dispatched to (or picked by the next pass for) this worker; "" when waiting
    reason: Reason


def queue_snapshot() -> list[QueueEntry]:
    """The queue in dispatch order, as a pass would see it now, read-only (no lock, no write):
    first the jobs sent to a worker and not yet started, then the jobs the next pass would
    release (to which worker), then the waiting ones with their reasons — the same rules and
    words as dispatch(), from the same functions."""
    queued = list(Job.objects.select_related("owner", "dataset").filter(status=Job.Status.QUEUED)
                  .order_by("created_at", "pk"))
    if not queued:
        return []
    p = _read_state(queued, heal=False)
    starting = Reason("starting", "sent to its worker, starting", "sent to its worker, starting")
    out = [(j, j.worker_name, starting) for j in sorted((j for j in queued if j.dispatched_at),
                                                         key=lambda j: (j.dispatched_at, j.created_at))]
    picking = Reason("next", "picked for a free worker by the next dispatcher pass",
                     "picked for a free worker by the next dispatcher pass")
    while (choice := _pick(p)) is not None:
        job, workers = choice
        _take(p, job, workers)
        out.append((job, ", ".join(w.name for w in workers), picking))
    out.extend((job, "", reason) for job, reason in _reasons(p))
    return [QueueEntry(job, i + 1, worker, reason) for i, (job, worker, reason) in enumerate(out)]


def dispatch_soon() -> None:
    """Run a pass after the current transaction commits (or now, outside one); never raises.
    Every change that may free a slot or queue a job calls this, and only this."""
    def run():
        try:
            dispatch()
        except Exception:  # noqa: BLE001 - the heartbeat's periodic pass will try again
            log.exception("dispatch pass failed")

    transaction.on_commit(run)


BROKER_DOWN = "the job queue (Redis) could not be reached; the job is sent as soon as it answers"


def enqueue(job_id, queue: str | None = None, node: tuple[int, str] | None = None) -> None:
    """Send the training task (the dispatcher calls this after its pass commits); `node`: (node
    rank, gang id), the node task of one other machine of a multi-node job. If the broker
    cannot be reached (Redis restarting), the job stays queued and undispatched, with that
    reason: the next dispatcher pass (every worker heartbeat) sends it again. A queued job is
    never failed for a broker outage."""
    try:
        if node is not None:
            celery.send(celery.TRAIN_NODE_TASK, str(job_id), *node, queue=queue)
        else:
            celery.send(celery.TRAIN_TASK, str(job_id), queue=queue)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds of connection errors
        log.warning("could not send job %s to the queue: %s", job_id, exc)
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            dispatched_at=None, worker_name="", wait_reason=BROKER_DOWN)  # the error itself is in the log
