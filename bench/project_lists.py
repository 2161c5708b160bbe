"""The jobs list under the project rule, at scale: what the membership subquery costs.

    .venv/bin/python bench/project_lists.py [--jobs 20000] [--projects 50] [--repeat 15]

In-process Django on a throwaway SQLite file (or DATABASE_URL): users, projects with members,
jobs spread over the projects and personal spaces. Prints the median time of GET /api/jobs/
(the newest 1000 rows serialised) and of the jobs page's JSON (the newest 500 rows, as the page
refreshes them) for a user in no project and a member of three, and the plain query of the
rows alone with the rule (own + projects' jobs) beside the owner-only filter of before projects.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRAINYARD_DATA_DIR", tempfile.mkdtemp(prefix="trainyard-bench-"))
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"


def median_ms(fn, repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--projects", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        db["NAME"] = db["TEST"]["NAME"]
    setup_test_environment()
    call_command("migrate", verbosity=0)

    from tests.webapp.factories import api_token, ready_dataset
    from webapp.jobs.access import jobs_for
    from webapp.jobs.models import Job
    from webapp.projects.models import Membership, Project

    users = [User.objects.create_user(f"bench{i}", password="x") for i in range(100)]
    projects = Project.objects.bulk_create([Project(name=f"p{i}") for i in range(args.projects)])
    Membership.objects.bulk_create([Membership(project=projects[(i + k) % len(projects)], user=u, role="member")
                                    for i, u in enumerate(users[1:]) for k in range(3)])
    ds = ready_dataset(users[1])
    Job.objects.bulk_create([
        Job(owner=users[1 + i % (len(users) - 1)], dataset=ds, name=f"j{i}", architecture="mlp", status="succeeded",
            project=projects[i % len(projects)] if i % 4 else None) for i in range(args.jobs)], batch_size=2000)
    Job.objects.bulk_create([Job(owner=users[0], dataset=ds, name=f"own{i}", architecture="mlp", status="succeeded")
                             for i in range(200)])
    print(f"{Job.objects.count()} jobs, {len(projects)} projects, {Membership.objects.count()} memberships, "
          f"{settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")
    for label, user in (("no project (200 own jobs)", users[0]), ("member of 3 projects", users[1])):
        api, page = Client(), Client()
        api.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
        page.force_login(user)
        visible = jobs_for(user).count()
        rule = median_ms(lambda: list(jobs_for(user)[:500]), args.repeat)
        owner_only = median_ms(lambda: list(Job.objects.select_related("owner", "dataset").filter(owner=user)[:500]),
                               args.repeat)
        listing = median_ms(lambda: api.get("/api/jobs/"), args.repeat)
        json_page = median_ms(lambda: page.get("/jobs/?format=json"), args.repeat)
        print(f"{label}: sees {visible} jobs; rows (500): rule {rule:.1f} ms vs owner-only {owner_only:.1f} ms; "
              f"GET /api/jobs/ {listing:.0f} ms; /jobs/?format=json {json_page:.0f} ms")


if __name__ == "__main__":
    main()
