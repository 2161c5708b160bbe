"""Multi-node jobs (TrainConfig.nodes) at the web boundary and in the dispatcher: refused at
submit when fewer machines than asked have the devices, released only to free workers on that many
distinct hosts (all or nothing, the leader first), reserving the workers it could use while it
waits, with honest wait reasons; the gang's workers are busy while it runs and free once it ends;
a follower joins only its own gang's run, and a gang whose leader never starts is released."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.webapp.factories import ready_dataset
from tests.webapp.test_gang_scheduling import _api, busy, job, reason
from webapp.celery import TRAIN_NODE_TASK, TRAIN_TASK
from webapp.cluster.models import Worker
from webapp.jobs import lifecycle, scheduler
from webapp.jobs.models import Job, JobEvent, JobNode
from webapp.jobs.scheduler import dispatch

pytestmark = pytest.mark.django_db


def worker(name, devices=1, gpu=None):
    """A worker `name@host` with its own queue (the dispatcher sends a node task there)."""
    gpus = [{"index": i, "name": gpu, "memory_total": 24 * 10**9} for i in range(devices)] if gpu else []
    return Worker.objects.create(name=name, hostname=name.partition("@")[2], queues=f"train,train.{name}",
                                 device="cuda:0" if gpus else "cpu", gpus=gpus, devices=devices)


@pytest.fixture
def run(django_capture_on_commit_callbacks, sent_tasks):
    """One dispatcher pass: [(task name, args..., queue)] of the training tasks it sent."""
    def _run():
        with django_capture_on_commit_callbacks(execute=True):
            dispatch()
        out = [(*t, q) for t, q in zip(sent_tasks, sent_tasks.queues) if t[0] in (TRAIN_TASK, TRAIN_NODE_TASK)]
        sent_tasks.clear(), sent_tasks.queues.clear()
        return out
    return _run


def _submit(api, ds, **train):
    return api.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp", "train_config": train},
                    content_type="application/json")


def test_a_job_needing_more_machines_than_are_online_is_refused_at_submit(alice, sent_tasks):
    ds, api = ready_dataset(alice), _api(alice)
    worker("a@h1", devices=2), worker("b@h1", devices=2), worker("c@h2", devices=1)
    r = _submit(api, ds, gpus=2, nodes=2, batch_size=8)
    assert r.status_code == 400, r.content
    assert r.json()["errors"]["train_config.nodes"] == "the job needs 2 machines of one kind (CPU, or one GPU model) with 2 devices each: 1 online has (h1)"
    r = _submit(api, ds, gpus=1, nodes=3, batch_size=8)
    assert r.json()["errors"]["train_config.nodes"] == "the job needs 3 machines of one kind (CPU, or one GPU model) with 1 device each: 2 online have (h1, h2)"
    # The batch is split over every rank of every machine.
    r = _submit(api, ds, gpus=2, nodes=2, batch_size=3)
    assert r.status_code == 400 and r.json()["errors"]["train_config.batch_size"] == (
        "the batch is split over the 4 ranks (2 × 2 machines): give at least 4"), r.content
    r = _submit(api, ds, gpus=1, nodes=0)
    assert r.status_code == 400 and "train_config.nodes" in r.json()["errors"], r.content
    assert not Job.objects.exists()
    r = _submit(api, ds, gpus=1, nodes=2, batch_size=8)
    assert r.status_code == 201, r.content
    assert Job.objects.get().train_config["nodes"] == 2
    # What the form and the API say a job may use.
    assert scheduler.nodes_offer() == "at most 2 machines online now (h1, h2): up to 2 × 1 device on 2 machines (CPU processes)"
    assert api.get("/api/architectures/").json()["nodes"] == scheduler.nodes_offer()
    assert scheduler.describe_devices(2, [{"name": "NVIDIA L4"}], 2) == "2 × 2 devices on 2 machines (NVIDIA L4)"


def test_the_form_says_how_many_machines(client_alice):
    worker("a@h1", devices=2), worker("b@h2", devices=2)
    html = client_alice.get("/jobs/new/").content.decode()
    assert 'name="tc_nodes"' in html
    assert "up to 2 × 2 devices on 2 machines (CPU processes)" in html


def test_placement_is_all_or_nothing_on_distinct_hosts(alice, bob, run, settings):
    """Two free workers on one host are not two machines: the job waits, reserving them, until a
    worker of a second host is free; then it goes to one worker of each host, the leader first."""
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    a, b, c = worker("a@h1"), worker("b@h1"), worker("c@h2")
    running = busy(c, bob)
    big = job(alice, 10, nodes=2)
    small = job(alice, 5)
    assert run() == []  # neither: the small job may not take a worker the big one waits for
    assert reason(big) == "waiting for 2 machines with 1 free device each: 1 has"
    assert reason(small) == "waiting for a free worker; 1 ahead"
    Job.objects.filter(pk=running.pk).update(status=Job.Status.SUCCEEDED)
    sent = run()
    big.refresh_from_db()
    gang = list(JobNode.objects.filter(job=big).values_list("node_rank", "worker_name", "gang"))
    assert [(r, w) for r, w, _ in gang] == [(0, "a@h1"), (1, "c@h2")] and big.worker_name == "a@h1"
    token = gang[0][2]
    # In the same pass the small job goes to the worker left, on the host the gang uses already.
    assert sorted(sent) == sorted([(TRAIN_TASK, str(big.pk), "train.a@h1"),
                                   (TRAIN_NODE_TASK, str(big.pk), 1, token, "train.c@h2"),
                                   (TRAIN_TASK, str(small.pk), "train.b@h1")])
    assert b.name == Job.objects.get(pk=small.pk).worker_name


def test_a_worker_that_cannot_be_one_of_its_machines_stays_usable(alice, bob, run, settings):
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    worker("a@h1", devices=2), worker("x@h3", devices=1)
    big, small = job(alice, 10, gpus=2, nodes=2), job(bob, 5)
    assert run() == [(TRAIN_TASK, str(small.pk), "train.x@h3")]
    assert reason(big) == "waiting for 2 machines with 2 devices each: 1 online has"
    # While fewer machines than it needs are online it reserves nothing: it could not start anyway.
    Job.objects.filter(pk=small.pk).update(status=Job.Status.SUCCEEDED)
    other = job(bob, 1, gpus=2)
    assert run() == [(TRAIN_TASK, str(other.pk), "train.a@h1")]


def test_the_gang_is_busy_while_it_runs_and_free_when_it_ends(alice, bob, run, settings):
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    worker("a@h1"), worker("c@h2")
    big = job(alice, 10, nodes=2, dataset=ready_dataset(alice))
    assert len(run()) == 2
    start = lifecycle.start_run(big.pk, "a@h1")
    assert isinstance(start, lifecycle.RunStart) and start.token == 1
    small = job(bob, 1)
    assert run() == []  # c@h2, the follower, is busy with the running job
    lifecycle.finish_job(big.pk, Job.Status.SUCCEEDED, token=start.token)
    assert run() == [(TRAIN_TASK, str(small.pk), "train.a@h1")]


def test_a_requeued_gang_frees_every_machine_once(alice, bob, run, settings):
    """The leader and a follower may both see the gang break: one requeue (the attempt counted),
    the other finds the run fenced; no worker stays reserved."""
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    worker("a@h1"), worker("c@h2")
    big = job(alice, 10, nodes=2, dataset=ready_dataset(alice))
    run()
    leader = lifecycle.start_run(big.pk, "a@h1")
    gang = JobNode.objects.get(job=big, node_rank=1).gang
    assert lifecycle.publish_rendezvous(leader, "127.0.0.1:29400")
    follower = lifecycle.join_gang(big.pk, "c@h2", 1, gang)
    assert isinstance(follower, lifecycle.RunStart), follower
    assert follower.endpoint == "127.0.0.1:29400" and follower.node_rank == 1 and follower.token == leader.token
    assert Worker.objects.get(name="c@h2").current_job_id == big.pk
    assert lifecycle.missing_nodes(leader) == []
    assert lifecycle.requeue_lost_gang(leader, "rank 1 of 2 died") == "requeued"
    assert lifecycle.requeue_lost_gang(follower, "the leader stopped responding") == "fenced"
    big.refresh_from_db()
    assert big.status == Job.Status.QUEUED and big.attempts == 1
    assert [e.data["status"] for e in JobEvent.objects.filter(job=big, kind="status").order_by("seq")] == [
        "running", "queued"]
    small = job(bob, 1)
    sent = run()  # the gang is released again (a new gang id), nothing else is held
    assert {q for *_, q in sent} == {"train.a@h1", "train.c@h2"}
    assert JobNode.objects.get(job=big, node_rank=1).gang != gang
    assert reason(small) == "waiting for a free worker; next"


def test_a_stale_message_joins_nothing_and_a_follower_never_runs_alone(alice, run, settings):
    settings.TRAINYARD_RDZV_TIMEOUT_SECONDS = 0
    worker("a@h1"), worker("c@h2")
    big = job(alice, 10, nodes=2, dataset=ready_dataset(alice))
    run()
    gang = JobNode.objects.get(job=big, node_rank=1).gang
    assert lifecycle.join_gang(big.pk, "c@h2", 1, "another-gang") == lifecycle.Skipped("not in the gang")
    # The leader never takes it: when the rendezvous timeout passes, the follower releases the
    # whole gang (not counted: it never ran) and nothing runs.
    assert lifecycle.join_gang(big.pk, "c@h2", 1, gang) == lifecycle.Skipped("rendezvous timed out")
    big.refresh_from_db()
    assert big.status == Job.Status.QUEUED and big.dispatched_at is None and big.worker_name == "" and big.attempts == 0
    assert "did not start within TRAINYARD_RDZV_TIMEOUT_SECONDS" in JobEvent.objects.get(job=big, kind="log").data["text"]
    # The leader's message, arriving late, claims nothing; no other worker may claim it either.
    assert lifecycle.start_run(big.pk, "a@h1") == lifecycle.Skipped("not claimed")
    assert lifecycle.start_run(big.pk, "c@h2") == lifecycle.Skipped("not claimed")
    assert Job.objects.get(pk=big.pk).status == Job.Status.QUEUED


def test_a_gang_whose_follower_vanished_before_starting_is_placed_again(alice, run, settings):
    worker("a@h1"), worker("c@h2"), worker("d@h3")
    big = job(alice, 10, nodes=2)
    run()
    follower = JobNode.objects.get(job=big, node_rank=1).worker_name
    Worker.objects.filter(name=follower).update(status=Worker.Status.OFFLINE)
    sent = run()
    nodes = set(JobNode.objects.filter(job=big).values_list("worker_name", flat=True))
    assert follower not in nodes and len(nodes) == 2 and {q for *_, q in sent} == {f"train.{n}" for n in nodes}


def test_a_shutdown_of_a_followers_worker_asks_the_gang_to_requeue(alice, run):
    worker("a@h1"), worker("c@h2")
    big = job(alice, 10, nodes=2, dataset=ready_dataset(alice))
    run()
    lifecycle.start_run(big.pk, "a@h1")
    assert lifecycle.request_requeue_of_running("c@h2") == 1
    assert Job.objects.get(pk=big.pk).requeue_requested


def gpu_worker(name, model="NVIDIA A100"):
    return worker(name, devices=1, gpu=model)


def test_a_gang_is_of_one_device_class_never_cpu_and_gpu_machines_mixed(alice, bob, run, settings):
    """The ranks pick gloo on a CPU machine and NCCL on a GPU one: such a gang would hang. The job
    (no GPU requirement, so a CPU worker fits it) goes to the two GPU machines, not to the CPU one,
    though the CPU worker is the smallest."""
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    worker("cpu@h1"), gpu_worker("g1@h2"), gpu_worker("g2@h3")
    big = job(alice, 10, nodes=2)
    sent = run()
    assert sorted(q for *_, q in sent) == ["train.g1@h2", "train.g2@h3"]
    assert set(JobNode.objects.filter(job=big).values_list("worker_name", flat=True)) == {"g1@h2", "g2@h3"}


def test_machines_of_two_classes_are_not_a_gang_and_reserve_nothing(alice, bob, run, settings):
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    worker("cpu@h1"), gpu_worker("g1@h2"), gpu_worker("h1@h3", model="NVIDIA H100")
    big, small = job(alice, 10, nodes=2), job(bob, 5)
    # The small job goes ahead: the big one could not start however long it waited.
    assert run() == [(TRAIN_TASK, str(small.pk), "train.cpu@h1")]
    assert reason(big) == "waiting for 2 machines with 1 device each: 1 online has"
    assert scheduler.devices_refusal(1, 2) == (
        "the job needs 2 machines of one kind (CPU, or one GPU model) with 1 device each: 1 online has (h1)")


def test_a_worker_without_its_own_queue_is_never_counted_as_a_machine(alice, bob, run, settings):
    """The dispatcher never places a gang on a worker without a queue of its own (a follower's node
    task must reach that one worker): such a worker is not counted for a reservation, a wait
    reason or the submit check either, or a nodes=2 job could hold every fitting worker forever."""
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    worker("a@h1")
    Worker.objects.create(name="old@h2", hostname="h2", queues="train", device="cpu", gpus=[], devices=1)
    assert "1 online has (h1)" in scheduler.devices_refusal(1, 2)
    big, small = job(alice, 10, nodes=2), job(bob, 5)
    sent = run()
    assert [t[1] for t in sent] == [str(small.pk)]  # nothing reserved for a job that cannot start
    assert reason(big) == "waiting for 2 machines with 1 device each: 1 online has"


def test_a_redelivered_leader_message_requeues_a_running_gang_for_fresh_machines(alice, run, settings):
    """acks_late + reject_on_worker_lost: the leader's pool process died and its message comes back.
    The followers' node tasks were for that run: re-claiming it would wait for machines that never
    come. The job goes back to the queue (the attempt counted once), the old run is fenced, and the
    next pass places a fresh gang, sending every task again."""
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    worker("a@h1"), worker("c@h2")
    big = job(alice, 10, nodes=2, dataset=ready_dataset(alice))
    run()
    gang = JobNode.objects.get(job=big, node_rank=1).gang
    leader = lifecycle.start_run(big.pk, "a@h1")
    assert lifecycle.publish_rendezvous(leader, "127.0.0.1:29400")
    follower = lifecycle.join_gang(big.pk, "c@h2", 1, gang)
    assert isinstance(follower, lifecycle.RunStart)
    assert lifecycle.start_run(big.pk, "a@h1") == lifecycle.Skipped("not claimed")
    big.refresh_from_db()
    assert (big.status, big.attempts, big.worker_name, big.dispatched_at) == (Job.Status.QUEUED, 1, "", None)
    assert not lifecycle.still_owned(follower) and not lifecycle.still_owned(leader)
    sent = run()
    assert {q for *_, q in sent} == {"train.a@h1", "train.c@h2"}
    assert JobNode.objects.get(job=big, node_rank=1).gang != gang


def test_a_running_gang_whose_lease_lapsed_is_requeued_not_claimed(alice, run, settings):
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    worker("a@h1"), worker("c@h2"), worker("d@h3")
    big = job(alice, 10, nodes=2, dataset=ready_dataset(alice))
    run()
    lifecycle.start_run(big.pk, "a@h1")
    Job.objects.filter(pk=big.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert lifecycle.start_run(big.pk, "d@h3") == lifecycle.Skipped("not claimed")
    big.refresh_from_db()
    assert big.status == Job.Status.QUEUED and big.attempts == 1 and not JobNode.objects.filter(job=big).exists()


def test_a_cancel_during_the_rendezvous_ends_the_job_cancelled(alice, run, settings):
    """Until the machines meet no rank reads the cancel: the leader's requeue after the join
    timeout ends the job cancelled instead of queueing it again (and reserving machines for it)."""
    worker("a@h1"), worker("c@h2")
    big = job(alice, 10, nodes=2, dataset=ready_dataset(alice))
    run()
    leader = lifecycle.start_run(big.pk, "a@h1")
    Job.objects.filter(pk=big.pk).update(cancel_requested=True)
    assert lifecycle.cancel_requested(leader)
    assert lifecycle.requeue_lost_gang(leader, "the job's 2 machines did not meet") == Job.Status.CANCELLED
    assert Job.objects.get(pk=big.pk).status == Job.Status.CANCELLED


def test_the_watchdog_ends_a_lost_cancelled_job_cancelled(alice, run):
    worker("a@h1"), worker("c@h2")
    big = job(alice, 10, nodes=2, dataset=ready_dataset(alice))
    run()
    lifecycle.start_run(big.pk, "a@h1")
    Job.objects.filter(pk=big.pk).update(cancel_requested=True, heartbeat_at=timezone.now() - timedelta(hours=1))
    lifecycle.requeue_lost_jobs()
    assert Job.objects.get(pk=big.pk).status == Job.Status.CANCELLED


def test_a_draining_followers_worker_joins_nothing(alice, run):
    worker("a@h1"), worker("c@h2")
    big = job(alice, 10, nodes=2, dataset=ready_dataset(alice))
    run()
    gang = JobNode.objects.get(job=big, node_rank=1).gang
    Worker.objects.filter(name="c@h2").update(draining=True)
    assert lifecycle.join_gang(big.pk, "c@h2", 1, gang) == lifecycle.Skipped("drained")


def test_a_stale_message_on_a_drained_worker_leaves_anothers_dispatch_alone(alice, run):
    worker("a@h1"), worker("b@h2")
    j = job(alice, 10)
    run()
    other = "b@h2" if Job.objects.get(pk=j.pk).worker_name == "a@h1" else "a@h1"
    Worker.objects.filter(name=other).update(draining=True)
    assert lifecycle.start_run(j.pk, other) == lifecycle.Skipped("drained")
    j.refresh_from_db()
    assert j.dispatched_at is not None and j.worker_name not in ("", other)
